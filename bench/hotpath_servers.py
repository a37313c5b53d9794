"""The servers of the gRPC benchmarks, each run in a process of its own.

``python -m bench.hotpath_servers serve KIND`` prints ``PORT <n>`` once it serves and stops when
its stdin closes (or on SIGTERM); ``start_server`` starts one that way and ``ServerProcess``
stops it. Both kinds are started, pinned and stopped alike:

* ``poolsim``: ``start_front_end`` over an Engine (SqliteStore in the given directory, or
  MemoryStore; the Metrics observer; PBKDF2 at one iteration), as ``poolsim serve`` runs it;
* ``bare``: generic handlers and no logic: ``Send`` (unary-unary) puts the request bytes on the
  asyncio.Queue of every open ``Watch`` stream and ``Watch`` (unary-stream) yields from its
  queue; raw bytes in and out (no serializers); ``Session`` (bidirectional) is the session
  rows' baseline (``bench.bare_session``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import select
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.bare_session import BareSession
from bench.hotpath_common import cpu_seconds
from pool import heap
from pool.api.server import SERVER_OPTIONS  # the bare server gets the same options

DOMAIN = "contoso.com"
PASSWORD = "pw"
READY = b""  # the bare Watch stream's first item: its queue is registered


class _Bare:
    """A server with the same shape as poolsim's send / event stream and no logic."""

    def __init__(self) -> None:
        self.queues: list[asyncio.Queue[bytes]] = []

    async def send(self, request: bytes, context: Any) -> bytes:
        for q in self.queues:
            q.put_nowait(request)
        return b"ok"

    async def watch(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        q: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.append(q)
        try:
            yield READY
            while True:
                yield await q.get()
        finally:
            self.queues.remove(q)

    def handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        return grpc.method_handlers_generic_handler(
            "bench.Bare",
            {
                "Send": grpc.unary_unary_rpc_method_handler(self.send),
                "Watch": grpc.unary_stream_rpc_method_handler(self.watch),
                # the session rows' baseline (bench.bare_session)
                "Session": grpc.stream_stream_rpc_method_handler(BareSession().session),
            },
        )


async def _until_stopped() -> None:
    """Until SIGTERM or the parent closes our stdin."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def read_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_stdin, daemon=True).start()
    await stop.wait()


async def _serve(kind: str, users: int, store_kind: str, data_dir: Path) -> None:
    heap.tune()  # both servers' collectors as a front end's (pool.heap)
    if kind == "bare":
        server = grpc.aio.server(options=SERVER_OPTIONS)
        server.add_generic_rpc_handlers((_Bare().handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"PORT {port}", flush=True)
        await _until_stopped()
        await server.stop(1.0)
        return
    from prometheus_client import CollectorRegistry

    from pool.api.metrics import Metrics
    from pool.api.server import start_front_end
    from pool.clock import SystemClock
    from pool.config import EngineConfig
    from pool.engine import Engine
    from pool.sqlite_store import SqliteStore
    from pool.store import MemoryStore, Store

    store: Store = SqliteStore(data_dir / "pool.db") if store_kind == "sqlite" else MemoryStore()
    metrics = Metrics(CollectorRegistry())
    engine = Engine(EngineConfig(password_iterations=1), store, SystemClock(), metrics)
    engine.load()
    engine.provision("user", DOMAIN, users, 0, PASSWORD)
    heap.settle()  # as `poolsim serve` does
    metrics.watch(engine, "standard")
    front_end = await start_front_end(
        engine, port=0, admin_token=secrets.token_urlsafe(24), metrics=metrics
    )
    print(f"PORT {front_end.port}", flush=True)
    await _until_stopped()
    await front_end.stop(grace=1.0)
    store.close()


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    address: str

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """Close its stdin (it stops by itself); SIGTERM, then SIGKILL, if it lingers."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_server(kind: str, users: int, store: str, data_dir: Path) -> ServerProcess:
    cmd = [sys.executable, "-m", "bench.hotpath_servers", "serve", kind]
    cmd += [f"--users={users}", f"--store={store}", f"--data-dir={data_dir}"]
    err = (data_dir / f"{kind}.stderr").open("w")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
    )
    err.close()
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60.0)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        detail = (data_dir / f"{kind}.stderr").read_text()[-2000:]
        raise RuntimeError(f"the {kind} server did not start: {line!r} {detail}")
    return ServerProcess(proc, f"127.0.0.1:{int(line.split()[1])}")


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath_servers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run one benchmark server until stdin closes")
    serve.add_argument("kind", choices=["poolsim", "bare"])
    serve.add_argument("--users", type=int, default=2)
    serve.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    serve.add_argument("--data-dir", type=Path, required=True)
    a = parser.parse_args(argv)
    asyncio.run(_serve(a.kind, a.users, a.store, a.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
