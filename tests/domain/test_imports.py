"""The domain core imports no framework (pool/__init__.py says so).

Every module directly in pool/ but the adapters (pool.api, pool.client, pool.cli,
pool._proto) is imported in a fresh interpreter; grpc, ray and prometheus_client must not be
loaded after that.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pool

FRAMEWORKS = ("grpc", "ray", "prometheus_client")
ADAPTERS = {"api", "client", "cli", "_proto"}
POOL_DIR = Path(pool.__file__).parent
ROOT = POOL_DIR.parent


def domain_modules() -> list[str]:
    names = [p.stem for p in POOL_DIR.glob("*.py") if p.stem != "__init__"]
    names += [p.name for p in POOL_DIR.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    return sorted(f"pool.{n}" for n in names if n not in ADAPTERS)


def frameworks_loaded_by(modules: list[str]) -> list[str]:
    """Framework modules in sys.modules of a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def test_there_are_domain_modules_to_check() -> None:
    modules = domain_modules()
    for expected in ("pool.engine", "pool.presence", "pool.immcu", "pool.events", "pool.store"):
        assert expected in modules
    assert not any(m.split(".")[1] in ADAPTERS for m in modules)


def test_domain_core_imports_no_framework() -> None:
    assert frameworks_loaded_by(domain_modules()) == []
