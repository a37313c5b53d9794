"""Fuzz a pool started for the purpose (``scripts/fuzz`` and the CI slice call this)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.fuzz.check import serving, verify_users
from tests.fuzz.fuzzer import Fuzzer, Result, State, provision
from tests.fuzz.servers import PASSWORD, PoolProcess, running_pool

T = TypeVar("T")
OPERATOR_RPCS = frozenset({"StopFrontEnd", "StartFrontEnd", "ResetPoolRegistrarState"})


@dataclass
class Report:
    edition: str
    result: Result
    seconds: float
    down: list[str]  # front ends not serving after the fuzzing
    alive: bool  # the pool's process
    verified: str  # "" when every fuzzed user works, else what failed
    log: list[str]  # the pool's warnings and errors

    @property
    def ok(self) -> bool:
        return not self.result.bad and not self.down and self.alive and not self.verified

    def text(self) -> str:
        r = self.result
        lines = [
            f"{self.edition}: {r.requests} requests in {self.seconds:.0f} s",
            r.table(),
            f"UNKNOWN/INTERNAL/DEADLINE_EXCEEDED: {len(r.bad)}",
            f"the fuzzer's own event loop was held up at most {r.stall:.2f} s",
            *r.bad[:20],
            f"pool process alive: {self.alive}; front ends not serving: {self.down or 'none'}",
            f"fuzzed users afterwards: {self.verified or 'all work'}",
        ]
        if not self.ok:
            lines += ["the pool's last warnings and errors:", *self.log[-30:]]
        return "\n".join(lines)


def fuzz(
    edition: str,
    requests: int,
    *,
    seed: int = 0,
    front_ends: int = 3,
    progress: bool = False,
    data_dir: Path | None = None,
) -> Report:
    with tempfile.TemporaryDirectory(prefix="poolsim-fuzz-") as tmp:
        folder = data_dir or Path(tmp) / "data"
        with running_pool(edition, folder, front_ends) as pool:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            try:
                return _run(loop, edition, pool, requests, seed, progress)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()


def _run(
    loop: asyncio.AbstractEventLoop,
    edition: str,
    pool: PoolProcess,
    requests: int,
    seed: int,
    progress: bool,
) -> Report:
    def wait(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    users = wait(provision(pool.addresses, pool.admin_token, PASSWORD))
    state = State(users, PASSWORD, pool.admin_token, list(pool.addresses))
    if edition == "enterprise":
        state.no_admin = OPERATOR_RPCS
    fuzzer = Fuzzer(state, seed)
    start = time.monotonic()
    last = [start]

    def show(result: Result) -> None:
        now = time.monotonic()
        if progress and now - last[0] >= 10:
            last[0] = now
            print(
                f"  {result.requests} requests, {len(result.bad)} bad, "
                f"{result.requests / (now - start):.0f}/s",
                flush=True,
            )

    fuzzer.run(loop, requests, progress=show)
    seconds = time.monotonic() - start
    wait(fuzzer.sign_out_all())
    wait(fuzzer.close())
    down = wait(serving(pool.addresses))
    verified = ""
    try:
        wait(verify_users(pool.addresses, pool.admin_token, users, PASSWORD))
    except Exception as exc:  # any failure is the report's finding
        verified = f"{type(exc).__name__}: {exc}"
    noteworthy = [
        line for line in pool.log if " ERROR " in line or " WARNING " in line or "Error" in line
    ]
    return Report(edition, fuzzer.result, seconds, down, pool.alive(), verified, noteworthy)
