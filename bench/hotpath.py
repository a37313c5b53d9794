"""`poolsim bench`: poolsim's hot routing path against baselines measured in the same run.

Every benchmark compares a poolsim figure with a baseline of the same shape and no logic,
measured moments apart on this machine, and reports the ratio against its target:

    routing-core   Engine.send_message + drain, in process       vs a dict + deque loop
    grpc-e2e       SendMessage -> recipient's Events, over gRPC  vs a bare grpc.aio server
    fanout         PublishPresence -> 80 watchers' Events        vs the bare server as broadcast
    enterprise     SendMessage to a recipient on another front   vs the same test on one
                   end of an Enterprise pool on Ray                 Standard node (own process)
                   batched Link calls between two Ray actors     vs a bare Ray actor call per
                                                                    message (no target given)
    session        processor per routed message, presence        vs unary calls, a bare grpc.aio
                   notification and client message over            bidi echo, and ejabberd's
                   FrontEnd.Session streams (issue #15's workload)  figures (goal <= 2x)
    memory         RSS per signed-in user (80 contacts), fresh   vs 1 GiB for 80,000 on one FE

``enterprise`` (``bench.hotpath_enterprise``, ``bench.hotpath_link``) starts a pool of 3 front
ends on Ray (the Ray cluster named by ``RAY_ADDRESS``, else a local instance that is stopped
afterwards) and a Standard server in its own process. Besides its two target rows (throughput,
and processor per message of every process of each side) it reports figure rows, never judged:
same-node delivery in the pool against the same Standard baseline, and the batched calls
against bare Ray calls (both with a ratio, no target given); the mean items per batch between
the pool's front ends (``poolsim_cross_node_batch_items``); and the fail-over
time (a front end holding primaries is crashed; seconds until a user homed there has a
successful call again).

The table is printed and the figures written as JSON (``--out``, default
``reports/bench-<time>.json``). ``--quick`` is the short version the tests run (for
``enterprise``: a few seconds of load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.hotpath_common import GIB, Options, Result, Row


def run_routing_core(opts: Options) -> Result:
    from bench.hotpath_core import run_routing_core as run

    return run(opts)


def run_grpc_e2e(opts: Options) -> Result:
    from bench.hotpath_grpc import run_grpc_e2e as run

    return run(opts)


def run_fanout(opts: Options) -> Result:
    from bench.hotpath_grpc import run_fanout as run

    return run(opts)


def run_enterprise(opts: Options) -> Result:
    from bench.hotpath_enterprise import run_enterprise as run

    return run(opts)


def run_session(opts: Options) -> Result:
    from bench.hotpath_session import run_session as run

    return run(opts)


def run_memory(opts: Options) -> Result:
    from bench.hotpath_core import run_memory as run

    return run(opts)


BENCHMARKS: dict[str, Callable[[Options], Result]] = {
    "routing-core": run_routing_core,
    "grpc-e2e": run_grpc_e2e,
    "fanout": run_fanout,
    "enterprise": run_enterprise,
    "session": run_session,
    "memory": run_memory,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument(
        "--out", type=Path, help="JSON report path (default reports/bench-<time>.json)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random contacts (memory)")
    parser.add_argument(
        "--concurrency", type=int, help="grpc-e2e: messages in flight (default 32; quick 16)"
    )
    parser.add_argument(
        "--store",
        choices=["sqlite", "memory"],
        help="store of the poolsim server in grpc-e2e and fanout, and of the Standard node "
        "enterprise compares with (default sqlite)",
    )
    parser.add_argument(
        "--memory-users", type=int, help="memory: users to measure (default 80,000; quick 5,000)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is not met")


def options_from(args: argparse.Namespace) -> Options:
    opts = Options.quick_options(args.seed) if args.quick else Options(seed=args.seed)
    changes: dict[str, Any] = {}
    if args.concurrency:
        changes["e2e_concurrency"] = args.concurrency
    if args.store:
        changes["e2e_store"] = args.store
    if args.memory_users:
        changes["memory_users"] = args.memory_users
        changes["memory_fallback_users"] = min(opts.memory_fallback_users, args.memory_users)
    return dataclasses.replace(opts, **changes)


# --- report ---


def _num(value: float, unit: str) -> str:
    if math.isnan(value):
        return "-"
    if unit == "bytes":
        return f"{value / GIB:.2f} GiB"
    if unit in ("s", "items/batch"):
        return f"{value:,.2f} {unit}"
    if value >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}"


def _duration(us: float | None) -> str:
    if us is None or math.isnan(us):
        return "-"
    return f"{us:.1f} us" if us < 1000 else f"{us / 1000:.2f} ms"


def _pair(row: Row, who: str) -> str:
    p50, p99 = row.latency_us.get(f"{who}_p50"), row.latency_us.get(f"{who}_p99")
    return "-" if p50 is None else f"{_duration(p50)} / {_duration(p99)}"


HEADER: tuple[str, ...] = ("benchmark", "poolsim", "baseline", "ratio", "target", "met?")
HEADER += ("poolsim p50/p99", "baseline p50/p99")


def table(results: list[Result]) -> str:
    lines: list[tuple[str, ...]] = [HEADER]
    for res in results:
        if res.status != "ok":
            lines.append((res.name, "-", "-", "-", "-", res.status, "-", "-"))
            continue
        for row in res.rows:
            lines.append(
                (
                    row.name,
                    _num(row.poolsim, row.unit),
                    _num(row.baseline, row.unit),
                    "-" if math.isnan(row.ratio) else f"{row.ratio:.3f}",
                    row.target_text,
                    "-" if row.is_figure else "yes" if row.met else "NO",
                    _pair(row, "poolsim"),
                    _pair(row, "baseline"),
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(s.rstrip() for s in out)


def _clean(value: Any) -> Any:
    """JSON without NaN: NaN becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def report(results: list[Result], opts: Options, started: datetime) -> dict[str, Any]:
    import grpc

    rows = [row for res in results for row in res.rows]
    doc: dict[str, Any] = _clean(
        {
            "tool": "poolsim bench",
            "started": started.isoformat(timespec="seconds"),
            "quick": opts.quick,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "grpc": grpc.__version__,
                "platform": platform.platform(),
            },
            "options": dataclasses.asdict(opts),
            "benchmarks": {res.name: res.to_json() for res in results},
            "targets": [
                {"row": r.name, "ratio": r.ratio, "target": r.target_text, "met": r.met}
                for r in rows
                if not r.is_figure
            ],
            "figures": [
                {
                    "row": r.name,
                    "value": r.poolsim,
                    "unit": r.unit,
                    "baseline": r.baseline,  # null unless measured against one (no target)
                    "ratio": r.ratio,
                }
                for r in rows
                if r.is_figure
            ],
            "all_targets_met": all(r.met for r in rows),
        }
    )
    return doc


def main(args: argparse.Namespace) -> int:
    opts = options_from(args)
    names = args.only or list(BENCHMARKS)
    started = datetime.now()
    results: list[Result] = []
    for name in BENCHMARKS:
        if name not in names:
            continue
        print(f"{name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = BENCHMARKS[name](opts)
        except Exception as exc:  # one failure must not lose the others' figures
            result = Result(name, status="failed", reason=f"{type(exc).__name__}: {exc}")
            print(f"  {name} failed: {result.reason}", file=sys.stderr, flush=True)
        result.seconds = time.perf_counter() - t0
        results.append(result)
    doc = report(results, opts, started)
    out = args.out or Path("reports") / f"bench-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    print()
    print(table(results))
    print()
    for res in results:
        for row in res.rows:
            if row.is_figure:
                against = ""
                if not math.isnan(row.ratio):  # a comparison with no target given
                    against = f" against {_num(row.baseline, row.unit)}, ratio {row.ratio:.3f}"
                print(f"figure {row.name}: {_num(row.poolsim, row.unit)}{against} (no target)")
                continue
            verdict = "met" if row.met else "NOT met"
            print(f"target {row.name}: ratio {row.ratio:.3f}, target {row.target_text}: {verdict}")
        if res.status != "ok":
            print(f"{res.name}: {res.status}: {res.reason}")
        for note in res.notes:
            print(f"  note ({res.name}): {note}")
    print(f"\nreport: {out}")
    if any(res.status == "failed" for res in results):
        return 1
    if args.strict and not doc["all_targets_met"]:
        return 3
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
