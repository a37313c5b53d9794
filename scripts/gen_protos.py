"""Regenerate pool/_proto from protos/ (the one way generated code is made).

Usage: python scripts/gen_protos.py [OUT_DIR]

The generated modules import each other as ``poolsim.v1``; they are rewritten to import from
``pool._proto.poolsim.v1`` so the fenced package works without touching sys.path.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "pool._proto"


def generate(out_dir: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc  # only a dev dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written: list[Path] = []
    for path in sorted(out_dir.rglob("*.py*")):
        text = path.read_text()
        text = re.sub(
            r"^from poolsim\.v1 import", f"from {PACKAGE}.poolsim.v1 import", text, flags=re.M
        )
        text = re.sub(r"^import poolsim\.v1\.", f"import {PACKAGE}.poolsim.v1.", text, flags=re.M)
        path.write_text(text)
        written.append(path)
    for pkg in (out_dir, out_dir / "poolsim", out_dir / "poolsim" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated code: do not edit; run scripts/gen_protos.py."""\n')
            written.append(init)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "pool" / "_proto"
    for p in generate(target):
        print(p.relative_to(target))
