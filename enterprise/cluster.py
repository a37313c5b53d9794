"""Joining Ray: a new local instance, or a cluster its users made with `ray start`.

``connect(None)`` starts a new local instance unless ``RAY_ADDRESS`` names a cluster (never,
silently, a cluster that merely runs on this machine: Ray's own default would join it).
``connect("auto")`` joins the cluster `ray start --head` made on this machine;
``connect("host:port")`` the one at that address. A local instance whose node times out while
starting (Ray's "timed out during startup") is stopped, what it started with it, and started
once more; a failure to start or join is a ``RayUnreachable`` saying which.

Token authentication: since Ray 2.52 a cluster can require a token, and `ray start --head`
turns it on by itself whenever a token is at hand (``RAY_AUTH_TOKEN``, the file
``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``, which any local ``ray.init`` writes),
with ``RAY_AUTH_MODE`` unset. Ray's driver presents the token only when joining with ``auto``;
with an explicit address it connects without one and is refused ("InvalidAuthToken"). Here
both present it, as `ray start --head` decides: ``RAY_AUTH_MODE`` when set, else token mode
whenever a token is at hand. A cluster without authentication ignores the token.

Priority: Ray runs its workers at niceness 15 by default (``RAY_worker_niceness``), below the
driver. A pool's front ends are its servers: on a busy machine they would lose the processor
to the load driver and to anything else at normal priority, as a Standard server (a plain
process) does not. A local instance started here runs its workers at this process's own
niceness; a cluster made with `ray start` keeps its own setting (start it with
``RAY_worker_niceness=0`` in its environment for the same).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pool import logs

log = logging.getLogger("poolsim.ray")

AUTH_MODE = "RAY_AUTH_MODE"
NICENESS = "RAY_worker_niceness"
#: a local instance whose node timed out while starting is stopped and started again (seen
#: now and then on a 2-core machine, the next start fine)
LOCAL_START_ATTEMPTS = 2
TOKEN_HINT = (
    "a cluster with token authentication (Ray turns it on when ~/.ray/auth_token exists) needs "
    "its token here: copy the head's ~/.ray/auth_token, or set RAY_AUTH_TOKEN or "
    "RAY_AUTH_TOKEN_PATH"
)


class RayUnreachable(ConnectionError):
    """The Ray cluster asked for could not be joined (the message says which and why)."""


def connect(
    ray_address: str | None, *, namespace: str = "poolsim", forward_logs: bool = True
) -> None:
    """Join Ray (see the module docstring); a no-op when this process already has.

    ``forward_logs``: print what this job's actors log (poolsim's own warnings); Ray's own
    logs and banners stay quiet below ``--log-level info`` either way."""
    import ray

    logs.quiet_ray()
    if ray.is_initialized():
        return
    address = ray_address or os.environ.get("RAY_ADDRESS") or "local"
    token = address != "local" and use_cluster_token()
    if address == "local":  # the raylet started now reads it: front ends at our priority
        os.environ.setdefault(NICENESS, "0")  # an increment on our own niceness
    attempts = LOCAL_START_ATTEMPTS if address == "local" else 1
    try:
        for attempt in range(1, attempts + 1):
            try:
                ray.init(
                    address=address,
                    namespace=namespace,
                    include_dashboard=False,
                    logging_level=logs.ray_level(),
                    log_to_driver=forward_logs,
                    configure_logging=False,
                )
                break
            except (ConnectionError, RuntimeError) as exc:
                raise _unreachable(address, exc, token) from exc
            except Exception as exc:  # Ray's own "timed out during startup" is a bare Exception
                ray.shutdown()  # what it started (its GCS, monitors) goes with it
                if attempt == attempts:
                    raise _unreachable(address, exc, token, attempts) from exc
                log.warning("a local Ray instance did not start (%s): starting another", exc)
    finally:
        logs.quiet_ray()
    if forward_logs and not logs.ray_verbose():
        _forward_actor_logs_only()


def _unreachable(
    address: str, exc: BaseException, token: bool, attempts: int = 1
) -> RayUnreachable:
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    if address == "local":
        return RayUnreachable(f"cannot start a local Ray instance{tries}: {exc}")
    hint = "" if token else f"; {TOKEN_HINT}"
    return RayUnreachable(f"cannot join the Ray cluster at {address}: {exc}{hint}")


def _forward_actor_logs_only() -> None:
    """Ray forwards its daemons' error lines to the driver along with the actors' output
    ("(raylet) ... Failed to establish connection to the metrics exporter agent" on a cluster
    without a dashboard); keep what poolsim's own actors print (their pid is a number). Ray's
    internals are pinned (pyproject): without them, everything stays forwarded."""
    try:
        from ray._private import worker
    except ImportError:
        return
    dispatcher = getattr(worker, "global_worker_stdstream_dispatcher", None)
    forward = getattr(worker, "print_to_stdstream", None)
    ignore = getattr(worker, "_should_ignore_worker_log_prefix", None)
    if dispatcher is None or forward is None or ignore is None:
        return
    ignore_prefix = ignore(worker.global_worker)

    def actors_only(data: dict[str, object]) -> None:
        if str(data.get("pid", "")).isdigit():
            forward(data, ignore_prefix=ignore_prefix)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", actors_only)


def use_cluster_token() -> bool:
    """Present the cluster's token, as `ray start --head` decides whether to require one:
    ``RAY_AUTH_MODE`` when set, else token mode whenever a token is at hand."""
    mode = os.environ.get(AUTH_MODE)
    if mode is not None:
        return mode.lower() == "token"
    if not token_at_hand():
        return False
    os.environ[AUTH_MODE] = "token"
    _reload_ray_config()
    log.info("token authentication: presenting the token Ray found (%s unset)", AUTH_MODE)
    return True


def token_at_hand() -> bool:
    """Whether Ray would find a token: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token`` (Ray's own order)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return Path(path).expanduser().is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


def _reload_ray_config() -> None:
    """Ray reads RAY_AUTH_MODE into its cached config when imported; read it again."""
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]
    except ImportError:  # a Ray without the C++ config: the environment alone decides
        return
    Config.initialize("")
