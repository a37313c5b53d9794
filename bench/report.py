"""A run's figures, the verdict against SPEC section 6, and the files a planner opens:
``report.json`` (every figure), ``operations.csv`` and ``timeseries.csv``, and
``report.html`` (plots drawn as inline SVG, so the page works offline).

With several front ends (Enterprise) the report adds the pool's processor total and mean per
front end; with a deliberate fail-over (``--kill-front-end-at``) a ``failover`` section: which
front end was killed and when, how long until the pool failed over and the affected users were
served again, the operations that failed meanwhile, the sessions that reconnected and the
read-back of every acknowledged write. Errors caught in the fail-over do not count against
the error check; a lost acknowledged write, or affected users never served again, fail the run.
"""

from __future__ import annotations

import csv
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import memory
from bench.probe import FrontEndSeries
from bench.stats import PERCENTILES, Recorder, summary

#: operations whose refusals (offline / Do Not Disturb invitee) are answers, not errors
REFUSALS = {
    ("im-invite", "FAILED_PRECONDITION"),
    ("conference-create", "FAILED_PRECONDITION"),
    ("im-invite", "PERMISSION_DENIED"),
    ("conference-create", "PERMISSION_DENIED"),
    # the conversation ended before the invitee answered: a race every real client meets
    ("accept", "NOT_FOUND"),
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Server health thresholds (SPEC section 6) and the run's own validity."""

    cpu_percent: float = 80.0
    p99_ms: float = 100.0  # store queue latency target, applied to every operation
    error_ratio: float = 0.01
    late_ratio: float = 0.01  # more late starts than this: the driver could not keep up
    memory_growth_pct_per_hour: float = 5.0  # after warm-up, driver and pool (bench.memory)


def _errors(name: str, codes: dict[str, int]) -> int:
    return sum(n for c, n in codes.items() if c != "OK" and (name, c) not in REFUSALS)


def pool_cpu(
    pool: list[tuple[float, float, int]], front_ends: int, steady_from: float
) -> dict[str, Any]:
    """The pool's processor use after the ramp: the per-round total over its front ends."""
    rounds = [r for r in pool if r[0] >= steady_from] or pool
    totals = [r[1] for r in rounds]
    per_fe = [r[1] / r[2] for r in rounds if r[2]]
    return {
        "front_ends": front_ends,
        "cpu_total_mean": sum(totals) / len(totals) if totals else 0.0,
        "cpu_total_max": max(totals, default=0.0),
        "cpu_mean_per_front_end": sum(per_fe) / len(per_fe) if per_fe else 0.0,
        "samples": [list(r) for r in pool],  # (run second, total %, front ends sampled)
    }


def failover_section(rec: Recorder, summary: dict[str, Any]) -> dict[str, Any]:
    """The fail-over's figures: ``summary`` (``Failover.summary``) and what the recorder kept."""
    codes: dict[str, int] = {}
    failed = 0
    by_operation: dict[str, int] = {}
    for name, stats in sorted(rec.failover.items()):
        e = _errors(name, dict(stats.codes))
        if e:
            by_operation[name] = e
            failed += e
        for code, n in stats.codes.items():
            if code != "OK" and (name, code) not in REFUSALS:
                codes[code] = codes.get(code, 0) + n
    c = rec.counters
    return {
        **summary,
        "operations_caught": sum(sum(st.codes.values()) for st in rec.failover.values()),
        "operations_failed": failed,
        "failed_by_operation": by_operation,
        "failed_by_code": dict(sorted(codes.items())),
        "im_messages_lost": c.get("im_messages_lost_in_failover", 0),
        "sessions_reconnected": c.get("sessions_reconnected", 0),
        "session_reconnections": c.get("session_reconnections", 0),
        "ledger_checked": c.get("ledger_checked", 0),
        "ledger_checked_affected": c.get("ledger_checked_affected", 0),
        "ledger_lost": c.get("ledger_lost", 0),
        "ledger_unreadable": c.get("ledger_unreadable", 0),
    }


def build(
    rec: Recorder,
    fronts: dict[str, FrontEndSeries],
    config: dict[str, Any],
    steady_from: float,
    thresholds: Thresholds,
    *,
    pool: list[tuple[float, float, int]] | None = None,
    failover: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of the run, and the verdict. ``pool``: the probe's per-round totals
    (several front ends); ``failover``: ``Failover.summary()`` of a deliberate kill."""
    ops: dict[str, Any] = {}
    total = errors = late = started = 0
    for name, stats in sorted(rec.ops.items()):
        codes = dict(stats.codes)
        n = sum(codes.values())
        e = _errors(name, codes)
        steady_stats = rec.steady.get(name)
        ops[name] = {
            **summary(stats.histogram),
            "steady_p99": summary(steady_stats.histogram)["p99"] if steady_stats else 0.0,
            "calls": n,
            "errors": e,
            "codes": codes,
            "late": stats.late,
            "skipped": stats.skipped,
        }
        total += n
        errors += e
        late += stats.late
        started += n
    series = rec.series.rows()  # per second, 10 s or minute by age (bench.series)
    front_ends: dict[str, dict[str, Any]] = {
        fe: {
            "address": s.address,
            "cpu_mean": s.cpu_mean(steady_from),
            "cpu_max": s.cpu_max(steady_from),
            "samples": [list(x) for x in s.samples],
        }
        for fe, s in fronts.items()
    }
    counters = dict(rec.counters)
    checks: list[tuple[str, str, str, bool]] = []
    cpu = max((float(f["cpu_mean"]) for f in front_ends.values()), default=0.0)
    checks.append(
        (
            "front-end processor (mean after ramp)",
            f"{cpu:.1f}%",
            f"< {thresholds.cpu_percent:g}%",
            cpu < thresholds.cpu_percent,
        )
    )
    # SPEC 6's latency targets are for the steady state: the sign-in ramp is judged apart
    steady = {
        name: summary(st.histogram)["p99"]
        for name, st in rec.steady.items()
        if st.histogram.get_total_count()
    }
    worst_name, worst_p99 = "-", 0.0
    for name, p99 in (steady or {n: o["p99"] for n, o in ops.items()}).items():
        if p99 > worst_p99:
            worst_name, worst_p99 = name, float(p99)
    checks.append(
        (
            f"p99 latency after the ramp (worst: {worst_name})",
            f"{worst_p99:.1f} ms",
            f"< {thresholds.p99_ms:g} ms",
            worst_p99 < thresholds.p99_ms,
        )
    )
    fo = failover_section(rec, failover) if failover is not None else None
    if fo is None:
        ratio = errors / total if total else 0.0
        checks.append(
            (
                "errors",
                f"{errors} of {total} ({ratio:.2%})",
                f"< {thresholds.error_ratio:.0%}",
                ratio < thresholds.error_ratio,
            )
        )
    else:
        outside = errors - fo["operations_failed"]
        ratio = outside / total if total else 0.0
        checks.append(
            (
                "errors outside the fail-over",
                f"{outside} of {total} ({ratio:.2%}; {fo['operations_failed']} more caught "
                "in the fail-over)",
                f"< {thresholds.error_ratio:.0%}",
                ratio < thresholds.error_ratio,
            )
        )
    lost = counters.get("ledger_lost", 0)
    if fo is None:
        checks.append(
            (
                "acknowledged writes lost",
                f"{lost} of {counters.get('ledger_checked', 0)}",
                "0",
                lost == 0,
            )
        )
    else:
        unreadable = counters.get("ledger_unreadable", 0)
        checks.append(
            (
                "acknowledged writes lost (read back after the fail-over)",
                f"{lost} of {counters.get('ledger_checked', 0)}, {unreadable} unreadable",
                "0",
                lost == 0 and unreadable == 0,
            )
        )
        served = fo["affected_users_served_again"]
        recovered = fo["first_affected_success_after"]
        killed = fo["killed_at"] is not None
        checks.append(
            (
                f"fail-over of {fo['front_end'] or '-'}: affected users served again",
                f"{served} of {fo['affected_users']}"
                + (f", first after {recovered:.2f} s" if recovered is not None else "")
                + ("" if killed else f" (not killed: {fo['error'] or 'no reason'})"),
                "> 0",
                killed and (served > 0 or fo["affected_users"] == 0),
            )
        )
    late_ratio = late / started if started else 0.0
    checks.append(
        (
            "operations started late (driver health)",
            f"{late} ({late_ratio:.2%})",
            f"< {thresholds.late_ratio:.0%}",
            late_ratio < thresholds.late_ratio,
        )
    )
    out: dict[str, Any] = {
        "config": config,
        "counters": counters,
        "operations": ops,
        "timeseries": series,
        "front_ends": front_ends,
        "total_calls": total,
        "total_errors": errors,
        "verdict": {
            "pass": all(c[3] for c in checks),
            "checks": [
                {"check": c[0], "measured": c[1], "target": c[2], "ok": c[3]} for c in checks
            ],
        },
    }
    if pool is not None and len(front_ends) > 1:
        out["pool"] = pool_cpu(pool, len(front_ends), steady_from)
    if fo is not None:
        out["failover"] = fo
    return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def failover_text(fo: dict[str, Any]) -> list[str]:
    """The fail-over section as a terminal reads it."""
    if fo["killed_at"] is None:
        return [f"fail-over: no front end was killed ({fo['error'] or 'no reason'})"]
    codes = ", ".join(f"{c} {n}" for c, n in fo["failed_by_code"].items())
    lines = [
        f"fail-over: {fo['front_end']} crashed at {fo['killed_at']:.2f} s into the run "
        f"({fo['requested']}); {fo['affected_users']} of {fo['signed_in_users_at_kill']} "
        f"signed-in users homed there ({fo['affected_endpoints']} endpoints)",
        f"  pool failed over ({fo['front_end']} down, its routing groups promoted) after "
        f"{_s(fo['pool_failed_over_after'])}",
        f"  affected endpoints signed in again: first after "
        f"{_s(fo['first_reregistered_after'])}, all after {_s(fo['all_reregistered_after'])}",
        f"  first successful call of an affected user after "
        f"{_s(fo['first_affected_success_after'])}; {fo['affected_users_served_again']} of "
        f"{fo['affected_users']} affected users served again (median "
        f"{_s(fo['affected_served_median_after'])}, last {_s(fo['affected_served_last_after'])})",
        f"  fail-over window: {fo['killed_at']:.2f} s to "
        + (
            f"{fo['window_end']:.2f} s"
            if fo["window_end"] is not None
            else "the end of the run (it never closed)"
        )
        + " (its errors and latencies are kept apart from the steady state)",
        f"  operations failed during the fail-over: {fo['operations_failed']} of "
        f"{fo['operations_caught']} caught in it"
        + (f" ({codes})" if codes else "")
        + (f"; IM messages lost {fo['im_messages_lost']}" if fo["im_messages_lost"] else ""),
        f"  sessions reconnected: {fo['sessions_reconnected']} "
        f"({fo['session_reconnections']} re-registrations)",
        f"  acknowledged manual presence read back at the end: {fo['ledger_checked']} "
        f"({fo['ledger_checked_affected']} of affected users), lost {fo['ledger_lost']}, "
        f"unreadable {fo['ledger_unreadable']}",
    ]
    if fo["error"]:
        lines.append(f"  note: {fo['error']}")
    return lines


def text(report: dict[str, Any]) -> str:
    """The report as a terminal reads it."""
    cfg = report["config"]
    lines = [
        f"poolsim run: {cfg.get('edition')} pool, {cfg.get('users')} users "
        f"({cfg.get('signed_in')} signed in), level {cfg.get('level')}, "
        f"{cfg.get('duration'):g} s, speedup {cfg.get('speedup'):g}",
        "",
    ]
    head = (
        f"{'operation':<18} {'calls':>8} {'errors':>7} {'late':>6} "
        + " ".join(f"{'p' + format(p, 'g'):>8}" for p in PERCENTILES)
        + f" {'max':>8} {'steady99':>8}  (ms; steady = after the ramp)"
    )
    lines.append(head)
    for name, o in report["operations"].items():
        pcts = " ".join(f"{o['p' + format(p, 'g')]:>8.2f}" for p in PERCENTILES)
        lines.append(
            f"{name:<18} {o['calls']:>8} {o['errors']:>7} {o['late']:>6} {pcts} {o['max']:>8.2f}"
            f" {o['steady_p99']:>8.2f}"
        )
    c = report["counters"]
    lines += [
        "",
        "stress-tool counters: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(c.items())),
    ]
    for fe, f in report["front_ends"].items():
        lines.append(
            f"front end {fe}: processor mean {f['cpu_mean']:.1f}%, "
            f"max {f['cpu_max']:.1f}% of one core"
        )
    p = report.get("pool")
    if p is not None:
        lines.append(
            f"pool of {p['front_ends']} front ends: processor total mean "
            f"{p['cpu_total_mean']:.1f}%, max {p['cpu_total_max']:.1f}% (of one core); mean "
            f"per front end {p['cpu_mean_per_front_end']:.1f}%"
        )
    if "failover" in report:
        lines += ["", *failover_text(report["failover"])]
    if "memory" in report:
        lines += ["", *memory.text(report["memory"])]
    rebuilt = report.get("rebuilt")
    if rebuilt is not None and not rebuilt["complete"]:
        lines += [
            "",
            f"rebuilt from the folder of a run that did not finish: measured until "
            f"{rebuilt['measured_until_s']:.0f} s (no read-back of acknowledged writes)",
        ]
    v = report["verdict"]
    lines += ["", f"verdict: {'PASS' if v['pass'] else 'FAIL'}"]
    for chk in v["checks"]:
        lines.append(
            f"  [{'ok' if chk['ok'] else 'FAIL':>4}] {chk['check']}: {chk['measured']} "
            f"(target {chk['target']})"
        )
    return "\n".join(lines)


def _chart(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    unit: str,
    width: int = 640,
    height: int = 220,
) -> str:
    """A line chart as inline SVG."""
    pad = 44
    points = [p for s in series.values() for p in s]
    if not points:
        return f"<h3>{html.escape(title)}</h3><p>no data</p>"
    xmax = max(p[0] for p in points) or 1.0
    ymax = max(p[1] for p in points) * 1.1 or 1.0
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"]

    def xy(x: float, y: float) -> str:
        return (
            f"{pad + (width - 2 * pad) * x / xmax:.1f},"
            f"{height - pad - (height - 2 * pad) * y / ymax:.1f}"
        )

    parts = [
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="sans-serif" font-size="11">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#999"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#999"/>',
        f'<text x="{pad}" y="{pad - 8}">{ymax:.3g} {html.escape(unit)}</text>',
        f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">{xmax:.0f} s</text>',
    ]
    for i, (name, pts) in enumerate(series.items()):
        color = colors[i % len(colors)]
        if pts:
            path = " ".join(xy(x, y) for x, y in pts)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>'
            )
        parts.append(
            f'<text x="{width - pad + 4 - 120}" y="{pad + 14 * (i + 1)}" '
            f'fill="{color}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return f"<h3>{html.escape(title)}</h3>" + "".join(parts)


def html_page(report: dict[str, Any]) -> str:
    ts = report["timeseries"]
    v = report["verdict"]
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{o['calls']}</td><td>{o['errors']}</td>"
        f"<td>{o['late']}</td>"
        + "".join(f"<td>{o['p' + format(p, 'g')]:.2f}</td>" for p in PERCENTILES)
        + f"<td>{o['max']:.2f}</td></tr>"
        for n, o in report["operations"].items()
    )
    checks = "".join(
        f"<tr><td>{'&#10004;' if c['ok'] else '&#10008;'}</td><td>{html.escape(c['check'])}</td>"
        f"<td>{html.escape(c['measured'])}</td><td>{html.escape(c['target'])}</td></tr>"
        for c in v["checks"]
    )
    percentile_series = {
        n: [(i + 1.0, o["p" + format(p, "g")]) for i, p in enumerate(PERCENTILES)]
        for n, o in report["operations"].items()
    }
    charts = [
        _chart(
            "Throughput (operations completed per second)",
            {
                "ok": [(s["t"], s["ops"] - s["errors"]) for s in ts],
                "errors": [(s["t"], s["errors"]) for s in ts],
            },
            "ops/s",
        ),
        _chart("p99 latency per second", {"p99": [(s["t"], s["p99_ms"]) for s in ts]}, "ms"),
        _chart(
            "Latency percentiles per operation (x: p50, p90, p99, p99.9)", percentile_series, "ms"
        ),
        _chart(
            "Front-end processor (% of one core)",
            {
                **{
                    fe: [(x[0], x[1]) for x in f["samples"]]
                    for fe, f in report["front_ends"].items()
                },
                **(
                    {"pool total": [(x[0], x[1]) for x in report["pool"]["samples"]]}
                    if "pool" in report
                    else {}
                ),
            },
            "%",
        ),
        _chart(
            "Registered endpoints per front end",
            {fe: [(x[0], x[3]) for x in f["samples"]] for fe, f in report["front_ends"].items()},
            "endpoints",
        ),
    ]
    cfg = html.escape(json.dumps(report["config"], indent=1))
    failover = (
        "<h2>Fail-over</h2><pre>"
        + html.escape("\n".join(failover_text(report["failover"])))
        + "</pre>"
        if "failover" in report
        else ""
    )
    if "memory" in report:  # as text until the charts draw it
        failover += "<h2>Memory</h2><pre>" + html.escape("\n".join(memory.text(report["memory"])))
        failover += "</pre>"
    verdict = "PASS" if v["pass"] else "FAIL"
    pcts = "".join(f"<th>p{p:g} ms</th>" for p in PERCENTILES)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>poolsim run report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:nth-child(2){{text-align:left}}
.pass{{color:#2a2}}.fail{{color:#c22}}</style></head><body>
<h1>poolsim run: <span class="{verdict.lower()}">{verdict}</span></h1>
<h2>Verdict against the server health thresholds</h2>
<table><tr><th></th><th>check</th><th>measured</th><th>target</th></tr>{checks}</table>
{failover}<h2>Operations</h2><table><tr><th>operation</th><th>calls</th><th>errors</th><th>late</th>{pcts}
<th>max ms</th></tr>{rows}</table>
<h2>Over time</h2>{"".join(charts)}
<h2>Configuration</h2><pre>{cfg}</pre></body></html>"""


def write(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        folder / "report.json",
        folder / "operations.csv",
        folder / "timeseries.csv",
        folder / "report.html",
    ]
    paths[0].write_text(json.dumps(report, indent=1))
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        cols = [
            "calls",
            "errors",
            "late",
            "skipped",
            *[f"p{p:g}" for p in PERCENTILES],
            "max",
            "mean",
        ]
        w.writerow(["operation", *cols])
        for name, o in report["operations"].items():
            w.writerow([name, *[o[c] for c in cols]])
    with paths[2].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "span", "ops", "errors", "p99_ms"])  # ops, errors: per second
        for s in report["timeseries"]:
            w.writerow([s["t"], s.get("span", 1), s["ops"], s["errors"], s["p99_ms"]])
    paths[3].write_text(html_page(report))
    return paths
