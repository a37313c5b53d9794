"""A short `poolsim run` against a real Standard server: files exist and the counts add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import RunOptions, main


def test_short_run_writes_a_report_whose_counts_add_up(tmp_path: Path) -> None:
    out = tmp_path / "report"
    opts = RunOptions(
        users=60, duration=12.0, ramp=50.0, speedup=40.0, seed=3, out=out, progress=False
    )
    assert main(opts) == 0
    for name in ("report.json", "operations.csv", "timeseries.csv", "report.html"):
        assert (out / name).stat().st_size > 0
    r = json.loads((out / "report.json").read_text())
    c = r["counters"]
    ops = r["operations"]
    # every sign-in attempt was answered
    assert c["logon_attempts"] == ops["sign-in"]["calls"] > 0
    # every IM message sent was delivered (first recipient) or is counted as undelivered
    assert c["im_messages_sent"] > 0
    assert c.get("im_messages_undelivered", 0) == 0
    assert ops["delivery"]["calls"] == c["im_messages_sent"]
    # every accepted send is a sent message; failed sends are errors
    assert (
        ops["send"]["codes"].get("OK", 0) + ops["im-invite"]["codes"].get("OK", 0)
        == (c["im_messages_sent"])
    )
    assert c.get("ledger_lost", 0) == 0
    assert c["ledger_checked"] > 0
    assert r["total_calls"] == sum(o["calls"] for o in ops.values())
    assert r["front_ends"]["fe1"]["samples"]


@pytest.mark.usefixtures("ray_cluster")
def test_workers_split_the_users_and_merge_their_figures(tmp_path: Path) -> None:
    """--workers 2: two Ray actors (on the session's Ray cluster) drive disjoint halves; the
    report adds both up."""
    from bench.workers import slices

    assert slices(5, 2) == [(0, 2, 4), (1, 3)]
    out = tmp_path / "report"
    opts = RunOptions(
        users=40, duration=10.0, ramp=40.0, speedup=40.0, seed=5, out=out, workers=2, progress=False
    )
    assert main(opts) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["counters"]["logon_attempts"] == r["operations"]["sign-in"]["calls"] > 0
    assert r["counters"].get("im_messages_undelivered", 0) == 0
    assert r["config"]["workers"] == 2
