"""The plan's chart (``poolsim plan``, :mod:`bench.plan`): throughput and p99 against users
per front end, the fitted USL curve with its 95% band, the p99 target, Lync's 6,660 per front
end and the answer, drawn with the report's conventions (:mod:`bench.charts`)."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from bench.capacity import UslFit
from bench.charts import COLORS, LOG_TICKS, Chart, layout, right_axis, threshold


def plan_chart(doc: dict[str, Any]) -> Chart | None:
    """Throughput and p99 against users per front end, the fitted USL curve with its band,
    the targets and the answer."""
    points = [p for p in doc.get("points", []) if p.get("error") is None and p.get("throughput")]
    if not points:
        return None
    fig = go.Figure()
    per_fe = [p.get("per_fe", p["users"] / max(1, p["front_ends"])) for p in points]
    ok = [p["passed"] for p in points]
    fig.add_scatter(
        x=per_fe,
        y=[p["throughput"] for p in points],
        mode="markers",
        name="throughput (window)",
        marker={
            "size": 10,
            "color": [COLORS[2] if o else COLORS[1] for o in ok],
            "symbol": ["circle" if o else "x" for o in ok],
        },
        hovertemplate="%{x:,.0f} users per FE: %{y:,.1f} calls/s<extra></extra>",
    )
    fig.add_scatter(
        x=per_fe,
        y=[p["worst_p99_ms"] for p in points],
        mode="markers+lines",
        name="worst p99 (ms)",
        marker={"size": 8, "color": COLORS[3]},
        line={"dash": "dot", "color": COLORS[3]},
        yaxis="y2",
        hovertemplate="%{x:,.0f} users per FE: p99 %{y:.1f} ms<extra></extra>",
    )
    fit = doc.get("fit")
    shown = [p["throughput"] for p in points]  # what the throughput axis holds
    if fit:
        top = x_top(doc)
        xs = [top * i / 100 for i in range(1, 101)]
        fes = max(1, points[0]["front_ends"])
        usl = UslFit(fit["lambda"], fit["sigma"], fit["kappa"], fit["r2"])
        curve = [usl.throughput(x * fes) for x in xs]
        fig.add_scatter(x=xs, y=curve, mode="lines", name="USL fit", line={"color": COLORS[0]})
        shown += curve
        band = [(b[0] / fes, b[1], b[2]) for b in fit.get("band", []) if b[0] / fes <= top]
        if band:
            fig.add_scatter(
                x=[b[0] for b in band],
                y=[b[2] for b in band],
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
            )
            fig.add_scatter(
                x=[b[0] for b in band],
                y=[b[1] for b in band],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(31,119,180,0.15)",
                name="95% band",
                hoverinfo="skip",
            )
    figure = doc.get("users_per_fe") or {}
    answer = figure.get("largest_passing")
    lync = doc.get("lync_users_per_fe", 6660)
    # each label on the side of its line away from the other's, so they never overlap
    answer_side, lync_side = (
        ("top right", "top left")
        if answer and answer > lync
        else (
            "top left",
            "top right",
        )
    )
    if answer and figure.get("capacity_figure"):  # the same figure the text gives, or none
        bound = "at least " if figure.get("lower_bound") else ""
        fig.add_vline(
            x=answer,
            line_color=COLORS[2],
            annotation_text=f"answer: {bound}{answer:,.0f} per FE",
            annotation_position=answer_side,
            annotation_font_size=11,
        )
    fig.add_vline(
        x=lync,
        line_dash="dot",
        line_color="#555",
        annotation_text="Lync 6,660 per FE",
        annotation_position=lync_side,
        annotation_font_size=11,
    )
    target = (doc.get("options") or {}).get("p99_target_ms")
    chart = layout(fig, "users per front end", "throughput (calls / s)")
    p99s = [p["worst_p99_ms"] for p in points] + ([float(target)] if target else [])
    chart.update_layout(
        yaxis2=right_axis(
            "worst p99 (ms)",
            tickmode="array",
            type="log",
            tickvals=LOG_TICKS,
            ticktext=[f"{v:g}" for v in LOG_TICKS],
            range=_log_range(p99s),
        ),
        margin={"l": 70, "r": 70, "t": 50, "b": 60},
        hovermode="closest",
    )
    chart.update_xaxes(range=[0, x_top(doc)])  # as the defences' chart under it
    # the points and the curve set the scale; a band wider than that (few points, far from
    # them) runs off the top instead of flattening the data
    chart.update_layout(yaxis={"range": [0, max(shown) * 1.25]})
    if target:
        threshold(
            chart,
            float(target),
            f"p99 target {float(target):g} ms",
            log=True,
            yref="y2",
            right=True,
        )
    return Chart("plan", "Throughput and p99 against users per front end, with the USL fit", chart)


def defence_chart(doc: dict[str, Any]) -> Chart | None:
    """Lync's defences per point, on the plan chart's axis of users per front end: requests
    held at the door (flow control) and answered "server too busy" per second of the window,
    and the share of the window some front end spent in flow control (of the run, for a run
    without a window). None when no point met any of them (a plan that never reached the
    pool's limit has nothing to draw)."""
    # every finished run: past the knee a run whose window never opened (the calls held at
    # the door kept the driver's slots) is the one that shows them; its rates are the run's
    points = [p for p in doc.get("points", []) if p.get("error") is None]
    seconds = [p.get("window_s") or p["duration"] for p in points]
    throttled = [p.get("throttled", 0) / s for p, s in zip(points, seconds, strict=True)]
    held = [p.get("held", 0) / s for p, s in zip(points, seconds, strict=True)]
    share = [
        100.0 * min(1.0, p.get("flow_controlled_s", 0.0) / s)
        for p, s in zip(points, seconds, strict=True)
    ]
    if not any(throttled + held + share):
        return None
    per_fe = [p.get("per_fe", p["users"] / max(1, p["front_ends"])) for p in points]
    fig = go.Figure()
    top = x_top(doc)
    shown = [
        (rates, name, unit, color)
        for rates, name, unit, color in (
            (held, "held at the door, flow control (requests / s)", "held", COLORS[4]),
            (throttled, "answered 'server too busy' (calls / s)", "too busy", COLORS[1]),
        )
        if any(rates)
    ]
    width = top * 0.02
    for k, (rates, name, unit, color) in enumerate(shown):
        fig.add_bar(
            x=per_fe,
            y=rates,
            name=name,
            marker={"color": color},
            width=width,
            offset=width * (k - len(shown) / 2),  # side by side about the point
            text=[f"{r:,.1f}" if r else "" for r in rates],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"%{{x:,.0f}} users per FE: %{{y:,.2f}} {unit} / s<extra></extra>",
        )
    fig.add_scatter(
        x=per_fe,
        y=share,
        mode="markers",
        name="window in flow control (%)",
        marker={"size": 10, "color": COLORS[3], "symbol": "diamond"},
        yaxis="y2",
        hovertemplate="%{x:,.0f} users per FE: %{y:.0f}% of the window<extra></extra>",
    )
    chart = layout(fig, "users per front end", "per second of the window (or run)")
    chart.update_layout(
        barmode="overlay",
        yaxis2=right_axis(
            "window in flow control (%)", range=[0, 105], tickvals=[0, 25, 50, 75, 100]
        ),
        margin={"l": 70, "r": 70, "t": 50, "b": 60},
    )
    chart.update_xaxes(range=[0, top])
    return Chart(
        "defences",
        "The pool's defences against overload per run: flow control and 'server too busy'",
        chart,
    )


def x_top(doc: dict[str, Any]) -> float:
    """The right end of both charts' axis of users per front end: past every finished run
    (and, with a fit, far enough to show its curve bend)."""
    per_fe = [
        p.get("per_fe", p["users"] / max(1, p["front_ends"]))
        for p in doc.get("points", [])
        if p.get("error") is None
    ]
    return max(per_fe, default=1.0) * (1.3 if doc.get("fit") else 1.1)


def _log_range(values: list[float]) -> list[float]:
    """A log axis range (log10 units) holding ``values`` with room either side."""
    shown = [v for v in values if v > 0] or [1.0]
    return [math.log10(min(shown) / 3), math.log10(max(shown) * 3)]
