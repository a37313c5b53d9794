"""The admin token: read from a file, or made at first start and kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 16


def load_or_create(path: Path, *, create: bool) -> str:
    """The token in ``path``; when ``create`` and there is none, write a new one (mode 0600)."""
    if path.exists():
        mode = path.stat().st_mode
        if mode & 0o077:
            raise PermissionError(
                f"admin token file {path} is readable or writable by other users (mode "
                f"{mode & 0o777:o}): anyone who reads it administers the pool; run "
                f"`chmod 600 {path}` and start again"
            )
        token = path.read_text().strip()
        if len(token) < MIN_LENGTH:
            raise ValueError(
                f"admin token in {path} is {len(token)} characters: at least "
                f"{MIN_LENGTH} are needed"
            )
        return token
    if not create:
        raise FileNotFoundError(f"admin token file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
