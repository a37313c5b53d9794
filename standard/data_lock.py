"""One server per data directory: an exclusive lock on ``<data dir>/poolsim.lock``.

Two servers on one SQLite store would each believe they own it (registrations, conference
rosters, the admin token). The lock is ``flock`` on an open file, so the kernel drops it when the
process ends, however it ends (``kill -9`` included): no stale lock to clean up. The file keeps
the holder's pid for the message a second server prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_NAME = "poolsim.lock"


class DataDirBusy(OSError):
    """Another process holds the data directory's lock."""


class DataDirLock:
    """``with DataDirLock(path):`` holds the directory for this process, or raises DataDirBusy."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirBusy(
                f"data directory {self.path.parent} is in use by another poolsim server "
                f"(pid {holder}): stop it, or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
