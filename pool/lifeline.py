"""A lifeline: a pool started by another process ends when that process dies, however it dies.

The parent keeps the write end of a pipe and passes the read end to the child (its number in
``POOLSIM_LIFELINE_FD``). Nothing is ever written: when the parent dies, even by ``kill -9``,
the kernel closes its end, the child's read returns end-of-file, and the child sends itself
SIGTERM, which is the server's own clean stop (sign everyone out, close the store).

Chosen over Linux's ``prctl(PR_SET_PDEATHSIG)``, which fires when the *thread* that started
the child exits (the driver starts its pool from a worker thread), needs code between fork and
exec (unsafe in a threaded parent), and exists on Linux only; and over polling the parent's
pid, which is late by its polling period and can be fooled by pid reuse.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "POOLSIM_LIFELINE_FD"


def watch_from_env() -> bool:
    """If this process was given a lifeline, watch it (a daemon thread) and return True.

    The variable is removed so that processes this one starts do not inherit it."""
    value = os.environ.pop(ENV, None)
    if value is None:
        return False
    fd = int(value)

    def wait() -> None:
        try:
            while os.read(fd, 1):  # nothing is written: only end-of-file comes
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="lifeline", daemon=True).start()
    return True
