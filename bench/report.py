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

from bench import charts, memory
from bench.probe import FrontEndSeries
from bench.selfcheck import SATURATED_CPU, SATURATED_LAG_MS
from bench.server_latency import STORE, Buckets, compare
from bench.stats import (
    PERCENTILES,
    REFUSALS,
    OpStats,
    Phase,
    Recorder,
    is_error,
    new_histogram,
    summary,
)

OK, FAIL, INCONCLUSIVE = "ok", "fail", "inconclusive"
LATE_RATIO = 0.01  # more late or skipped starts than this: the driver could not keep up
STARVED_CPU = 50.0  # a driver lagging while under this much of a core was starved, not busy
LYNC_PEAK_SIGN_INS = 12.0  # per second, a Lync pool's documented peak (SPEC 5)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Server health thresholds (SPEC section 6) and the run's own validity."""

    cpu_percent: float = 80.0
    p99_ms: float = 100.0  # store queue latency target, applied to every operation
    error_ratio: float = 0.01
    memory_growth_pct_per_hour: float = 5.0  # after warm-up, driver and pool (bench.memory)


def _errors(name: str, codes: dict[str, int]) -> int:
    return sum(n for c, n in codes.items() if is_error(name, c))


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


def _window_figures(stats: OpStats | None, name: str) -> dict[str, Any]:
    if stats is None:
        return {
            **summary(new_histogram()),
            "calls": 0,
            "errors": 0,
            "codes": {},
            "late": 0,
            "skipped": 0,
        }
    return {
        **summary(stats.histogram),
        "calls": stats.calls,
        "errors": stats.errors(name),
        "codes": dict(stats.codes),
        "late": stats.late,
        "skipped": stats.skipped,
    }


def _check(name: str, measured: str, target: str, status: str) -> dict[str, Any]:
    """One line of the verdict; ``status``: ok, fail or inconclusive."""
    return {
        "check": name,
        "measured": measured,
        "target": target,
        "status": status,
        "ok": status == OK,
    }


def _status(good: bool) -> str:
    return OK if good else FAIL


def _in(t: float, start: float | None, end: float | None) -> bool:
    return start is not None and t >= start and (end is None or t < end)


def driver_section(
    health: dict[str, dict[str, Any]], window: dict[str, Any], ops: dict[str, Any]
) -> dict[str, Any]:
    """The load generator's own figures (in the window when there is one) and whether it was
    saturated (``bench.selfcheck``'s limits)."""
    started = sum(o["window"]["calls"] + o["window"]["skipped"] for o in ops.values())
    late = sum(o["window"]["late"] for o in ops.values())
    skipped = sum(o["window"]["skipped"] for o in ops.values())
    if window["from"] is None:  # no window: the whole run
        started = sum(o["calls"] + o["skipped"] for o in ops.values())
        late = sum(o["late"] for o in ops.values())
        skipped = sum(o["skipped"] for o in ops.values())
    cpu = max((d["cpu_mean"] for d in health.values()), default=0.0)
    lag = max((d["loop_lag_p99_ms"] for d in health.values()), default=0.0)
    late_ratio = (late + skipped) / started if started else 0.0
    why = []
    if cpu > SATURATED_CPU:
        why.append(f"processor {cpu:.0f}% of a core (limit {SATURATED_CPU:g}%)")
    if lag > SATURATED_LAG_MS:
        why.append(f"event-loop lag p99 {lag:.1f} ms (limit {SATURATED_LAG_MS:g} ms)")
    if late_ratio > LATE_RATIO:
        why.append(
            f"{late} late starts and {skipped} without a free slot, {late_ratio:.1%} of "
            f"{started} (limit {LATE_RATIO:.0%})"
        )
    starved = bool(why) and cpu < STARVED_CPU and not skipped
    if starved:
        why.append(
            f"the driver used only {cpu:.0f}% of a core: its process waited for a processor "
            "(other processes held the machine's cores), so the figures are the machine's"
        )
    return {
        "drivers": health,
        "starved": starved,
        "cpu_mean_max": cpu,
        "loop_lag_p99_ms": lag,
        "late": late,
        "skipped": skipped,
        "started": started,
        "late_ratio": late_ratio,
        "saturated": bool(why),
        "why": why,
    }


def server_section(server: dict[str, Buckets], ops: dict[str, Any]) -> dict[str, Any]:
    """The pool's own latency per RPC in the window beside the client's, and the gaps."""
    rows = compare(server, {n: o["window"] for n, o in ops.items() if o["window"]["count"]})
    gaps = [r for r in rows if r["gap"]]
    note = ""
    if gaps:
        worst = max(gaps, key=lambda r: float(r["client_p99_ms"]))  # type: ignore[arg-type]
        note = (
            f"client p99 of {worst['operation']} {worst['client_p99_ms']:.1f} ms against the "
            f"pool's own {worst['server_p99_ms']:.2f} ms for {worst['rpc']}: the time was spent "
            "queued in the client, the network or the machine, not in the pool"
        )
    store = server.get(STORE)
    p99 = store.quantile(0.99) if store is not None else None
    return {
        "rows": rows,
        "gaps": len(gaps),
        "note": note,
        "store_write_p99_ms": None if p99 is None else p99 * 1000,
        "store_writes": store.count if store is not None else 0,
    }


def ramp_section(rec: Recorder, config: dict[str, Any]) -> dict[str, Any]:
    """The sign-in ramp's own line: its length, the sign-in rate reached and latency, beside
    Lync's pool peak (~12/s) and the stress tool's 1-2 per second per instance."""
    start = rec.phases.get(Phase.RAMP.value, 0.0)
    end = rec.phases.get(Phase.SETTLING.value)
    sign_in = rec.ops.get("sign-in")
    users = int(config.get("signed_in", 0))
    length = (end - start) if end is not None else None
    return {
        "planned_per_s": config.get("ramp"),
        "lync_peak_per_s": LYNC_PEAK_SIGN_INS,
        "stress_tool_per_s": "1-2 per instance",
        "seconds": length,
        "users_per_s": users / length if length else None,
        "sign_in": summary(sign_in.histogram) if sign_in else summary(new_histogram()),
        "sign_in_errors": sign_in.errors("sign-in") if sign_in else 0,
        "finished": end is not None,
    }


def build(
    rec: Recorder,
    fronts: dict[str, FrontEndSeries],
    config: dict[str, Any],
    thresholds: Thresholds,
    *,
    pool: list[tuple[float, float, int]] | None = None,
    failover: dict[str, Any] | None = None,
    health: dict[str, dict[str, Any]] | None = None,
    server: dict[str, Buckets] | None = None,
) -> dict[str, Any]:
    """Every figure of the run, and the verdict (from the measurement window only).

    ``pool``: the probe's per-round totals (several front ends); ``failover``:
    ``Failover.summary()`` of a deliberate kill; ``health``: each driver's
    ``Health.summary()``; ``server``: the pool's histograms per RPC over the window."""
    start, end = rec.window_from, rec.window_to
    min_window = float(config.get("min_window", 0.0))
    blocked: list[str] = [
        w for d in (health or {}).values() for w in d.get("window_blocked_by", [])
    ]
    window: dict[str, Any] = {
        "from": start,
        "to": end,
        "seconds": rec.window_length,
        "min_seconds": min_window,
        "blocked_by": blocked,
    }
    ops: dict[str, Any] = {}
    total = errors = 0
    for name, stats in sorted(rec.ops.items()):
        ops[name] = {
            **summary(stats.histogram),
            "calls": stats.calls,
            "errors": stats.errors(name),
            "codes": dict(stats.codes),
            "late": stats.late,
            "skipped": stats.skipped,
            "not_started": stats.not_started,
            "window": _window_figures(rec.window.get(name), name),
        }
        total += stats.calls
        errors += stats.errors(name)
    series = rec.series.rows()  # per second, 10 s or minute by age (bench.series)
    has_window = start is not None and rec.window_length > 0
    front_ends: dict[str, dict[str, Any]] = {}
    for fe, fs in fronts.items():
        inside = [x[1] for x in fs.samples if _in(x[0], start, end)] if has_window else []
        everything = [x[1] for x in fs.samples]
        front_ends[fe] = {
            "address": fs.address,
            "cpu_mean": sum(inside) / len(inside)
            if inside
            else (sum(everything) / len(everything) if everything else 0.0),
            "cpu_max": max(inside or everything, default=0.0),
            "samples": [list(x) for x in fs.samples],
        }
    counters = dict(rec.counters)
    drv = driver_section(health or {}, window, ops)
    checks: list[dict[str, Any]] = []
    # the run's own validity first: a window, and a driver that kept up
    long_enough = has_window and rec.window_length >= min_window
    if long_enough:
        checks.append(
            _check(
                "measurement window",
                f"{start:.0f} s to {end:.0f} s ({rec.window_length:.0f} s)",
                f">= {window['min_seconds']:g} s",
                OK,
            )
        )
    else:
        why = (
            f"{rec.window_length:.0f} s"
            if has_window
            else "never opened: " + ("; ".join(blocked) or "the run ended first")
        )
        checks.append(
            _check(
                "measurement window",
                why,
                f">= {window['min_seconds']:g} s of steady state",
                INCONCLUSIVE,
            )
        )
    checks.append(
        _check(
            "load generator (driver health)",
            "; ".join(drv["why"])
            if drv["saturated"]
            else f"processor {drv['cpu_mean_max']:.0f}%, loop lag p99 "
            f"{drv['loop_lag_p99_ms']:.1f} ms, {drv['late_ratio']:.2%} late or skipped",
            f"processor < {SATURATED_CPU:g}%, lag p99 < {SATURATED_LAG_MS:g} ms, "
            f"late < {LATE_RATIO:.0%}",
            INCONCLUSIVE if drv["saturated"] else OK,
        )
    )
    undecided = INCONCLUSIVE if not long_enough else None
    cpu = max((float(f["cpu_mean"]) for f in front_ends.values()), default=0.0)
    checks.append(
        _check(
            "front-end processor (mean in the window)",
            f"{cpu:.1f}%",
            f"< {thresholds.cpu_percent:g}%",
            undecided or _status(cpu < thresholds.cpu_percent),
        )
    )
    worst_name, worst_p99 = "-", 0.0
    for name, o in ops.items():
        w = o["window"]
        if w["count"] and w["p99"] > worst_p99:
            worst_name, worst_p99 = name, float(w["p99"])
    checks.append(
        _check(
            f"p99 latency in the window (worst: {worst_name})",
            f"{worst_p99:.1f} ms",
            f"< {thresholds.p99_ms:g} ms",
            undecided or _status(worst_p99 < thresholds.p99_ms),
        )
    )
    srv = server_section(server or {}, ops)
    store = srv["store_write_p99_ms"]
    if store is not None:
        checks.append(
            _check(
                "store queue latency (the pool's p99 in the window)",
                f"{store:.1f} ms over {srv['store_writes']:,.0f} writes",
                f"< {thresholds.p99_ms:g} ms",
                undecided or _status(store < thresholds.p99_ms),
            )
        )
    w_total = sum(o["window"]["calls"] for o in ops.values())
    w_errors = sum(o["window"]["errors"] for o in ops.values())
    fo = failover_section(rec, failover) if failover is not None else None
    ratio = w_errors / w_total if w_total else 0.0
    label = "errors in the window" + (" (outside the fail-over)" if fo is not None else "")
    extra = f"; {fo['operations_failed']} more caught in the fail-over" if fo is not None else ""
    checks.append(
        _check(
            label,
            f"{w_errors} of {w_total} ({ratio:.2%}{extra})",
            f"< {thresholds.error_ratio:.0%}",
            undecided or _status(ratio < thresholds.error_ratio),
        )
    )
    lost = counters.get("ledger_lost", 0)
    unreadable = counters.get("ledger_unreadable", 0)
    if fo is None:
        checks.append(
            _check(
                "acknowledged writes lost",
                f"{lost} of {counters.get('ledger_checked', 0)}",
                "0",
                _status(lost == 0),
            )
        )
    else:
        checks.append(
            _check(
                "acknowledged writes lost (read back after the fail-over)",
                f"{lost} of {counters.get('ledger_checked', 0)}, {unreadable} unreadable",
                "0",
                _status(lost == 0 and unreadable == 0),
            )
        )
        affected_read = fo["ledger_checked_affected"]
        if fo["affected_users"] and fo["killed_at"] is not None:
            checks.append(
                _check(
                    "acknowledged writes of affected users read back",
                    f"{affected_read} read back of users homed on {fo['front_end']}",
                    "> 0",
                    OK if affected_read else INCONCLUSIVE,
                )
            )
        served = fo["affected_users_served_again"]
        recovered = fo["first_affected_success_after"]
        killed = fo["killed_at"] is not None
        checks.append(
            _check(
                f"fail-over of {fo['front_end'] or '-'}: affected users served again",
                f"{served} of {fo['affected_users']}"
                + (f", first after {recovered:.2f} s" if recovered is not None else "")
                + ("" if killed else f" (not killed: {fo['error'] or 'no reason'})"),
                "> 0",
                _status(killed and (served > 0 or fo["affected_users"] == 0)),
            )
        )
    statuses = [c["status"] for c in checks]
    lost_any = any(
        c["status"] == FAIL and c["check"].startswith("acknowledged writes lost") for c in checks
    )
    if lost_any:
        result = "FAIL"
    elif INCONCLUSIVE in statuses[:2]:
        result = "INCONCLUSIVE"
    elif FAIL in statuses:
        result = "FAIL"
    elif INCONCLUSIVE in statuses:
        result = "INCONCLUSIVE"
    else:
        result = "PASS"
    reasons = []
    if drv["saturated"]:
        advice = (
            "run it on a quieter machine, or give the driver its own cores"
            if drv["starved"]
            else "add driver processes (--workers N, or --workers auto) or lower the load"
        )
        reasons.append(
            "the load generator was saturated (" + "; ".join(drv["why"]) + "): " + advice
        )
    if not long_enough:
        reasons.append(
            "no clean measurement window: run longer (--duration), or sign in faster (--ramp)"
        )
    out: dict[str, Any] = {
        "config": config,
        "phases": rec.phases,
        "window": window,
        "ramp": ramp_section(rec, config),
        "counters": counters,
        "operations": ops,
        "timeseries": series,
        "front_ends": front_ends,
        "driver": drv,
        "server_latency": srv,
        "total_calls": total,
        "total_errors": errors,
        "window_calls": w_total,
        "window_errors": w_errors,
        "verdict": {
            "result": result,
            "pass": result == "PASS",
            "reasons": reasons,
            "checks": checks,
        },
    }
    if pool is not None and len(front_ends) > 1:
        out["pool"] = pool_cpu(pool, len(front_ends), start if start is not None else 0.0)
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
    for at, what in fo.get("timeline", []):
        lines.append(f"  {at:8.2f} s  {what}")
    if fo["error"]:
        lines.append(f"  note: {fo['error']}")
    return lines


MARK = {OK: "ok", FAIL: "FAIL", INCONCLUSIVE: "??"}


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def text(report: dict[str, Any]) -> str:
    """The report as a terminal reads it."""
    cfg = report["config"]
    lines = [
        f"poolsim run: {cfg.get('edition')} pool, {cfg.get('users')} users "
        f"({cfg.get('signed_in')} signed in), level {cfg.get('level')}, "
        f"{cfg.get('duration', 0):g} s, speedup {cfg.get('speedup', 1):g}, sign-ins "
        f"{cfg.get('ramp', 0):g}/s, {cfg.get('workers')} driver process(es) on "
        f"{cfg.get('cores')} cores",
    ]
    pool = cfg.get("pool")
    if pool is not None:
        settings = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in pool["settings"].items())
        lines.append(f"pool started with {settings}")
        for d in pool["differ_from_serve"]:
            lines.append(
                f"  differs from poolsim serve: {d['setting'].replace('_', ' ')} {d['run']:,} "
                f"(serve {d['serve']:,}): {d['why']}"
            )
    phases = report.get("phases", {})
    lines.append(
        "phases: "
        + ", ".join(f"{name} from {at:.1f} s" for name, at in phases.items())
        + (
            f" (window {report['window']['seconds']:.0f} s)"
            if report["window"]["from"] is not None
            else "; no measurement window"
        )
    )
    ramp = report["ramp"]
    rate = ramp["users_per_s"]
    lines.append(
        f"ramp: {cfg.get('signed_in')} users signed in "
        + (f"in {ramp['seconds']:.1f} s ({rate:.0f}/s)" if rate else "(not finished)")
        + f"; planned {ramp['planned_per_s'] or 0:g}/s against Lync's pool peak of about "
        f"{ramp['lync_peak_per_s']:g}/s and the stress tool's {ramp['stress_tool_per_s']}; "
        f"sign-in p50 {ramp['sign_in']['p50']:.1f} ms, p99 {ramp['sign_in']['p99']:.1f} ms, "
        f"{ramp['sign_in_errors']} errors"
    )
    lines.append("")
    head = (
        f"{'operation':<18} {'calls':>8} {'errors':>7} {'late':>6} "
        + " ".join(f"{'p' + format(p, 'g'):>8}" for p in PERCENTILES)
        + f" {'max':>8} {'win p99':>8} {'win calls':>9}  (ms; win = the measurement window)"
    )
    lines.append(head)
    for name, o in report["operations"].items():
        pcts = " ".join(f"{o['p' + format(p, 'g')]:>8.2f}" for p in PERCENTILES)
        w = o["window"]
        lines.append(
            f"{name:<18} {o['calls']:>8} {o['errors']:>7} {o['late']:>6} {pcts} {o['max']:>8.2f}"
            f" {w['p99']:>8.2f} {w['calls']:>9}"
        )
    errs = {
        n: {c: k for c, k in o["codes"].items() if c != "OK"}
        for n, o in report["operations"].items()
    }
    errs = {n: c for n, c in errs.items() if c}
    if errs:
        lines.append(
            "not OK by status code (refusals are answers, not errors): "
            + "; ".join(
                f"{n} " + ", ".join(f"{c} {k}" for c, k in sorted(cs.items()))
                for n, cs in errs.items()
            )
        )
    srv = report.get("server_latency", {})
    if srv.get("rows"):
        lines += [
            "",
            f"{'client vs pool, window':<28} {'client p50':>10} {'client p99':>10} "
            f"{'pool p50':>9} {'pool p99':>9}",
        ]
        for r in srv["rows"]:
            lines.append(
                f"{r['operation'] + ' (' + r['rpc'] + ')':<28} {r['client_p50_ms']:>10.2f} "
                f"{r['client_p99_ms']:>10.2f} {_ms(r['server_p50_ms']):>9} "
                f"{_ms(r['server_p99_ms']):>9}" + ("  <- gap" if r["gap"] else "")
            )
        if srv.get("note"):
            lines.append(f"  {srv['note']}")
    c = report["counters"]
    lines += [
        "",
        "stress-tool counters: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(c.items())),
    ]
    for fe, f in report["front_ends"].items():
        lines.append(
            f"front end {fe}: processor mean {f['cpu_mean']:.1f}%, "
            f"max {f['cpu_max']:.1f}% of one core (in the window)"
        )
    p = report.get("pool")
    if p is not None:
        lines.append(
            f"pool of {p['front_ends']} front ends: processor total mean "
            f"{p['cpu_total_mean']:.1f}%, max {p['cpu_total_max']:.1f}% (of one core); mean "
            f"per front end {p['cpu_mean_per_front_end']:.1f}%"
        )
    for name, d in report["driver"]["drivers"].items():
        lines.append(
            f"{name}: processor mean {d['cpu_mean']:.1f}%, max {d['cpu_max']:.1f}% of one core; "
            f"event-loop lag p50 {d['loop_lag_p50_ms']:.2f} ms, p99 {d['loop_lag_p99_ms']:.2f} ms"
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
    lines += ["", f"verdict: {v['result']}"]
    for reason in v["reasons"]:
        lines.append(f"  {reason}")
    for chk in v["checks"]:
        lines.append(
            f"  [{MARK[chk['status']]:>4}] {chk['check']}: {chk['measured']} "
            f"(target {chk['target']})"
        )
    return "\n".join(lines)


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{th}</tr>{body}</table>'


def html_page(report: dict[str, Any]) -> str:
    """The report as one offline page: verdict, tables, and plotly charts."""
    v = report["verdict"]
    e = html.escape
    checks = _table(
        ["", "check", "measured", "target"],
        [
            [
                {"ok": "&#10004;", "fail": "&#10008;", "inconclusive": "?"}[c["status"]],
                e(c["check"]),
                e(c["measured"]),
                e(c["target"]),
            ]
            for c in v["checks"]
        ],
        "checks",
    )
    ops = report["operations"]
    latency_rows = []
    for n, o in ops.items():
        w = o["window"]
        latency_rows.append(
            [
                e(n),
                f"{w['calls']:,}",
                f"{w['p50']:.2f}",
                f"{w['p99']:.2f}",
                f"{w['p99.9']:.2f}",
                f"{o['calls']:,}",
            ]
            + [f"{o['p' + format(p, 'g')]:.2f}" for p in PERCENTILES]
            + [f"{o['max']:.2f}", f"{o['late']:,}", f"{o['skipped']:,}"]
        )
    latency = _table(
        ["operation", "window calls", "window p50", "window p99", "window p99.9", "run calls"]
        + [f"run p{p:g}" for p in PERCENTILES]
        + ["run max", "late", "no slot"],
        latency_rows,
    )
    codes = sorted({c for o in ops.values() for c in o["codes"]})
    error_rows = [
        [e(n)]
        + [
            (f"{o['codes'].get(c, 0):,}" + ("*" if (n, c) in REFUSALS else ""))
            if o["codes"].get(c)
            else ""
            for c in codes
        ]
        + [f"{o['errors']:,}", f"{o['window']['errors']:,}"]
        for n, o in ops.items()
    ]
    errors = _table(["operation", *codes, "errors (run)", "errors (window)"], error_rows)
    srv = report.get("server_latency", {})
    server = ""
    if srv.get("rows"):
        server = _table(
            ["operation", "RPC", "client p50", "client p99", "pool p50", "pool p99", "pool calls"],
            [
                [
                    e(str(r["operation"])),
                    e(str(r["rpc"])),
                    f"{r['client_p50_ms']:.2f}",
                    f"{r['client_p99_ms']:.2f}",
                    _ms(r["server_p50_ms"]),
                    _ms(r["server_p99_ms"]),
                    f"{r['server_calls']:,.0f}",
                ]
                for r in srv["rows"]
            ],
        ) + (f'<p class="note">{e(srv["note"])}</p>' if srv.get("note") else "")
    drawn = "".join(charts.div(c) for c in charts.run_charts(report))
    cfg = e(json.dumps(report["config"], indent=1))
    failover = (
        "<h2>Fail-over</h2><pre>" + e("\n".join(failover_text(report["failover"]))) + "</pre>"
        if "failover" in report
        else ""
    )
    summary_lines = e(text(report).split("\n\n")[0])
    result = v["result"]
    reasons = "".join(f"<p class='reason'>{e(r)}</p>" for r in v["reasons"])
    refusal = (
        "* a refusal (offline or Do Not Disturb invitee, a conversation that ended first): "
        "an answer, not an error"
    )
    server = server or (
        "<p>no server histograms (the window did not open, or the pool's metrics did not "
        "answer)</p>"
    )
    mem = ""
    if "memory" in report:
        mem = "<h2>Memory</h2><pre>" + e("\n".join(memory.text(report["memory"]))) + "</pre>"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>poolsim run report: {result}</title>
{charts.head()}
<style>body{{font-family:sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 1em}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}th{{background:#f4f4f4}}
.pass{{color:#2a2}}.fail{{color:#c22}}.inconclusive{{color:#c80}}.note,.reason{{color:#555}}
section.chart{{margin:1.5em 0}}pre{{background:#f8f8f8;padding:0.5em;white-space:pre-wrap}}
table.checks td:nth-child(2){{text-align:left}}</style></head><body>
<h1>poolsim run: <span class="{result.lower()}">{result}</span></h1>{reasons}
<pre>{summary_lines}</pre>
<h2>Verdict (from the measurement window)</h2>{checks}
{failover}{mem}<h2>Latency per operation (ms): the window beside the whole run</h2>{latency}
<h2>Answers by status code per operation</h2><p class="note">{refusal}</p>{errors}
<h2>Client against pool latency (ms, in the window)</h2>{server}
<h2>Charts</h2>{drawn}
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
        cols = ["t", "span", "ops", "errors", "late", "skipped", "p50_ms", "p99_ms"]
        w.writerow(cols)  # ops, errors, late, skipped: per second over the row's span
        for s in report["timeseries"]:
            w.writerow([s.get(c, 1 if c == "span" else 0) for c in cols])
    paths[3].write_text(html_page(report))
    return paths
