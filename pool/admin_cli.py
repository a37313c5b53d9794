"""The pool's administration from the command line, named after the Lync cmdlets an operator
knows: ``poolsim stop-front-end`` (Stop-CsWindowsService, or a crash for a failure drill),
``poolsim start-front-end`` (Start-CsWindowsService) and ``poolsim reset-registrar``
(Reset-CsPoolRegistrarState). Each calls the pool's ``PoolAdmin`` API with the admin token and
prints the pool's status afterwards, as ``poolsim status`` does.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import grpc

    from pool.client.admin import AdminClient

T = TypeVar("T")

#: ``pool.client.admin.RESET_TYPES``' names, spelt here so that building the parser imports
#: no grpc (``pool.logs`` must set grpc's verbosity before its first import)
RESET_TYPE_NAMES = (
    "service-reset",
    "quorum-loss-recovery",
    "full-reset",
    "machine-state-removed",
    "quorum-loss-recovery-from-replicas",
)

Access = Callable[[argparse.Namespace], "tuple[str, grpc.ChannelCredentials | None]"]


def _with_admin(
    a: argparse.Namespace, access: Access, call: Callable[[AdminClient], Awaitable[T]]
) -> T:
    from pool.client import PoolClient

    token, credentials = access(a)

    async def go() -> T:
        async with PoolClient(a.address, credentials=credentials) as client:
            return await call(client.admin(token))

    return asyncio.run(go())


def stop_front_end(a: argparse.Namespace, access: Access) -> int:
    from pool.api.status_table import format_status

    mode = "crash" if a.crash else "drain"
    status = _with_admin(a, access, lambda admin: admin.stop_front_end(a.front_end, mode))
    verb = "crashed" if a.crash else "draining"
    print(f"{a.front_end} {verb}\n\n{format_status(status)}")
    return 0


def start_front_end(a: argparse.Namespace, access: Access) -> int:
    from pool.api.status_table import format_status

    status = _with_admin(a, access, lambda admin: admin.start_front_end(a.front_end))
    print(f"{a.front_end} started\n\n{format_status(status)}")
    return 0


def reset_registrar(a: argparse.Namespace, access: Access) -> int:
    from pool.api.status_table import format_status

    reply = _with_admin(
        a, access, lambda admin: admin.reset_pool_registrar_state(a.reset_type, a.front_end or "")
    )
    groups = ", ".join(str(g) for g in reply.reloaded_groups) or "none"
    print(f"{a.reset_type}: groups reloaded {groups}\n\n{format_status(reply.status)}")
    return 0


def stop_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("front_end", metavar="FRONT_END", help="the front end to stop, e.g. fe2")
    p.add_argument(
        "--crash",
        action="store_true",
        help="kill it at once, as a failure would (a failure drill; the pool fails over, and "
        "restarts it unless it runs with --no-restart); without it the front end drains: its "
        "routing groups move and its users sign in elsewhere, then it stops",
    )


def start_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "front_end", metavar="FRONT_END", help="the front end to start (down, or a new id)"
    )


def reset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "reset_type",
        metavar="TYPE",
        choices=RESET_TYPE_NAMES,
        help=f"one of {', '.join(RESET_TYPE_NAMES)}",
    )
    p.add_argument(
        "--front-end", metavar="FE", help="machine-state-removed: the stopped front end to remove"
    )


#: (name, help, arguments, action) of each command, in the order --help lists them
COMMANDS = (
    (
        "stop-front-end",
        "stop a front end of an Enterprise pool (drain, or --crash for a drill)",
        stop_arguments,
        stop_front_end,
    ),
    (
        "start-front-end",
        "start a front end of an Enterprise pool that is down, or a new one",
        start_arguments,
        start_front_end,
    ),
    (
        "reset-registrar",
        "Reset-CsPoolRegistrarState: service-reset, quorum-loss-recovery, ...",
        reset_arguments,
        reset_registrar,
    ),
)
