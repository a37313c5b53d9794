"""A pool to fuzz: `poolsim serve` in its own process (a crash is then a dead process, not a
broken test), Standard or Enterprise, on loopback with free ports."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

STANDARD = re.compile(r"serving on (\S+) \(plaintext\)")
ENTERPRISE = re.compile(r"^front end (\S+): up on (\S+)")
TOKEN = re.compile(r"^admin token: (.+)$")
READY = "stop with Ctrl-C or SIGTERM"
START_TIMEOUT = 240.0  # seconds: a Ray instance on a busy 2-core machine is slow to start
PASSWORD = "fuzz-password"
ITERATIONS = "1000"  # PBKDF2 rounds: sign-ins are a large share of the fuzzer's calls


@dataclass
class PoolProcess:
    process: subprocess.Popen[str]
    addresses: list[str] = field(default_factory=list)
    admin_token: str = ""
    output: list[str] = field(default_factory=list)  # until it was ready
    log: list[str] = field(default_factory=list)  # everything it wrote, as it goes

    def alive(self) -> bool:
        return self.process.poll() is None


def _reader(stream: object, lines: queue.Queue[str | None], log: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        log.append(line.rstrip("\n"))
        lines.put(log[-1])
    lines.put(None)


@contextlib.contextmanager
def running_pool(edition: str, data_dir: Path, front_ends: int = 3) -> Iterator[PoolProcess]:
    argv = [sys.executable, "-m", "pool.cli", "serve", "--port", "0", "--metrics-port", "-1"]
    argv += ["--data-dir", str(data_dir), "--password-iterations", ITERATIONS]
    if edition == "enterprise":
        argv += ["--edition", "enterprise", "--front-ends", str(front_ends)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)  # a new local Ray instance of its own, never another's
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    pool = PoolProcess(proc)
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines, pool.log), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("the pool did not start:\n" + "\n".join(pool.output)) from None
            if line is None:
                raise RuntimeError("the pool exited at start:\n" + "\n".join(pool.output))
            pool.output.append(line)
            if m := STANDARD.search(line):
                pool.addresses.append(m.group(1))
            elif m := ENTERPRISE.search(line):
                pool.addresses.append(m.group(2))
            elif m := TOKEN.search(line):
                pool.admin_token = Path(m.group(1)).read_text().strip()
            elif line == READY:
                break
        yield pool
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
