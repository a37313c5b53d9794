"""A pool in a process of its own, started the way a user starts one (`poolsim serve`)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pool.lifeline import ENV as LIFELINE_ENV

_SERVING = re.compile(r"serving on (\S+) ")
_METRICS = re.compile(r"^metrics: http://(\S+)/metrics")
_TOKEN = re.compile(r"^admin token: (.+)$")


class PoolStartError(RuntimeError):
    """The pool process did not come up; the message carries what it printed."""


@dataclass
class PoolProcess:
    proc: subprocess.Popen[str]
    address: str
    metrics_address: str
    admin_token_file: Path
    output: list[str]
    reader: threading.Thread
    lifeline: int = -1  # the write end of the pool's lifeline (pool.lifeline): -1 once closed

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        self.reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_standard(data_dir: Path, *extra: str, timeout: float = 60.0) -> PoolProcess:
    """`poolsim serve` on free ports with its data in ``data_dir``; returns once it serves."""
    cmd = [
        sys.executable,
        "-m",
        "pool.cli",
        "serve",
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    # in a session of its own: Ctrl-C at the terminal reaches the driver, which stops the
    # pool when its report is written (bench.terminal.Interrupts), not the pool under its load;
    # and on a lifeline (pool.lifeline), so that it ends when this process dies, even by
    # kill -9. This process keeps the write end (not inheritable) until it exits.
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            pass_fds=(read_end,),
            env={**os.environ, LIFELINE_ENV: str(read_end)},
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    output: list[str] = []
    found: dict[str, str] = {}
    done = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            for key, pattern in (("address", _SERVING), ("metrics", _METRICS), ("token", _TOKEN)):
                m = pattern.search(line.strip())
                if m and key not in found:
                    found[key] = m.group(1)
            if "stop with" in line:
                done.set()
        done.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    end = time.monotonic() + timeout
    while not done.wait(0.05):
        if time.monotonic() > end:
            break
    if proc.poll() is not None or "address" not in found or "token" not in found:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        os.close(write_end)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        raise PoolStartError("the pool did not start:\n" + "\n".join(output[-20:]))
    return PoolProcess(
        proc,
        found["address"],
        found.get("metrics", ""),
        Path(found["token"]),
        output,
        reader,
        write_end,
    )
