"""A run's figures and the verdict against Lync's health thresholds, from the measurement
window (:func:`build`); :mod:`bench.report_files` writes them as a terminal, a spreadsheet and
a browser read them (``report.json``, ``operations.csv``, ``timeseries.csv``, ``report.html``).

With several front ends (Enterprise) the report adds the pool's processor total and mean per
front end; with a deliberate fail-over (``--kill-front-end-at``) a ``failover`` section: which
front end was killed and when, how long until the pool failed over and the affected users were
served again, the operations that failed meanwhile, the sessions that reconnected and the
read-back of every acknowledged write. Errors caught in the fail-over do not count against
the error check; a lost acknowledged write, or affected users never served again, fail the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench import probe
from bench.probe import FrontEndSeries
from bench.samples import Sample, weighted_mean
from bench.selfcheck import SATURATED_CPU, SATURATED_LAG_MS
from bench.server_latency import STORE, Buckets, compare
from bench.stats import (
    REFUSALS,
    THROTTLED,
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


def pool_cpu(pool: Iterable[Sample], front_ends: int, steady_from: float) -> dict[str, Any]:
    """The pool's processor use after the ramp: the per-round total over its front ends
    (rounds of (run second, total %, front ends sampled[, weight]), see bench.samples)."""
    everything = list(pool)
    rounds = [r for r in everything if r[0] >= steady_from] or everything
    per_fe = [(r[0], r[1] / r[2], *r[2:]) for r in rounds if r[2]]
    return {
        "front_ends": front_ends,
        "cpu_total_mean": weighted_mean(rounds, 1, 3),
        "cpu_total_max": max((r[1] for r in rounds), default=0.0),
        "cpu_mean_per_front_end": weighted_mean(per_fe, 1, 3),
        "samples": [list(r) for r in everything],
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


def overload_figures(everything: list[Sample], inside: list[Sample]) -> dict[str, float]:
    """A front end's defence against overload over ``inside`` (its probe samples in the
    window, ``everything`` being all of them): the highest average holding time sampled, the
    seconds it had connections in flow control, and the requests it held at the door."""
    if not inside:
        return {"holding_max_s": 0.0, "flow_controlled_s": 0.0, "held": 0.0}
    weight = probe.FIELDS  # a kept sample's weight follows its fields (bench.samples)
    before = [x for x in everything if x[0] < inside[0][0]]
    held_from = before[-1][probe.HELD] if before else inside[0][probe.HELD]
    return {
        "holding_max_s": max(x[probe.HOLDING_S] for x in inside),
        "flow_controlled_s": sum(
            (x[weight] if len(x) > weight else 1.0) for x in inside if x[probe.FLOW_CONTROLLED]
        ),
        "held": max(0.0, inside[-1][probe.HELD] - held_from),
    }


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
    longest = max((d["loop_lag_max_ms"] for d in health.values()), default=0.0)
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
        "loop_lag_max_ms": longest,  # its longest stall (in the window when there is one)
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
    pool: Iterable[Sample] | None = None,
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
        everything = list(fs.samples)
        inside = [x for x in everything if _in(x[0], start, end)] if has_window else []
        front_ends[fe] = {
            "address": fs.address,
            "cpu_mean": weighted_mean(inside or everything, probe.CPU, probe.FIELDS),
            "cpu_max": max((x[probe.CPU] for x in inside or everything), default=0.0),
            **overload_figures(everything, inside if has_window else everything),
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
            f"{drv['loop_lag_p99_ms']:.1f} ms (longest {drv['loop_lag_max_ms']:.0f} ms), "
            f"{drv['late_ratio']:.2%} late or skipped",
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
    latency, measured = undecided or _status(worst_p99 < thresholds.p99_ms), f"{worst_p99:.1f} ms"
    # a driver stalled as long as the target: each call in flight measured the stall (its
    # answer read only after it), so a p99 over the target need not be the pool's
    if driver_stalled := latency == FAIL and drv["loop_lag_max_ms"] >= thresholds.p99_ms:
        latency = INCONCLUSIVE
        measured += f" (the load driver itself stalled {drv['loop_lag_max_ms']:.0f} ms)"
    check = f"p99 latency in the window (worst: {worst_name})"
    checks.append(_check(check, measured, f"< {thresholds.p99_ms:g} ms", latency))
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
    w_throttled = sum(o["window"]["codes"].get(THROTTLED, 0) for o in ops.values())
    if w_throttled or any(o["codes"].get(THROTTLED) for o in ops.values()):
        checks.append(
            _check(
                "throttled in the window (the pool answered 'server too busy': past its limit)",
                f"{w_throttled} of {w_total}",
                "0",
                undecided or _status(w_throttled == 0),
            )
        )
    held = sum(float(f["held"]) for f in front_ends.values())
    flow_s = max((float(f["flow_controlled_s"]) for f in front_ends.values()), default=0.0)
    if held or flow_s:
        holding = max(float(f["holding_max_s"]) for f in front_ends.values())
        limit = config.get("throttling", {}).get("holding_time_limit")
        checks.append(
            _check(
                "flow control in the window (average holding time past the pool's limit: each "
                "endpoint held to one request under way)",
                f"{held:,.0f} request{'' if round(held) == 1 else 's'} held at the door; "
                f"{flow_s:.0f} s in flow control; "
                f"average holding time up to {holding:.2f} s"
                + (f" (limit {float(limit):g} s)" if limit is not None else ""),
                "none",
                undecided or FAIL,
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
    if driver_stalled:
        reasons.append(
            f"the load driver's own event loop stalled {drv['loop_lag_max_ms']:.0f} ms in the "
            "window (a collection of its heap, or the machine holding it up): the calls in flight"
            " then measured it, so the p99 over the target may not be the pool's; run it again"
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
