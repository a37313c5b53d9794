"""A short `poolsim run --edition enterprise --kill-front-end-at`: a pool of three front ends on
the session's Ray cluster, one crashed mid-run; the report's fail-over section is there and adds
up, and no acknowledged write was lost. Behaviour only: no figure is judged for speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.failover import choose_victim
from bench.run import main
from bench.run_options import RunOptions, check


@pytest.mark.usefixtures("ray_cluster")
def test_a_crash_mid_run_is_reported_and_loses_no_acknowledged_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    opts = RunOptions(
        users=60,
        duration=14.0,  # room for every affected endpoint to sign in again on a busy machine
        ramp=50.0,
        speedup=40.0,
        seed=3,
        out=out,
        progress=False,
        edition="enterprise",
        front_ends=3,
        kill_at=4.0,
        min_window=3.0,
        window_at=3.0,
    )
    main(opts, exit_zero=True)  # the verdict's outcome depends on the machine
    printed = capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    c = r["counters"]
    ops = r["operations"]
    assert r["config"]["edition"] == "enterprise"
    assert r["config"]["front_ends"] == 3
    assert r["config"]["peer_links"] == "direct"  # the crash is met over the direct links
    assert c["logon_attempts"] == ops["sign-in"]["calls"] > 0
    assert r["total_calls"] == sum(o["calls"] for o in ops.values())
    # every front end was probed; the pool's total is reported too
    assert set(r["front_ends"]) == {"fe1", "fe2", "fe3"}
    assert all(f["samples"] for f in r["front_ends"].values())
    assert r["pool"]["front_ends"] == 3
    assert r["pool"]["cpu_total_mean"] >= r["pool"]["cpu_mean_per_front_end"] >= 0

    fo = r["failover"]
    assert fo["error"] == ""
    assert fo["front_end"] in {"fe2", "fe3"}  # the most users, never fe1 when another is up
    assert fo["killed_at"] >= 4.0
    assert 0 < fo["affected_users"] <= fo["signed_in_users_at_kill"]
    assert fo["affected_endpoints"] >= fo["affected_users"]
    # the pool failed over, the affected endpoints signed in again elsewhere, users were served
    assert fo["pool_failed_over_after"] > 0
    assert 0 < fo["first_reregistered_after"] <= fo["all_reregistered_after"]
    assert 0 < fo["affected_users_served_again"] <= fo["affected_users"]
    assert (
        0
        < fo["first_affected_success_after"]
        <= fo["affected_served_median_after"]
        <= fo["affected_served_last_after"]
    )
    # the window runs through the restart and the rebalance: it may outlast a short run
    assert fo["failed_over_by"] >= fo["killed_at"]
    assert fo["window_end"] is None or fo["window_end"] >= fo["failed_over_by"]
    assert fo["window_through"] == "the pool whole again"
    assert fo["sessions_reconnected"] >= fo["affected_endpoints"]
    assert fo["session_reconnections"] >= fo["sessions_reconnected"]
    assert fo["operations_failed"] == sum(fo["failed_by_operation"].values())
    assert fo["operations_failed"] == sum(fo["failed_by_code"].values())
    assert fo["operations_failed"] <= fo["operations_caught"]
    # every acknowledged manual presence was read back after the fail-over, none lost
    assert fo["ledger_lost"] == 0
    assert fo["ledger_unreadable"] == 0
    assert fo["ledger_checked"] == c["ledger_checked"] > 0
    checks = {chk["check"]: chk["ok"] for chk in r["verdict"]["checks"]}
    assert checks["acknowledged writes lost (read back after the fail-over)"]
    assert checks[f"fail-over of {fo['front_end']}: affected users served again"]
    assert "errors in the window (outside the fail-over)" in checks
    # the drill read back writes of the users it affected (else the check is inconclusive)
    assert fo["ledger_checked_affected"] > 0
    assert checks["acknowledged writes of affected users read back"]
    assert f"fail-over: {fo['front_end']} crashed at" in printed
    assert "pool of 3 front ends: processor total mean" in printed
    assert "Fail-over" in (out / "report.html").read_text()


def test_victim_choice() -> None:
    assert choose_victim(["fe1", "fe2", "fe3"], ["fe1"] * 5 + ["fe2"] * 2 + ["fe3"] * 3) == "fe3"
    assert choose_victim(["fe1", "fe2", "fe3"], ["fe1"] * 5) == "fe2"  # a tie: the lower id
    assert choose_victim(["fe1", "fe3"], ["fe3"]) == "fe3"
    assert choose_victim(["fe1"], []) == "fe1"  # fe1 only when nothing else is up


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kill_at": 2.0}, "needs --edition enterprise"),
        ({"edition": "enterprise", "kill_at": 2.0, "workers": 2}, "single driver"),
        ({"edition": "enterprise", "kill_at": 9.0}, "must be within the run"),
        ({"edition": "enterprise", "kill_front_end": "fe2"}, "needs --kill-front-end-at"),
    ],
)
def test_kill_options_that_do_not_go_together(changes: dict[str, object], message: str) -> None:
    opts = RunOptions(users=10, duration=5.0, progress=False, **changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        check(opts)
    with pytest.raises(ValueError, match=message):
        main(opts)  # before any pool starts
