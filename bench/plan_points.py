"""A point of ``poolsim plan``: one run, its window's figures, and what limited it.

:func:`classify` reads a run's report (``bench.report.build``) and says whether the pool, the
driver or the ramp limited it; :func:`next_users` picks the next user count (step up, then
bisect between the last pass and the first fail the pool caused).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import THROTTLED, is_error

#: what limited a point
POOL, DRIVER, RAMP, MACHINE, NONE = "pool", "driver", "ramp", "machine", "none"


@dataclass(frozen=True, slots=True)
class Point:
    """One run of the plan: its load and what its report said (window figures)."""

    users: int
    signed_in: int
    front_ends: int
    duration: float
    ramp: float
    total_calls: int  # in the window
    total_errors: int  # in the window
    throughput: float  # completed calls per second in the window
    worst_p99_ms: float
    worst_operation: str
    cpu_percent: float  # the busiest front end's mean processor in the window
    passed: bool
    failed_checks: list[str] = field(default_factory=list)
    report: str = ""  # the run's report folder
    error: str | None = None  # the run did not finish: why
    speedup: float = 1.0
    result: str = ""  # PASS, FAIL or INCONCLUSIVE
    window_s: float = 0.0
    server_p99_ms: float | None = None  # the pool's own p99 of the worst operation's RPC
    driver_cpu: float = 0.0
    driver_lag_p99_ms: float = 0.0
    limit_kind: str = NONE  # what limited this point (POOL, DRIVER, RAMP, MACHINE, NONE)
    limit: str = ""  # in words
    note: str = ""  # what else the run showed (the clients' p99 was the machine's, say)
    driver_saturated: bool = False  # it delivered less than the load asked: kept out of the fit
    throttled: int = 0  # calls the pool answered "server too busy" in the window
    held: int = 0  # requests the front ends held at the door (flow control) in the window
    holding_max_s: float = 0.0  # the highest average holding time a front end sampled
    flow_controlled_s: float = 0.0  # the longest a front end was in flow control, in the window

    @property
    def effective_users(self) -> float:
        """Users this point stands for: users x speedup."""
        return self.users * self.speedup

    @property
    def per_fe(self) -> float:
        return self.effective_users / max(1, self.front_ends)


#: answers a client's own clock or channel can produce without the pool saying anything
CLIENT_SIDE_CODES = frozenset({"DEADLINE_EXCEEDED", "CANCELLED"})


def pool_side_failures(result: dict[str, Any]) -> list[str]:
    """The pool's own figures in the measurement window that broke a target, in words:
    the busiest front end's processor, the pool's own p99 of an RPC (its histogram), its
    average holding time over a second (from a call's arrival to its reply written, the
    loop's lag included: what its handlers' histograms do not see), the store queue's p99,
    errors the pool returned (not deadlines or cancellations, which a slow client produces
    alone), and its throttling (any "server too busy" answer, or flow control: the pool
    reached the limit it defends itself at, which is a pool limit, not driver trouble).
    Empty when the window never opened: there are no figures then."""
    window = result.get("window", {})
    if not float(window.get("seconds") or 0.0) > 0:
        return []
    limits = result.get("config", {}).get("thresholds", {})
    cpu_target = float(limits.get("cpu_percent", 80.0))
    p99_target = float(limits.get("p99_ms", 100.0))
    ratio_target = float(limits.get("error_ratio", 0.01))
    found: list[str] = []
    fronts = result.get("front_ends", {})
    if fronts:
        fe, busiest = max(fronts.items(), key=lambda kv: float(kv[1]["cpu_mean"]))
        cpu = float(busiest["cpu_mean"])
        if cpu >= cpu_target:
            where = f" ({fe})" if len(fronts) > 1 else ""
            found.append(f"front-end processor{where} {cpu:.0f}% > {cpu_target:g}%")
    srv = result.get("server_latency", {})
    slow = [
        r
        for r in srv.get("rows", [])
        if r.get("server_p99_ms") is not None and float(r["server_p99_ms"]) >= p99_target
    ]
    if slow:
        w = max(slow, key=lambda r: float(r["server_p99_ms"]))
        found.append(
            f"p99 of {w['operation']}: pool-side {float(w['server_p99_ms']):.1f} ms "
            f"> {p99_target:g} ms"
        )
    holding = [(fe, float(f.get("holding_max_s", 0.0)) * 1000) for fe, f in fronts.items()]
    fe, held_ms = max(holding, key=lambda kv: kv[1], default=("", 0.0))
    if held_ms >= p99_target:  # a second in which calls waited inside the pool on average
        where = f" ({fe})" if len(fronts) > 1 else ""
        found.append(
            f"average holding time{where} up to {held_ms:.0f} ms > {p99_target:g} ms: calls "
            "waited inside the pool (for their replies to be written, or for its event loop)"
        )
    store = srv.get("store_write_p99_ms")
    if store is not None and float(store) >= p99_target:
        found.append(f"store queue p99 {float(store):.1f} ms > {p99_target:g} ms")
    ops = result.get("operations", {})
    calls = sum(int(o.get("window", {}).get("calls", 0)) for o in ops.values())
    returned = sum(
        n
        for name, o in ops.items()
        for code, n in o.get("window", {}).get("codes", {}).items()
        if is_error(name, code) and code not in CLIENT_SIDE_CODES
    )
    if calls and returned / calls >= ratio_target:
        found.append(
            f"errors the pool returned: {returned} of {calls} ({returned / calls:.2%}) "
            f">= {ratio_target:.0%}"
        )
    return found + defences(result, windowed=True)


def defences(result: dict[str, Any], *, windowed: bool) -> list[str]:
    """Lync's own defences the pool put up, in words: "server too busy" answers and flow
    control; in the window (``windowed``), or over the run when there was none (a front end's
    figures are then the run's: ``bench.report.build``)."""
    ops = result.get("operations", {})
    codes = [
        o.get("window", {}).get("codes", {}) if windowed else o.get("codes", {})
        for o in ops.values()
    ]
    calls = sum(
        int(o.get("window", {}).get("calls", 0)) if windowed else int(o.get("calls", 0))
        for o in ops.values()
    )
    found: list[str] = []
    throttled = sum(int(c.get(THROTTLED, 0)) for c in codes)
    if throttled:  # Lync's own limit: its store fell behind, or requests were held too long
        found.append(
            f"the pool throttled: {throttled} of {calls} calls answered 'server too busy' "
            "(store queue latency or average holding time past the pool's limit)"
        )
    fronts = result.get("front_ends", {})
    held = [(fe, f) for fe, f in fronts.items() if f.get("held") or f.get("flow_controlled_s")]
    if held:
        fe, f = max(held, key=lambda kv: float(kv[1].get("holding_max_s", 0.0)))
        where = f" ({fe})" if len(fronts) > 1 else ""
        limit = result.get("config", {}).get("throttling", {}).get("holding_time_limit")
        seconds = max(float(f.get("flow_controlled_s", 0.0)) for _, f in held)
        found.append(
            f"the pool went into flow control{where} for {seconds:.0f} s (average holding time "
            f"up to {float(f.get('holding_max_s', 0.0)):.2f} s"
            + (f", limit {float(limit):g} s" if limit is not None else "")
            + f"): {_requests(sum(float(f.get('held', 0)) for _, f in held))} held at the door"
        )
    return found


def _requests(n: float) -> str:
    return f"{n:,.0f} request" + ("" if round(n) == 1 else "s")


def classify(result: dict[str, Any]) -> tuple[str, str, str]:
    """What limited a run: (``POOL``, ``DRIVER``, ``RAMP`` or ``NONE``; in words; a note).

    The pool's own figures come first (:func:`pool_side_failures`): when one broke a target
    the pool reached its limit *even if the driver was saturated too*, because a saturated
    driver only delivers less load than asked, so the pool failed under no more than this
    point's load. The note then says the driver was saturated too. A window that never
    opened while the pool put up its defences over the run (:func:`defences`) is the pool's
    limit too: past the knee the calls it holds at the door keep the driver's slots, so the
    driver looks saturated and the backlog never drains. Only when nothing pool-side failed
    is a saturated driver the limit (no capacity figure), then a window that never opened
    (the ramp, or a backlog the pool never drained).

    A client p99 above the target counts against the pool only when the pool's own
    histogram shows it too: when every RPC's pool-side p99 is under the target, the clients
    waited elsewhere (the driver, the network, the machine); the point then passes for the
    pool, with that said in the note (``MACHINE``)."""
    verdict = result["verdict"]
    checks = verdict["checks"]
    drv = result.get("driver", {})
    window = next((c for c in checks if c["check"] == "measurement window"), None)
    pool_side = pool_side_failures(result)
    if pool_side:
        notes = []
        if drv.get("saturated"):
            notes.append(
                "the driver was saturated too ("
                + "; ".join(drv.get("why", []))
                + "): it delivered no more than this load, so the pool failed under at most it"
            )
        if window is not None and window["status"] == "inconclusive":
            notes.append(f"the window was short of the minimum ({window['measured']})")
        return POOL, "; ".join(pool_side), "; ".join(notes)
    no_window = not float(result.get("window", {}).get("seconds") or 0.0) > 0
    defended = defences(result, windowed=False) if no_window else []
    if defended:  # past the knee: calls the pool held kept the driver's slots, so no window
        why = "; ".join(result.get("window", {}).get("blocked_by", [])) or "none"
        notes = [f"no measurement window ({why}); the figures are the run's"]
        if drv.get("saturated"):
            notes.append(
                "the driver ran short too (" + "; ".join(drv.get("why", [])) + "): its calls "
                "waited on the pool's defences"
            )
        return POOL, "; ".join(defended), "; ".join(notes)
    if drv.get("saturated"):
        return DRIVER, "the load generator was saturated: " + "; ".join(drv.get("why", [])), ""
    if window is not None and window["status"] == "inconclusive":
        blocked = " ".join(result.get("window", {}).get("blocked_by", []))
        if "backlog" in blocked and "sign-ins still pending" not in blocked:
            why = "the ramp's backlog never drained (the pool could not keep up): " + blocked
            return POOL, why, ""
        return RAMP, "no measurement window: " + (window["measured"] or "run longer"), ""
    target = float(result.get("config", {}).get("thresholds", {}).get("p99_ms", 100.0))
    rows = result.get("server_latency", {}).get("rows", [])
    note = ""
    for c in (c for c in checks if c["status"] == "fail"):
        name = c["check"]
        if not name.startswith("p99 latency"):
            return POOL, f"{name}: {c['measured']} (target {c['target']})", note
        op = name.split("worst: ", 1)[-1].rstrip(")")
        pool_rows = [r for r in rows if r["server_p99_ms"] is not None]
        if pool_rows:  # every pool-side p99 is under the target (pool_side_failures)
            worst = max(pool_rows, key=lambda r: float(r["server_p99_ms"]))
            note = (
                f"{MACHINE}: clients saw p99 of {op} {c['measured']} while the pool's own p99 "
                f"stayed under {target:g} ms (at most {worst['server_p99_ms']:.2f} ms, "
                f"{worst['rpc']}): the calls queued outside the pool's handlers"
            )
            continue
        return POOL, f"p99 of {op}: {c['measured']} (target {c['target']})", note
    return NONE, "", note


def point_from_report(
    result: dict[str, Any], users: int, ramp: float, folder: Path, speedup: float = 1.0
) -> Point:
    """A :class:`Point` from a ``bench.report.build`` dict (its window's figures)."""
    cfg = result["config"]
    duration = float(cfg["duration"])
    ops: dict[str, Any] = result["operations"]
    window = result.get("window", {})
    seconds = float(window.get("seconds") or 0.0)

    def p99(o: dict[str, Any]) -> float:
        return float(o.get("window", o)["p99"])

    worst = max(ops.items(), key=lambda kv: p99(kv[1]), default=("-", {"p99": 0.0}))
    fronts: dict[str, Any] = result["front_ends"]
    verdict = result["verdict"]
    calls = int(result.get("window_calls", result["total_calls"]))
    errors = int(result.get("window_errors", result["total_errors"]))
    rows = result.get("server_latency", {}).get("rows", [])
    server = next((r["server_p99_ms"] for r in rows if r["operation"] == worst[0]), None)
    drivers = result.get("driver", {}).get("drivers", {})
    kind, limit, note = classify(result) if "result" in verdict else (NONE, "", "")
    status = verdict.get("result", "PASS" if verdict["pass"] else "FAIL")
    passed = (bool(verdict["pass"]) or (kind == NONE and status == "FAIL")) and kind != POOL
    return Point(
        users=users,
        signed_in=int(cfg.get("signed_in", 0)),
        front_ends=max(1, len(fronts)),
        duration=duration,
        ramp=ramp,
        total_calls=calls,
        total_errors=errors,
        throughput=calls / (seconds or duration),
        worst_p99_ms=p99(worst[1]),
        worst_operation=worst[0],
        cpu_percent=max((float(f["cpu_mean"]) for f in fronts.values()), default=0.0),
        passed=passed,
        failed_checks=[str(c["check"]) for c in verdict["checks"] if not c["ok"]],
        report=str(folder),
        speedup=speedup,
        result=status,
        window_s=seconds,
        server_p99_ms=server,
        driver_cpu=max((float(d["cpu_mean"]) for d in drivers.values()), default=0.0),
        driver_lag_p99_ms=max((float(d["loop_lag_p99_ms"]) for d in drivers.values()), default=0.0),
        limit_kind=kind if not passed else NONE,
        limit=limit if not passed else "",
        note=note,
        driver_saturated=bool(result.get("driver", {}).get("saturated")),
        throttled=sum(
            int(o.get("window", {}).get("codes", {}).get(THROTTLED, 0)) for o in ops.values()
        ),
        held=round(sum(float(f.get("held", 0.0)) for f in fronts.values())),
        holding_max_s=max((float(f.get("holding_max_s", 0.0)) for f in fronts.values()), default=0),
        flow_controlled_s=max(
            (float(f.get("flow_controlled_s", 0.0)) for f in fronts.values()), default=0
        ),
    )


def failed_point(users: int, args: argparse.Namespace, folder: Path, why: str) -> Point:
    return Point(
        users=users,
        signed_in=0,
        front_ends=1,
        duration=args.duration,
        ramp=args.ramp,
        total_calls=0,
        total_errors=0,
        throughput=0.0,
        worst_p99_ms=0.0,
        worst_operation="-",
        cpu_percent=0.0,
        passed=False,
        failed_checks=["run did not finish"],
        report=str(folder),
        error=why,
        speedup=args.speedup,
    )


def next_users(points: list[Point], step: float, resolution: float) -> int | None:
    """The next user count: step up while the pool passes; once it failed, bisect between
    the largest pass and the smallest pool fail; None when they are within ``resolution``."""
    passes = [p.users for p in points if p.passed]
    fails = [p.users for p in points if not p.passed and p.limit_kind == POOL]
    hi = min(fails, default=None)
    lo = max((u for u in passes if hi is None or u < hi), default=None)
    if hi is None:
        return max(max(passes) + 1, round(max(passes) * step)) if passes else None
    if lo is None:
        down = round(hi / step)
        return down if down >= 2 and down not in {p.users for p in points} else None
    if (hi - lo) / lo <= resolution:
        return None
    mid = (lo + hi) // 2
    return mid if mid not in {p.users for p in points} else None
