"""What the points of ``poolsim plan`` say (:func:`analyse`: the USL fit with its intervals,
users per front end, the limit and the knee) and how the answer is written: the text a
terminal shows, ``plan.json`` and ``plan.html``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.capacity import (
    LYNC_USERS_PER_FE,
    Sizing,
    UslConfidence,
    UslFit,
    fit_usl,
    format_sizing,
    usl_confidence,
)
from bench.cpus import show
from bench.plan_points import DRIVER, MACHINE, NONE, POOL, RAMP, Point


@dataclass(frozen=True, slots=True)
class Findings:
    """What the points say: the USL fit and the users-per-FE figures."""

    fit: UslFit | None
    fit_note: str | None  # why there is no fit
    best: Point | None  # the largest passing run
    users_per_fe: float | None  # best.effective_users / best.front_ends
    knee_users_per_fe: float | None  # the USL's throughput peak per FE (None: no fit or no peak)
    lower_bound: bool  # no run failed: the true figure may be higher
    stopped: str
    limit: str = ""  # the resource that limits users per FE ("" unknown)
    limit_kind: str = NONE
    confidence: UslConfidence | None = None


def analyse(points: list[Point], stopped: str) -> Findings:
    """Fit the USL to the finished runs the pool limited (or passed), and read off the
    users-per-FE figure, its limit and the knee."""
    done = [
        p for p in points if p.error is None and p.throughput > 0 and p.limit_kind in (POOL, NONE)
    ]
    # a saturated driver delivered less than its users ask: its throughput is not theirs
    fitted = [p for p in done if not p.driver_saturated]
    fit: UslFit | None = None
    note: str | None = None
    confidence: UslConfidence | None = None
    pts = [(p.effective_users, p.throughput) for p in fitted]
    if len({p.users for p in fitted}) < 3:
        note = (
            "a USL fit needs at least 3 finished runs at different user counts with a driver "
            f"that kept up ({len(fitted)})"
        )
    else:
        try:
            fit = fit_usl(pts)
        except ValueError as exc:
            note = str(exc)
    if fit is not None:  # the band over the whole plotted range (bench.plan_chart)
        top = max(p.effective_users for p in points if p.throughput > 0) * 1.3
        confidence = usl_confidence(pts, fit, [top * i / 100 for i in range(1, 101)])
    passing = [p for p in done if p.passed]
    best = max(passing, key=lambda p: p.users, default=None)
    per_fe = best.per_fe if best is not None else None
    knee: float | None = None  # only when its interval is finite: else the points cannot tell
    if (
        fit is not None
        and math.isfinite(fit.peak_n())
        and confidence is not None
        and confidence.peak_n is not None
    ):
        fes = best.front_ends if best is not None else done[-1].front_ends
        knee = fit.peak_n() / fes
    pool_fails = sorted((p for p in points if p.limit_kind == POOL), key=lambda p: p.users)
    others = [p for p in points if p.limit_kind in (DRIVER, RAMP, MACHINE)]
    if pool_fails:  # the pool failed somewhere: the largest pass below it is a capacity figure
        limit_kind, limit = POOL, pool_fails[0].limit
    elif others:
        limit_kind, limit = others[0].limit_kind, others[0].limit
    else:
        limit_kind, limit = NONE, ""
    lower = bool(done) and not pool_fails
    return Findings(fit, note, best, per_fe, knee, lower, stopped, limit, limit_kind, confidence)


def point_line(p: Point) -> str:
    if p.error is not None:
        return f"{p.users:>7,}  did not finish: {p.error}"
    server = "-" if p.server_p99_ms is None else f"{p.server_p99_ms:.2f}"
    return (
        f"{p.users:>7,} {p.per_fe:>9,.0f} {p.window_s:>5.0f} {p.throughput:>8.1f} "
        f"{p.worst_p99_ms:>8.1f} {server:>8} {p.worst_operation:<17} {p.cpu_percent:>5.1f} "
        f"{p.driver_cpu:>5.1f} {p.driver_lag_p99_ms:>6.1f} {p.total_errors:>6,}  "
        f"{_verdict(p)}"
        + (f" ({p.limit_kind}: {p.limit})" if p.limit else "")
        + (f"\n{'':>9}note: {p.note}" if p.note else "")
    )


def _verdict(p: Point) -> str:
    """The run's verdict; a run that failed only where the machine, not the pool, fell short
    (the clients' p99 over the target, the pool's own under it) passed as the plan counts it."""
    status = p.result or ("PASS" if p.passed else "FAIL")
    if p.passed and status == "FAIL":
        return "PASS for the pool (the run: FAIL)"
    return status


def summary(
    points: list[Point],
    findings: Findings | None,
    lync: Sizing | None,
    measured: Sizing | None,
    out: Path,
) -> str:
    """The plan as a terminal reads it."""
    lines: list[str] = []
    if findings is None:
        lines += [
            f"poolsim plan: no measurement (--no-measure): sizing with Lync's documented "
            f"{LYNC_USERS_PER_FE:,} users per front end only",
            "",
        ]
    else:
        speedups = {p.speedup for p in points}
        lines += [f"poolsim plan: {len(points)} run(s); {findings.stopped}", ""]
        lines.append(
            f"{'users':>7} {'per FE':>9} {'win s':>5} {'calls/s':>8} {'p99 ms':>8} "
            f"{'pool p99':>8} {'(worst op)':<17} {'fe %':>5} {'drv %':>5} {'lag ms':>6} "
            f"{'errors':>6}  verdict"
        )
        lines += [point_line(p) for p in points]
        if any(s != 1 for s in speedups):
            lines.append(
                f"(per FE: users x speedup {', '.join(f'{s:g}' for s in sorted(speedups))}: each "
                "simulated user does that many users' work, standing in for more users)"
            )
        lines.append("")
        fit = findings.fit
        ci = findings.confidence
        if fit is None:
            lines.append(f"USL fit: none ({findings.fit_note})")
        else:
            peak = fit.peak_n()
            if not math.isfinite(peak):
                where = "no peak (kappa = 0: throughput keeps rising, ever more slowly)"
            elif ci is None or ci.peak_n is None:
                where = "its peak is not determined by these points (kappa may be 0)"
            else:
                where = (
                    f"throughput peaks at {peak:,.0f} users ({fit.throughput(peak):,.1f} calls/s)"
                )

            def band(v: tuple[float, float] | None) -> str:
                return "" if v is None else f" [{v[0]:.3g}, {v[1]:.3g}]"

            missing = "no confidence interval was computed" if ci is None else ci.missing
            lines.append(
                f"USL fit{'' if missing else ' (95% intervals)'}: lambda {fit.lam:.4g}"
                f"{band(ci.lam if ci else None)} "
                f"calls/s per user, sigma {fit.sigma:.3g}{band(ci.sigma if ci else None)}, "
                f"kappa {fit.kappa:.3g}{band(ci.kappa if ci else None)}, R^2 {fit.r2:.4f}; {where}"
            )
            if missing:
                lines.append(f"  no 95% intervals: {missing}")
            if (
                ci is not None
                and ci.kappa is not None
                and ci.kappa[0] <= 0
                and (ci.sigma is None or ci.sigma[0] <= 0)
            ):
                lines.append(
                    "  (sigma and kappa are not told apart from 0: within these points "
                    "throughput scales linearly, so the curve says nothing about the knee)"
                )
        if findings.limit_kind in (DRIVER, RAMP, MACHINE):
            lines.append(
                f"users per front end here: no capacity figure: the limit was the "
                f"{findings.limit_kind}, not the pool ({findings.limit})"
            )
            if findings.best is not None:
                lines.append(
                    f"  (the pool passed up to {findings.best.per_fe:,.0f} users per front end)"
                )
        elif findings.best is None or findings.users_per_fe is None:
            lines.append("users per front end here: unknown (no run met the targets)")
        else:
            b = findings.best
            bound = (
                " at least (no run broke the pool's targets: raise --max-runs or --step)"
                if findings.lower_bound
                else ""
            )
            lines.append(
                f"users per front end here:{bound} {findings.users_per_fe:,.0f}, against "
                f"Lync's {LYNC_USERS_PER_FE:,} (largest passing run: {b.users:,} users"
                + (f" x speedup {b.speedup:g}" if b.speedup != 1 else "")
                + f" on {b.front_ends} front end(s), p99 {b.worst_p99_ms:.1f} ms, processor "
                f"{b.cpu_percent:.1f}%)"
            )
            if b.front_ends > 1:
                lines.append(
                    f"the pool of {b.front_ends} front ends: {b.effective_users:,.0f} users"
                )
            if findings.limit:
                lines.append(f"limited by the pool: {findings.limit}")
                first_fail = min(
                    (p for p in points if p.limit_kind == POOL), key=lambda p: p.users, default=None
                )
                if first_fail is not None and first_fail.note:
                    lines.append(f"  (at {first_fail.per_fe:,.0f} per FE: {first_fail.note})")
            notes = [p for p in points if p.note.startswith(MACHINE)]
            if notes:
                lines.append(
                    f"note: at {len(notes)} point(s) the clients' p99 was over the target while "
                    "the pool's own stayed under it (the machine, not the pool): " + notes[-1].note
                )
        knee = findings.knee_users_per_fe
        if knee is not None and fit is not None and ci is not None and ci.peak_n is not None:
            per = knee / fit.peak_n()  # users per FE per unit of concurrency
            lines.append(
                f"USL knee: {knee:,.0f} users per front end, 95% [{ci.peak_n[0] * per:,.0f}, "
                f"{ci.peak_n[1] * per:,.0f}] (past it, more users bring less throughput)"
            )
        lines.append(
            f"hardware: {os.cpu_count()} CPUs, {platform.machine()}; measured on "
            + (
                "an Enterprise pool"
                if points and points[0].front_ends > 1
                else "a Standard pool (no replication to secondaries, which an Enterprise "
                "front end also does)"
            )
        )
        lines.append("")
    if lync is not None:
        lines.append(
            format_sizing(lync, measured, measured_label="measured here")
            if measured is not None
            else format_sizing(lync)
        )
        if findings is not None and measured is None:
            lines.append("(no measured users-per-FE figure: Lync's only)")
        lines.append("")
    lines.append(
        f"plan: {out / 'plan.json'}" + ("" if findings is None else f", {out / 'plan.html'}")
    )
    return "\n".join(lines)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _sizing_dict(s: Sizing | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {**asdict(s), "total_front_ends": s.total_front_ends}


def _option(value: Any) -> Any:
    """An option's value as plan.json holds it (a path or a processor list as written)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, frozenset):  # --pool-cpus
        return show(value)
    return value


def plan_document(
    args: argparse.Namespace,
    points: list[Point],
    findings: Findings | None,
    lync: Sizing | None,
    measured: Sizing | None,
) -> dict[str, Any]:
    """What plan.json holds (strict JSON: no infinities)."""
    options = {k: _option(v) for k, v in vars(args).items() if not callable(v)}
    fit = findings.fit if findings is not None else None
    ci = findings.confidence if findings is not None else None
    return {
        "created": datetime.now().isoformat(timespec="seconds"),
        "options": options,
        "hardware": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "measured": findings is not None,
        "stopped": findings.stopped if findings is not None else None,
        "points": [
            {**asdict(p), "effective_users": p.effective_users, "per_fe": p.per_fe} for p in points
        ],
        "fit": None
        if fit is None
        else {
            "lambda": fit.lam,
            "sigma": fit.sigma,
            "kappa": fit.kappa,
            "r2": fit.r2,
            "peak_users": _finite(fit.peak_n()),
            "interval_95": None
            if ci is None
            else {
                "lambda": ci.lam,
                "sigma": ci.sigma,
                "kappa": ci.kappa,
                "peak_users": ci.peak_n,
                "missing": ci.missing or None,
            },
            "band": [list(b) for b in ci.band] if ci is not None else [],
        },
        "fit_note": findings.fit_note if findings is not None else None,
        "users_per_fe": None
        if findings is None
        else {
            "largest_passing": findings.users_per_fe,
            "usl_knee": findings.knee_users_per_fe,
            "lower_bound": findings.lower_bound,
            "limit": findings.limit,
            "limit_kind": findings.limit_kind,
            "capacity_figure": findings.limit_kind in (POOL, NONE)
            and findings.users_per_fe is not None,
        },
        "lync_users_per_fe": LYNC_USERS_PER_FE,
        "sizing": None
        if lync is None
        else {
            "target_users": lync.users,
            "measured": _sizing_dict(measured),
            "lync": _sizing_dict(lync),
        },
    }


def plan_html(doc: dict[str, Any], text: str) -> str:
    """The plan's chart and summary as one offline page."""
    import html as h

    from bench import charts
    from bench.plan_chart import defence_chart, plan_chart

    chart = plan_chart(doc)
    body = charts.div(chart) if chart is not None else "<p>no finished runs to draw</p>"
    defences = defence_chart(doc)
    if defences is not None:
        body += charts.div(defences)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>poolsim plan</title>
{charts.head()}
<style>body{{font-family:sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}}
pre{{background:#f8f8f8;padding:0.5em;white-space:pre-wrap;font-size:12px}}</style></head><body>
<h1>poolsim plan</h1>{body}<pre>{h.escape(text)}</pre></body></html>"""
