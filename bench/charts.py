"""The report's charts, drawn with plotly and embedded in one offline HTML page (plotly.js
inline, nothing fetched from the network): axes with ticks, units and gridlines, legends
above the plot (never over the data), values on hover, and markers for the run's moments
(ramp end, measurement window, kill) and each threshold.

Each function takes the report dict (``bench.report.build``) or the plan document and returns
a ``Chart`` (its title and figure), or None when there is nothing to draw. The plan's chart is
:mod:`bench.plan_chart`.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from bench import probe

HEIGHT = 380
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
THRESHOLD = "#c0392b"
#: tick values of a log latency axis (ms): 1-2-5 steps, labelled as plain numbers
LOG_TICKS = [m * 10.0**e for e in range(-3, 6) for m in (1, 2, 5)]


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # the div id: chart-<key>
    title: str
    figure: go.Figure
    note: str = ""  # a line under the chart


def layout(fig: go.Figure, x_title: str, y_title: str, *, log_y: bool = False) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=HEIGHT,
        margin={"l": 70, "r": 30, "t": 50, "b": 60},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        hovermode="x unified",
        font={"family": "sans-serif", "size": 12},
    )
    fig.update_xaxes(
        title_text=x_title,
        showgrid=True,
        gridcolor="#e5e5e5",
        ticks="outside",
        showline=True,
        linecolor="#888",
        zeroline=False,
    )
    fig.update_yaxes(
        title_text=y_title,
        showgrid=True,
        gridcolor="#e5e5e5",
        ticks="outside",
        showline=True,
        linecolor="#888",
        zeroline=False,
        rangemode="tozero" if not log_y else "normal",
        type="log" if log_y else "linear",
        tickvals=LOG_TICKS if log_y else None,
        ticktext=[f"{v:g}" for v in LOG_TICKS] if log_y else None,
    )
    return fig


def _line(
    fig: go.Figure, x: list[Any], y: list[Any], name: str, color: str, dash: str = "", **more: Any
) -> None:
    """One line trace (``dash``: "dot" and the like; ``more``: e.g. ``yaxis="y2"``)."""
    line = {"color": color, "dash": dash} if dash else {"color": color}
    fig.add_scatter(x=x, y=y, name=name, mode="lines", line=line, **more)


def _per_front_end(fig: go.Figure, fronts: dict[str, Any], field: int) -> None:
    """One line per front end of its probe samples' ``field`` (bench.probe)."""
    for i, (fe, f) in enumerate(fronts.items()):
        _line(fig, [s[0] for s in f["samples"]], [s[field] for s in f["samples"]], fe, _color(i))


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def right_axis(title: str, **more: Any) -> dict[str, Any]:
    """A second y axis on the right (``yaxis2``), without its own gridlines."""
    return {
        "title": {"text": title},
        "overlaying": "y",
        "side": "right",
        "showgrid": False,
        "ticks": "outside",
        **more,
    }


def _moments(fig: go.Figure, report: dict[str, Any]) -> None:
    """The ramp's end, the window (shaded) and the kill, on a time axis."""
    phases: dict[str, float] = report.get("phases", {})
    window = report.get("window", {})
    start, end = window.get("from"), window.get("to")
    if start is not None and end is not None:
        fig.add_vrect(
            x0=start,
            x1=end,
            fillcolor="#2ca02c",
            opacity=0.07,
            line_width=0,
            layer="below",
            annotation_text="measurement window",
            annotation_position="top left",
            annotation_font_size=11,
        )
    if "settling" in phases:
        fig.add_vline(
            x=phases["settling"],
            line_dash="dot",
            line_color="#555",
            annotation_text="ramp end",
            annotation_position="top left",  # the window's label is at its right
            annotation_font_size=11,
        )
    if "wind-down" in phases:
        fig.add_vline(
            x=phases["wind-down"], line_dash="dot", line_color="#999",
            annotation_text="wind-down", annotation_position="top right", annotation_font_size=11,
        )  # fmt: skip
    fo = report.get("failover")
    if fo and fo.get("killed_at") is not None:
        fig.add_vline(
            x=fo["killed_at"],
            line_dash="dash",
            line_color=THRESHOLD,
            annotation_text=f"kill {fo.get('front_end') or ''}",
            annotation_position="bottom right",
            annotation_font_size=11,
        )


def threshold(
    fig: go.Figure,
    y: float,
    label: str,
    *,
    log: bool = False,
    yref: str = "y",
    right: bool = False,
    dash: str = "dash",
) -> None:
    """A dashed horizontal line at ``y`` across the plot, named in the legend (so no label
    sits on the data). ``log`` and ``right`` are kept for callers; a shape on a log axis is
    placed by its value."""
    del log, right
    fig.add_shape(
        type="line",
        xref="paper",
        x0=0,
        x1=1,
        yref=yref,
        y0=y,
        y1=y,
        line={"color": THRESHOLD, "dash": dash, "width": 1},
    )
    fig.add_scatter(
        x=[None],
        y=[None],
        mode="lines",
        name=label,
        yaxis=yref,
        line={"color": THRESHOLD, "dash": dash, "width": 1},
        hoverinfo="skip",
    )


def throughput(report: dict[str, Any]) -> Chart | None:
    ts = report.get("timeseries", [])
    if not ts:
        return None
    t = [s["t"] for s in ts]
    fig = go.Figure()
    _line(fig, t, [s["ops"] - s["errors"] for s in ts], "completed OK", COLORS[0])
    _line(fig, t, [s["errors"] for s in ts], "errors", COLORS[1])
    _line(fig, t, [s.get("late", 0) for s in ts], "started late", COLORS[4])
    _moments(fig, report)
    return Chart(
        "throughput",
        "Throughput: operations per second (by intended start)",
        layout(fig, "run time (s)", "operations / s"),
    )


def latency(report: dict[str, Any]) -> Chart | None:
    ts = report.get("timeseries", [])
    if not ts:
        return None
    t = [s["t"] for s in ts]
    fig = go.Figure()
    _line(fig, t, [_positive(s.get("p50_ms", 0.0)) for s in ts], "p50", COLORS[2])
    _line(fig, t, [_positive(s["p99_ms"]) for s in ts], "p99", COLORS[0])
    _moments(fig, report)
    target = report.get("config", {}).get("thresholds", {}).get("p99_ms")
    if target:
        threshold(fig, float(target), f"p99 target {target:g} ms", log=True)
    return Chart(
        "latency",
        "Latency per second, all operations (client side, from the intended start)",
        layout(fig, "run time (s)", "latency (ms)", log_y=True),
    )


def _positive(v: float) -> float | None:
    """A value a log axis can show; None (a gap in the line) for a second without one."""
    return v if v > 0 else None


def percentiles(report: dict[str, Any]) -> Chart | None:
    ops = {
        n: o
        for n, o in report.get("operations", {}).items()
        if o.get("window", {}).get("count") or o.get("count")
    }
    if not ops:
        return None
    names = list(ops)
    fig = go.Figure()
    for i, p in enumerate(("p50", "p90", "p99", "p99.9")):
        fig.add_bar(
            x=names,
            y=[max(_window_or_run(ops[n])[p], 1e-3) for n in names],
            name=p,
            marker_color=COLORS[i],
            hovertemplate="%{x} " + p + ": %{y:.2f} ms<extra></extra>",
        )
    target = report.get("config", {}).get("thresholds", {}).get("p99_ms")
    if target:
        threshold(fig, float(target), f"p99 target {target:g} ms", log=True)
    fig.update_layout(barmode="group")
    chart = layout(fig, "operation", "latency (ms)", log_y=True)
    chart.update_layout(hovermode="closest")
    where = (
        "the measurement window"
        if report.get("window", {}).get("from") is not None
        else "the whole run (no window)"
    )
    return Chart("percentiles", f"Latency percentiles per operation, {where}", chart)


def _window_or_run(o: dict[str, Any]) -> dict[str, float]:
    w = o.get("window", {})
    return w if w.get("count") else o


def processor(report: dict[str, Any]) -> Chart | None:
    fronts = report.get("front_ends", {})
    if not fronts:
        return None
    fig = go.Figure()
    _per_front_end(fig, fronts, 1)
    if "pool" in report:
        samples = report["pool"]["samples"]
        _line(fig, [s[0] for s in samples], [s[1] for s in samples], "pool total", "#333", "dot")
    _moments(fig, report)
    target = report.get("config", {}).get("thresholds", {}).get("cpu_percent")
    if target:
        threshold(fig, float(target), f"target {target:g}%")
    return Chart(
        "processor",
        "Front-end processor (% of one core)",
        layout(fig, "run time (s)", "processor (% of one core)"),
    )


def endpoints(report: dict[str, Any]) -> Chart | None:
    fronts = report.get("front_ends", {})
    if not fronts:
        return None
    fig = go.Figure()
    _per_front_end(fig, fronts, 3)
    _moments(fig, report)
    return Chart(
        "endpoints", "Registered endpoints per front end", layout(fig, "run time (s)", "endpoints")
    )


def holding_time(report: dict[str, Any]) -> Chart | None:
    """Each front end's average holding time of incoming requests (Lync's counter), with the
    limits of flow control when the curve comes near them (a pool this run started)."""
    fronts = {fe: f for fe, f in report.get("front_ends", {}).items() if "holding_max_s" in f}
    if not fronts:
        return None
    fig = go.Figure()
    _per_front_end(fig, fronts, probe.HOLDING_S)
    _moments(fig, report)
    limits = report.get("config", {}).get("throttling", {})
    top = max(max((s[probe.HOLDING_S] for s in f["samples"]), default=0.0) for f in fronts.values())
    title = "Average holding time of incoming requests per front end"
    if limits:
        on, off = float(limits["holding_time_limit"]), float(limits["holding_time_release"])
        title += f" (flow control above {on:g} s, until under {off:g} s)"
        if top >= off / 4:  # drawn only where they would not flatten the curve to the floor
            threshold(fig, on, f"flow control above {on:g} s")
            threshold(fig, off, f"released under {off:g} s", dash="dot")
    return Chart("holding", title, layout(fig, "run time (s)", "seconds"))


def client_server(report: dict[str, Any]) -> Chart | None:
    rows = report.get("server_latency", {}).get("rows", [])
    rows = [r for r in rows if r.get("server_p99_ms") is not None]
    if not rows:
        return None
    names = [f"{r['operation']} ({r['rpc']})" for r in rows]
    fig = go.Figure()
    bars = (  # (row key, legend name, colour, decimals on hover)
        ("client_p99_ms", "client p99", COLORS[0], 2),
        ("server_p99_ms", "pool p99 (its own histogram)", COLORS[2], 3),
        ("client_p50_ms", "client p50", "#9ecae1", 2),
        ("server_p50_ms", "pool p50", "#a1d99b", 3),
    )
    for key, name, colour, decimals in bars:
        label = name.split(" (")[0]
        fig.add_bar(
            x=names,
            y=[max(r[key] or 0, 1e-3) for r in rows],
            name=name,
            marker_color=colour,
            hovertemplate=f"%{{x}}: {label} %{{y:.{decimals}f}} ms<extra></extra>",
        )
    fig.update_layout(barmode="group")
    chart = layout(fig, "operation (RPC)", "latency (ms)", log_y=True)
    chart.update_layout(hovermode="closest")
    return Chart(
        "client-server",
        "Client against pool latency per RPC, in the window",
        chart,
        report.get("server_latency", {}).get("note", ""),
    )


def driver_health(report: dict[str, Any]) -> Chart | None:
    drivers = report.get("driver", {}).get("drivers", {})
    if not drivers:
        return None
    fig = go.Figure()
    for i, (name, d) in enumerate(drivers.items()):
        s = d.get("samples", [])
        t = [x[0] for x in s]
        _line(fig, t, [x[1] for x in s], f"{name} processor %", _color(i))
        lag = [x[2] for x in s]
        _line(fig, t, lag, f"{name} loop lag p99 (ms)", _color(i), "dot", yaxis="y2")
    _moments(fig, report)
    threshold(fig, 85.0, "processor limit 85%")
    chart = layout(fig, "run time (s)", "processor (% of one core)")
    chart.update_layout(
        yaxis2=right_axis("loop lag p99 (ms)", tickmode="auto", rangemode="tozero"),
        margin={"l": 70, "r": 70, "t": 50, "b": 60},
    )
    return Chart("driver", "The load driver: its processor and event-loop lag (limit 20 ms)", chart)


def memory(report: dict[str, Any]) -> Chart | None:
    mem = report.get("memory")
    if not mem or not mem.get("samples"):
        return None
    samples = mem["samples"]
    fig = go.Figure()
    t = [s["t"] for s in samples]
    _line(fig, t, [s.get("driver", 0) / 2**20 for s in samples], "driver", COLORS[0])
    fes = sorted({fe for s in samples for fe in s.get("front_ends", {})})
    for i, fe in enumerate(fes):
        mib = [s.get("front_ends", {}).get(fe, math.nan) / 2**20 for s in samples]
        _line(fig, t, mib, fe, _color(i + 1))
    _moments(fig, report)
    return Chart("memory", "Memory (resident set) over time", layout(fig, "run time (s)", "MiB"))


def run_charts(report: dict[str, Any]) -> list[Chart]:
    made = [
        throughput(report),
        latency(report),
        percentiles(report),
        processor(report),
        endpoints(report),
        holding_time(report),
        client_server(report),
        driver_health(report),
        memory(report),
    ]
    return [c for c in made if c is not None]


def div(chart: Chart) -> str:
    """One chart as a section of the page (the plotly.js library is in ``head``)."""
    body = chart.figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{chart.key}",
        default_height=f"{HEIGHT}px",
        config={"displaylogo": False, "responsive": True},
    )
    note = f'<p class="note">{html.escape(chart.note)}</p>' if chart.note else ""
    return f'<section class="chart"><h3>{html.escape(chart.title)}</h3>{body}{note}</section>'


def head() -> str:
    """The ``<script>`` that carries plotly.js itself (so the page works offline)."""
    return f'<script type="text/javascript">{get_plotlyjs()}</script>'
