"""poolsim on a Ray cluster made the way its users make one: the real `ray start` CLI.

A head and a second node on this machine, each with its own temp dir and free ports chosen
now, and a token of their own (``RAY_AUTH_TOKEN_PATH``): with ``RAY_AUTH_MODE`` unset, `ray
start --head` turns token authentication on because a token is at hand, as it does for a user
who ever ran a local ``ray.init``. The second node needs ``RAY_AUTH_MODE=token`` (Ray's own
`ray start --address` does not look for a token by itself). Then, as the README says:
``poolsim serve --edition enterprise --ray-address auto`` (3 front ends), ``poolsim run
--workers 2`` against that pool on that cluster (by its explicit address), and a real
Prometheus with the shipped configuration, whose every pool panel query must return data.
Only the processes started here are stopped (never a global `ray stop`: other jobs on this
machine run Ray).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from pool import errors
from pool.client import PoolClient
from pool.monitoring import dashboard_queries

BIN = Path(sys.executable).parent
RAY = BIN / "ray"
POOLSIM = BIN / "poolsim"
START_DEADLINE = 180.0  # seconds: a shared 2-core machine starts Ray slowly
HEAD_ATTEMPTS = 3
RAY_NOISE = ("Token authentication is enabled", "gcs_client", "InvalidAuthToken", "Usage stats")

pytestmark = pytest.mark.skipif(not RAY.exists(), reason="the ray CLI is not installed")


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for(what: str, ready: Any, deadline: float = START_DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = ready()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")


@dataclass
class Started:
    """A process started here, in its own session (so its whole group can be stopped)."""

    proc: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, grace: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):  # what the group left (Ray's daemons)
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None


def start(args: list[str], env: dict[str, str], log: Path) -> Started:
    out: IO[str] = log.open("w")
    proc = subprocess.Popen(
        args, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    out.close()
    return Started(proc, log)


@dataclass
class RayStartCluster:
    base: Path
    env: dict[str, str]  # what a user's shell has: RAY_TMPDIR, the token path; no auth mode
    address: str = ""
    started: list[Started] = field(default_factory=list)

    def ray_start(self, name: str, *extra: str, env: dict[str, str] | None = None) -> Started:
        p = free_ports(9)
        args = [
            str(RAY),
            "start",
            "--block",
            "--disable-usage-stats",
            "--num-cpus",
            "1",
            "--node-manager-port",
            str(p[0]),
            "--object-manager-port",
            str(p[1]),
            "--metrics-export-port",
            str(p[2]),
            "--runtime-env-agent-port",
            str(p[3]),
            "--dashboard-agent-listen-port",
            str(p[4]),
            "--dashboard-agent-grpc-port",
            str(p[5]),
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
            *extra,
        ]
        node = start(args, env or self.env, self.base / f"{name}.log")
        self.started.append(node)
        return node

    def start_head(self, attempt: int) -> Started:
        head_port, client_port, dashboard_port = free_ports(3)
        return self.ray_start(
            f"head{attempt}",
            "--head",
            "--port",
            str(head_port),
            "--ray-client-server-port",
            str(client_port),
            "--dashboard-port",
            str(dashboard_port),
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(self.base / "ray"),
        )

    def nodes_alive(self) -> int:
        env = {**self.env, "RAY_AUTH_MODE": "token"}
        out = subprocess.run(
            [str(RAY), "status", "--address", self.address],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return len(re.findall(r"node_[0-9a-f]+", active))

    def stop(self) -> None:
        for node in reversed(self.started):
            node.stop()
        # anything of ours still running (its command line names our temp dir): stop it by pid
        for pid in _pids_mentioning(str(self.base)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayStartCluster]:
    base = Path(tempfile.mkdtemp(prefix="psray-", dir="/tmp"))  # short: Ray's socket paths
    token = base / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(base), RAY_AUTH_TOKEN_PATH=str(token), PYTHONUNBUFFERED="1")
    c = RayStartCluster(base, env)
    try:
        current = base / "ray" / "ray_current_cluster"
        for attempt in range(HEAD_ATTEMPTS):
            head = c.start_head(attempt)
            wait_for(
                "ray start --head", lambda h=head: current.exists() or h.proc.poll() is not None
            )
            if head.proc.poll() is None:
                break
            # Ray gives its raylet a fixed 30 s to register: on a loaded machine it can miss it
            head.stop()
            shutil.rmtree(base / "ray", ignore_errors=True)
        assert head.proc.poll() is None, head.output()
        assert "Token authentication is enabled" in head.output()  # Ray chose it by itself
        c.address = current.read_text().strip()
        second = c.ray_start(
            "node2",
            "--address",
            c.address,
            "--temp-dir",
            str(base / "ray2"),
            env={**env, "RAY_AUTH_MODE": "token"},
        )
        wait_for("the second node", lambda: second.proc.poll() is not None or c.nodes_alive() == 2)
        assert second.proc.poll() is None, second.output()
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class ServedPool:
    server: Started
    data_dir: Path
    addresses: list[str]
    metrics: list[str]


@pytest.fixture(scope="module")
def served(cluster: RayStartCluster) -> Iterator[ServedPool]:
    data_dir = cluster.base / "pool"
    server = start(
        [
            str(POOLSIM),
            "serve",
            "--edition",
            "enterprise",
            "--ray-address",
            "auto",
            "--front-ends",
            "3",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--data-dir",
            str(data_dir),
            "--password-iterations",
            "1000",
        ],
        cluster.env,
        cluster.base / "serve.log",
    )
    try:
        wait_for(
            "poolsim serve",
            lambda: "stop with Ctrl-C" in server.output() or server.proc.poll() is not None,
        )
        out = server.output()
        assert server.proc.poll() is None, out
        rows = sorted(
            re.findall(r"front end (fe\d+): up on (\S+)  metrics http://(\S+)/metrics", out)
        )
        assert [r[0] for r in rows] == ["fe1", "fe2", "fe3"], out
        yield ServedPool(server, data_dir, [r[1] for r in rows], [r[2] for r in rows])
    finally:
        code = server.stop()
        assert code == 0, server.output()


def test_serve_and_run_two_workers_on_a_ray_start_cluster(
    cluster: RayStartCluster, served: ServedPool
) -> None:
    out = served.server.output()
    assert "has-quorum" in out
    noise = [n for n in RAY_NOISE if n in out]
    assert not noise, f"Ray's own output leaked into poolsim serve's:\n{out}"
    report = cluster.base / "report"
    run = subprocess.run(
        [
            str(POOLSIM),
            "run",
            "--target",
            served.addresses[0],
            "--admin-token-file",
            str(served.data_dir / "admin.token"),
            "--ray-address",
            cluster.address,
            "--workers",
            "2",
            "--users",
            "120",
            "--duration",
            "5s",
            "--quiet",
            "--exit-zero",  # a 5 s run has no clean window: INCONCLUSIVE, exit 3
            "--out",
            str(report),
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    noise = [n for n in RAY_NOISE if n in output]
    assert not noise, f"Ray's own output leaked into poolsim run's:\n{output}"
    result = json.loads((report / "report.json").read_text())
    assert result["config"]["workers"] == 2
    signed_in = result["operations"]["sign-in"]
    assert signed_in["calls"] > 0, result["operations"]
    assert signed_in["errors"] == 0, result["operations"]
    # the workers joined the cluster: no local Ray instance was started beside it
    sessions = list((cluster.base / "ray").glob("session_2*"))
    assert len(sessions) == 1, sessions


def test_prometheus_with_the_shipped_config_answers_every_pool_panel(
    cluster: RayStartCluster, served: ServedPool
) -> None:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        pytest.skip("prometheus not installed (CI installs Debian's prometheus package)")
    asyncio.run(_failed_and_good_sign_ins(served.addresses[0]))
    out = cluster.base / "monitoring"
    written = subprocess.run(
        [
            str(POOLSIM),
            "monitoring",
            "--address",
            served.addresses[0],
            "--admin-token-file",
            str(served.data_dir / "admin.token"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert written.returncode == 0, written.stdout + written.stderr
    targets = json.loads((out / "poolsim-targets.json").read_text())
    assert sorted(t["targets"][0] for t in targets) == sorted(served.metrics)
    config = out / "prometheus.yml"
    config.write_text(re.sub(r"_interval: \d+s", "_interval: 1s", config.read_text()))
    for check in (
        ["check", "config", str(config)],
        ["check", "rules", str(out / "poolsim-rules.yml")],
    ):
        done = subprocess.run([promtool, *check], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    (port,) = free_ports(1)
    server = start(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={out / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cluster.env,
        out / "prometheus.log",
    )
    try:
        queries = [(t, q) for t, q in dashboard_queries() if 'job="poolsim-driver"' not in q]
        assert len(queries) >= 20
        empty: list[str] = []

        def all_answer() -> bool:
            empty[:] = [f"{t}: {q}" for t, q in queries if not _query(port, q)]
            return not empty or server.proc.poll() is not None

        try:
            wait_for("every pool panel's query", all_answer, deadline=120)
        except AssertionError:
            raise AssertionError("no data for:\n" + "\n".join(empty)) from None
        assert server.proc.poll() is None, server.output()
    finally:
        server.stop()


async def _failed_and_good_sign_ins(address: str) -> None:
    """A failed sign-in: the failures and errors panels have something to show."""
    async with PoolClient(address) as client:
        with pytest.raises(errors.PoolError):
            await client.sign_in("sip:user0@contoso.com", "not-the-password")


def _query(port: int, promql: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            answer = json.loads(reply.read())
    except OSError:
        return []
    result: list[Any] = answer.get("data", {}).get("result", [])
    return result


def test_an_operator_crashes_a_front_end_from_the_cli_and_the_pool_heals_itself(
    cluster: RayStartCluster, served: ServedPool
) -> None:
    """`poolsim stop-front-end --crash` (a drill), the pool restarting it by itself, then a
    drain and `poolsim start-front-end`: each answers with the pool's status, and the pool is
    whole again after each, with no reset. Last in this file: it changes the shared pool."""
    restarts = _restarts(served)
    crashed = _admin_cli(cluster, served, "stop-front-end", "fe3", "--crash")
    assert crashed.returncode == 0, crashed.stdout + crashed.stderr
    assert crashed.stdout.startswith("fe3 crashed"), crashed.stdout
    # the answer is the pool as of the kill (fe3 still up in it): the crash is noticed after
    wait_for(
        "fe3 restarted and every group healthy",
        lambda: _restarts(served) > restarts and _whole(cluster, served),
    )
    drained = _admin_cli(cluster, served, "stop-front-end", "fe3")
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert drained.stdout.startswith("fe3 draining"), drained.stdout
    wait_for("fe3 down after its drain", lambda: _state(cluster, served, "fe3") == "down")
    started = _admin_cli(cluster, served, "start-front-end", "fe3")
    assert started.returncode == 0, started.stdout + started.stderr
    assert started.stdout.startswith("fe3 started"), started.stdout
    wait_for("fe3 back and every group healthy", lambda: _whole(cluster, served))
    reset = _admin_cli(cluster, served, "reset-registrar", "no-such-type")
    assert reset.returncode == 2
    assert "invalid choice" in reset.stderr


def _admin_cli(
    cluster: RayStartCluster, served: ServedPool, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(POOLSIM),
            *args,
            "--address",
            served.addresses[0],
            "--admin-token-file",
            str(served.data_dir / "admin.token"),
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _status(cluster: RayStartCluster, served: ServedPool) -> str:
    done = _admin_cli(cluster, served, "status")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _state(cluster: RayStartCluster, served: ServedPool, fe: str) -> str:
    found = re.search(rf"^{fe}\s+(\S+)", _status(cluster, served), re.M)
    return found.group(1) if found else ""


def _restarts(served: ServedPool) -> float:
    """Crashed front ends the pool started again by itself, from its front ends' metrics (the
    pool's reporter exports it; ``max`` over them is right)."""
    found = [0.0]
    for address in served.metrics:
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
                text = reply.read().decode()
        except OSError:
            continue  # a front end down or restarting
        found += [float(v) for v in re.findall(r"^poolsim_pool_restarts_total (\S+)$", text, re.M)]
    return max(found)


def _whole(cluster: RayStartCluster, served: ServedPool) -> bool:
    """Every front end up, every routing group healthy and the primaries balanced (within
    one), as `poolsim status` prints them."""
    out = _status(cluster, served)
    rows = re.findall(r"^(fe\d+)\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s+\d+\s+\d+$", out, re.M)
    groups = re.findall(r"^\s*\d+\s+(healthy|degraded|quorum-loss)\s", out, re.M)
    primaries = [int(p) for _, _, p in rows]
    return (
        sorted((fe, state) for fe, state, _ in rows)
        == [("fe1", "up"), ("fe2", "up"), ("fe3", "up")]
        and max(primaries) - min(primaries) <= 1
        and bool(groups)
        and set(groups) == {"healthy"}
    )
