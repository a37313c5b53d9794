"""`poolsim bench --quick`: every benchmark reports numeric figures, ratios and target flags.

These tests never judge speed: the figures depend on the machine. They check the shape of
what is printed and written, and the arithmetic the verdicts rest on. The enterprise benchmark
starts its pool on the session's Ray cluster (``ray_cluster`` in tests/conftest.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import hotpath
from bench.ejabberd import ejabberdctl
from bench.hotpath_common import (
    cpu_seconds,
    latency_summary,
    make_comparison,
    make_figure,
    make_row,
    percentile,
)

MEASURED = ["routing-core", "grpc-e2e", "fanout", "memory"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_run(
    ray_cluster: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    parser = argparse.ArgumentParser()
    hotpath.add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(out)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = hotpath.main(args)
    return code, json.loads(out.read_text()), printed.getvalue()


def test_quick_run_reports_every_benchmark(quick_run: tuple[int, dict[str, Any], str]) -> None:
    code, doc, _ = quick_run
    assert code == 0
    assert doc["quick"] is True
    assert list(doc["benchmarks"]) == list(hotpath.BENCHMARKS)
    for name in MEASURED:
        result = doc["benchmarks"][name]
        assert result["status"] == "ok", result["reason"]
        assert result["rows"], name
        for row in result["rows"]:
            for key in ("poolsim", "baseline", "ratio", "target"):
                assert _number(row[key]), (row["name"], key, row[key])
            assert isinstance(row["met"], bool)
            assert isinstance(row["higher_is_better"], bool)
            assert row["target_text"].startswith((">=", "<="))
            assert row["ratio"] == pytest.approx(row["poolsim"] / row["baseline"])


def test_latency_where_it_applies(quick_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = quick_run
    for name in ("routing-core", "grpc-e2e", "fanout"):
        for row in doc["benchmarks"][name]["rows"]:
            for key in ("poolsim_p50", "poolsim_p99", "baseline_p50", "baseline_p99"):
                assert _number(row["latency_us"][key]), (row["name"], key)
            assert row["latency_us"]["poolsim_p50"] <= row["latency_us"]["poolsim_p99"]
    rows = {r["name"] for b in doc["benchmarks"].values() for r in b["rows"]}
    assert {"grpc-e2e", "grpc-e2e/closed-loop", "fanout"} <= rows
    assert any(r.startswith("routing-core/conference-") for r in rows)
    core = doc["benchmarks"]["routing-core"]["rows"][0]
    # judged against the plain job; the dict-and-deque floor is beside it, far faster
    assert core["details"]["baseline_is"].startswith("bench.hotpath_plain")
    assert core["details"]["floor_msg_per_s"] > core["baseline"] > 0


def test_memory(quick_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = quick_run
    memory = doc["benchmarks"]["memory"]["rows"][0]
    assert memory["higher_is_better"] is False
    assert memory["baseline"] == 1024**3  # one Standard front end holding 80,000 users
    assert memory["details"]["extrapolated"] is True  # --quick measures fewer users
    assert memory["details"]["bytes_per_user"] > 0


def test_enterprise(quick_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, printed = quick_run
    enterprise = doc["benchmarks"]["enterprise"]
    assert enterprise["status"] == "ok", enterprise["reason"]
    rows = {r["name"]: r for r in enterprise["rows"]}
    assert list(rows) == [
        "enterprise/cross-node",
        "enterprise/cross-node-cpu",
        "enterprise/same-node",
        "enterprise/batched-calls",
        "enterprise/cross-node-batch",
        "enterprise/failover",
    ]
    # the target: cross-node delivery against the same test on one Standard node
    cross = rows["enterprise/cross-node"]
    assert cross["is_figure"] is False
    assert cross["target"] == 0.8
    assert cross["target_source"] == "given"
    assert cross["target_text"] == ">= 0.8"
    assert cross["details"]["standard_store"] == "sqlite"
    # the recipient is homed on another front end than the sender
    assert cross["details"]["sender_front_end"] != cross["details"]["cross_recipient_front_end"]
    # processor per message, from every process of each side: the pool's front ends and
    # its fabric actor against the Standard server's process
    cpu = rows["enterprise/cross-node-cpu"]
    assert cpu["target_text"] == "<= 1.5"
    assert cpu["higher_is_better"] is False
    by_process = cpu["details"]["by_process"]
    assert set(by_process["cross"]) == {"fe1", "fe2", "fe3", "fabric"}
    assert set(by_process["standard"]) == {"standard"}
    assert cpu["poolsim"] == pytest.approx(sum(by_process["cross"].values()))
    assert cpu["baseline"] == pytest.approx(sum(by_process["standard"].values()))
    assert cpu["poolsim"] > 0
    assert cpu["baseline"] > 0
    assert cross["details"]["cpu_us_per_msg"]["cross"] == pytest.approx(cpu["poolsim"])
    same = rows["enterprise/same-node"]
    assert same["details"]["sender_front_end"] == same["details"]["recipient_front_end"]
    assert same["baseline"] == cross["baseline"]  # the same Standard measurement
    link = rows["enterprise/batched-calls"]
    for row in (cross, same, link):
        for key in ("poolsim", "baseline", "ratio"):
            assert _number(row[key]), (row["name"], key)
            assert row[key] > 0, (row["name"], key)
        assert row["ratio"] == pytest.approx(row["poolsim"] / row["baseline"])
        for key in ("poolsim_p50", "poolsim_p99", "baseline_p50", "baseline_p99"):
            assert _number(row["latency_us"][key]), (row["name"], key)
            assert row["latency_us"][key] > 0, (row["name"], key)
        assert row["latency_us"]["poolsim_p50"] <= row["latency_us"]["poolsim_p99"]
        assert row["latency_us"]["baseline_p50"] <= row["latency_us"]["baseline_p99"]
    # comparisons with no target given: figures that carry a baseline and a ratio
    for row in (same, link):
        assert row["is_figure"] is True
        assert row["met"] is True
        assert row["target"] is None
        assert row["target_text"] == "none (figure)"
    details = link["details"]
    rounds = doc["options"]["ent_rounds"]
    messages = doc["options"]["ent_link_messages"]
    assert details["batched_items"] == rounds * messages
    assert details["bare_ray_calls"] == rounds * messages
    assert 0 < details["batched_ray_calls"] <= details["batched_items"]
    assert details["mean_batch_items"] == pytest.approx(
        details["batched_items"] / details["batched_ray_calls"]
    )
    assert 1 <= details["max_batch_items"] <= details["in_flight"]
    batch = rows["enterprise/cross-node-batch"]
    assert batch["poolsim"] >= 1  # items per batch between front ends
    assert batch["details"]["batches"] > 0
    assert batch["poolsim"] == pytest.approx(cross["details"]["mean_batch_items"])
    failover = rows["enterprise/failover"]
    assert failover["poolsim"] > 0  # seconds
    # not the front end the admin calls go to; its users were served again elsewhere
    assert failover["details"]["victim"] != failover["details"]["admin_front_end"]
    assert failover["details"]["new_home"] != failover["details"]["victim"]
    assert failover["details"]["pool_failed_over_s"] > 0
    assert failover["details"]["reconnections"] >= 1
    # plain figures have no ratio, baseline nor target, and never fail the run
    for figure in (batch, failover):
        assert figure["is_figure"] is True
        assert figure["met"] is True
        assert figure["ratio"] is None
        assert figure["baseline"] is None
        assert figure["target_text"] == "none (figure)"
    figures = {f["row"]: f for f in doc["figures"] if f["row"].startswith("enterprise/")}
    assert list(figures) == [
        "enterprise/same-node",
        "enterprise/batched-calls",
        "enterprise/cross-node-batch",
        "enterprise/failover",
    ]
    assert figures["enterprise/batched-calls"]["ratio"] == pytest.approx(link["ratio"])
    assert figures["enterprise/failover"]["ratio"] is None
    assert [t["row"] for t in doc["targets"] if t["row"].startswith("enterprise")] == [
        "enterprise/cross-node",
        "enterprise/cross-node-cpu",
    ]
    assert "target enterprise/cross-node:" in printed
    assert "figure enterprise/batched-calls:" in printed
    assert "figure enterprise/failover:" in printed
    assert "batched-calls:" in printed  # the note with the ratio


def test_targets_listed_and_printed(quick_run: tuple[int, dict[str, Any], str]) -> None:
    _, doc, printed = quick_run
    rows = [r for b in doc["benchmarks"].values() for r in b["rows"]]
    targets = [r for r in rows if not r["is_figure"]]
    assert [t["row"] for t in doc["targets"]] == [r["name"] for r in targets]
    assert doc["all_targets_met"] == all(t["met"] for t in doc["targets"])
    for heading in ("benchmark", "poolsim", "baseline", "ratio", "target", "met?"):
        assert heading in printed
    for row in rows:
        kind = "figure" if row["is_figure"] else "target"
        assert f"{kind} {row['name']}:" in printed


def test_only_selects_one_benchmark(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    hotpath.add_arguments(parser)
    out = tmp_path / "only.json"
    args = parser.parse_args(["--quick", "--only", "routing-core", "--out", str(out)])
    assert hotpath.main(args) == 0
    doc = json.loads(out.read_text())
    assert list(doc["benchmarks"]) == ["routing-core"]
    assert doc["targets"]
    assert all(t["row"].startswith("routing-core") for t in doc["targets"])


def test_verdict_arithmetic() -> None:
    faster = make_row("x", "msg/s", 90.0, 100.0, 0.8)
    assert faster.ratio == pytest.approx(0.9)
    assert faster.met
    slower = make_row("x", "msg/s", 70.0, 100.0, 0.8)
    assert not slower.met
    small = make_row("m", "bytes", 1.0, 4.0, 1.0, higher_is_better=False)
    assert small.met
    assert small.target_text == "<= 1"
    big = make_row("m", "bytes", 5.0, 4.0, 1.0, higher_is_better=False)
    assert not big.met
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert math.isnan(percentile([], 50))
    assert latency_summary("p", [0.001, 0.002]) == {"p_p50": 1000.0, "p_p99": 2000.0}
    figure = make_figure("f", "s", 1.5)
    assert figure.is_figure
    assert figure.met
    assert math.isnan(figure.ratio)
    assert figure.target_text == "none (figure)"
    compared = make_comparison("c", "msg/s", 300.0, 100.0)
    assert compared.is_figure
    assert compared.met
    assert compared.ratio == pytest.approx(3.0)
    assert math.isnan(compared.target)
    assert compared.target_text == "none (figure)"


def test_session(quick_run: tuple[int, dict[str, Any], str]) -> None:
    """Processor per operation over Session streams, beside unary calls and the bare echo."""
    _, doc, _ = quick_run
    session = doc["benchmarks"]["session"]
    assert session["status"] == "ok", session["reason"]
    rows = {r["name"]: r for r in session["rows"]}
    measured = ejabberdctl() is not None  # then ejabberd is a side of the same run
    server_rows = {
        "session: server CPU per routed message": ("message_server", 62.5),
        "session: server CPU per presence notification": ("notification_server", 46.0),
    }
    for name, (key, reference) in server_rows.items():
        row = rows[name]
        assert _number(row["poolsim"])
        assert row["poolsim"] > 0
        if measured:
            assert row["baseline"] == row["details"][f"ejabberd_{key}_us"] > 0
            assert "measured in this run" in row["details"]["baseline"]
        else:
            assert row["baseline"] == reference
            assert "not installed" in row["details"]["baseline"]
        assert row["higher_is_better"] is False
        assert row["target"] == 2.0
    client = rows["session: client CPU per message (PoolClient) vs ejabberd's raw XMPP client"]
    # a figure (its target is NaN, null in the JSON): the client's goal is against the server
    assert client["target"] is None
    assert client["target_text"] == "none (figure)"
    assert client["baseline"] == (
        rows["session: server CPU per routed message"]["details"]["ejabberd_message_client_us"]
        if measured
        else 29.0
    )
    against_server = rows["session: client CPU per message against the server's"]
    assert against_server["target"] == 1.0
    for other in ("unary", "bare bidi echo"):
        assert any(n.startswith(f"session vs {other}:") for n in rows), other
    for side in ("session", "unary", "bare"):
        assert _number(
            rows["session: server CPU per routed message"]["details"][f"{side}_message_server_us"]
        )
    assert session["params"]["pairs"] == 50


def test_cpu_seconds_of_another_process_to_below_a_clock_tick() -> None:
    """A child working in short bursts (as a server does): its processor time is what
    /proc/<pid>/stat says (to its 10 ms ticks), read finer than a tick."""
    burst = "import time\nwhile 1:\n    t = time.perf_counter()\n"
    burst += "    while time.perf_counter() - t < 0.002: pass\n    time.sleep(0.001)\n"
    child = subprocess.Popen([sys.executable, "-c", burst])
    try:
        deadline = time.monotonic() + 60
        while cpu_seconds(child.pid) < 0.2 and time.monotonic() < deadline:
            time.sleep(0.01)
        readings = []
        for _ in range(200):
            readings.append(cpu_seconds(child.pid))
            time.sleep(0.001)
        raw = Path(f"/proc/{child.pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert cpu_seconds(child.pid) == pytest.approx(ticks, abs=0.05)
        steps = [b - a for a, b in itertools.pairwise(readings) if b > a]
        assert steps, "the child's clock did not move"
        assert min(steps) < 0.005  # finer than one tick
    finally:
        child.kill()
        child.wait()
    with pytest.raises(FileNotFoundError):
        cpu_seconds(child.pid)  # gone
