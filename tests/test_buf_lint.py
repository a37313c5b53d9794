"""`buf lint` (default STANDARD rules, exceptions named in the protos) is clean.

`.ci/run` installs buf (npm @bufbuild/buf, pinned) into .ci/node; under CI a missing buf is a
failure, not a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "buf"


def _buf() -> str | None:
    return str(LOCAL) if LOCAL.exists() else shutil.which("buf")


def test_buf_lint_is_clean() -> None:
    buf = _buf()
    if buf is None:
        message = (
            "buf is not installed: `npm install --prefix .ci/node @bufbuild/buf` (.ci/run does)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [buf, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
