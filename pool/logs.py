"""What `poolsim` writes to stderr: its own log records at ``--log-level``, and Ray's only when
asked for.

Ray configures its ``ray`` logger when it is imported (its own handler, level INFO, no
propagation), so its level is set again after each import that may have reset it
(``quiet_ray``, called where poolsim connects to Ray). Below ``info``, Ray's banners ("Token
authentication is enabled ...") and warnings stay out of poolsim's output; its errors still
show. gRPC's C core logs ("add_port.cc: Failed to add port") the same way: it reads
``GRPC_VERBOSITY`` when grpc is first imported, so ``configure`` runs before that.
"""

from __future__ import annotations

import logging
import os
import sys

LEVELS = ("debug", "info", "warning", "error")
_level = logging.WARNING


def configure(level: str) -> None:
    """Log poolsim's records at ``level`` and above to stderr (one of LEVELS)."""
    global _level
    _level = getattr(logging, level.upper())
    logging.basicConfig(
        level=_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger().setLevel(_level)
    os.environ.setdefault("GRPC_VERBOSITY", "DEBUG" if _level <= logging.DEBUG else "NONE")
    quiet_ray()


def ray_level() -> int:
    """The level Ray's own loggers get: the chosen one at info or debug, else errors only."""
    return _level if _level <= logging.INFO else logging.ERROR


def ray_verbose() -> bool:
    """Whether Ray's own output (its workers' forwarded logs) is wanted."""
    return _level <= logging.INFO


def quiet_ray() -> None:
    logging.getLogger("ray").setLevel(ray_level())
