"""The generated code in pool/_proto is what scripts/gen_protos.py makes from protos/ today."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "pool" / "_proto"
SCRIPT = ROOT / "scripts" / "gen_protos.py"


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, leaving out bytecode caches."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpc_tools is not installed: pip install -e '.[test]' to check codegen")
    out = tmp_path / "_proto"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"scripts/gen_protos.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    fresh = _files(out)
    committed = _files(GENERATED)
    assert fresh, "scripts/gen_protos.py generated no files"
    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    stale = sorted(
        name for name in fresh.keys() & committed.keys() if fresh[name] != committed[name]
    )
    problems = [
        *(f"missing from pool/_proto: {name}" for name in missing),
        *(f"not generated any more: pool/_proto/{name}" for name in extra),
        *(f"stale: pool/_proto/{name}" for name in stale),
    ]
    assert not problems, (
        "the generated code in pool/_proto does not match protos/; run `make protos`:\n  "
        + "\n  ".join(problems)
    )
