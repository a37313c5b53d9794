"""The report's files and its text: ``report.json`` (every figure), ``operations.csv`` and
``timeseries.csv``, ``report.html`` (one offline page: the verdict, tables and the plotly charts
of :mod:`bench.charts`), and the text a terminal shows. The figures come from
:func:`bench.report.build`.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from bench import charts, memory
from bench.report import FAIL, INCONCLUSIVE, OK
from bench.stats import PERCENTILES, REFUSALS, THROTTLED


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
        + f", through {fo.get('window_through', 'the fail-over')}"
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
    if cfg.get("pool_cpus") is not None:
        lines.append(
            f"pool pinned to processor(s) {cfg['pool_cpus']}, the driver to "
            f"{cfg['driver_cpus']} (--pool-cpus)"
        )
    pool = cfg.get("pool")
    if pool is not None:
        settings = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in pool["settings"].items())
        lines.append(f"pool started with {settings}")
        for d in pool["differ_from_serve"]:
            lines.append(
                f"  differs from poolsim serve: {d['setting'].replace('_', ' ')} {d['run']:,} "
                f"(serve {d['serve']:,}): {d['why']}"
            )
    took = cfg.get("provisioning")
    if took:
        lines.append(
            f"provisioned {took['users']:,} users in {took['users_seconds']:.1f} s and "
            f"{took['contact_entries']:,} contact entries in {took['contacts_seconds']:.1f} s, "
            "before the run's clock starts"
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
            f"not OK by status code (refusals are answers, not errors; {THROTTLED}: the pool's "
            "'server too busy', apart from errors): "
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
            f"max {f['cpu_max']:.1f}% of one core (in the window); average holding time up "
            f"to {f.get('holding_max_s', 0.0):.3f} s"
            + (
                f"; flow control {f['flow_controlled_s']:.0f} s, {f['held']:,.0f} requests held"
                if f.get("held") or f.get("flow_controlled_s")
                else ""
            )
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
    if rebuilt is not None:
        lines += [f"  not in this report: {part}" for part in rebuilt.get("missing", [])]
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
    heads = [f"{c} (server too busy)" if c == THROTTLED else c for c in codes]
    errors = _table(["operation", *heads, "errors (run)", "errors (window)"], error_rows)
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
        f"an answer, not an error. {THROTTLED}: the pool throttled (UNAVAILABLE with a "
        "retry-after: its store fell behind, or a request waited too long under flow "
        "control), counted apart from errors"
    )
    server = server or (
        "<p>no server histograms (the window did not open, or the pool's metrics did not "
        "answer)</p>"
    )
    mem = ""
    if "memory" in report:
        mem = (
            '<h2>Memory</h2><pre class="table">'
            + e("\n".join(memory.text(report["memory"])))
            + "</pre>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>poolsim run report: {result}</title>
{charts.head()}
<style>body{{font-family:sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 1em}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}th{{background:#f4f4f4}}
.pass{{color:#2a2}}.fail{{color:#c22}}.inconclusive{{color:#c80}}.note,.reason{{color:#555}}
section.chart{{margin:1.5em 0}}pre{{background:#f8f8f8;padding:0.5em;white-space:pre-wrap}}
pre.table{{white-space:pre;overflow-x:auto}}
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
