"""Short `poolsim run`s against a real Standard server: files exist, the counts add up, the
phases and the window are reported, and a second run against the same pool works."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bench import report_files
from bench.pool_process import start_standard
from bench.run import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS, exit_code, main, run
from bench.run_options import RunOptions, pool_settings


def test_short_run_writes_a_report_whose_counts_add_up(tmp_path: Path) -> None:
    out = tmp_path / "report"
    opts = RunOptions(
        users=60, duration=16.0, ramp=50.0, speedup=40.0, seed=3, out=out, progress=False,
        min_window=5.0, metrics_port=0, window_at=8.0,
    )  # fmt: skip
    # window_at: on a busy machine the steady state may never come; the window opens at 8 s
    # at the latest, so the figures below exist whatever the machine
    code = main(opts)
    for name in ("report.json", "operations.csv", "timeseries.csv", "report.html"):
        assert (out / name).stat().st_size > 0
    r = json.loads((out / "report.json").read_text())
    assert code == exit_code(r)
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
    # typing on and off for every message, the first one (sent with the invitation) too
    assert ops["typing"]["calls"] == 2 * c["im_messages_sent"]
    assert c.get("ledger_lost", 0) == 0
    assert c["ledger_checked"] > 0
    assert r["total_calls"] == sum(o["calls"] for o in ops.values())
    assert r["front_ends"]["fe1"]["samples"]
    # the phases, in order, and a window after the ramp
    phases = r["phases"]
    assert list(phases) == ["ramp", "settling", "window", "wind-down"]
    assert phases["ramp"] < phases["settling"] <= phases["window"] < phases["wind-down"]
    assert r["window"]["from"] == phases["window"]
    assert ops["sign-in"]["window"]["calls"] == 0  # the ramp stays out of the window
    assert r["window_calls"] == sum(o["window"]["calls"] for o in ops.values()) > 0
    # what shapes the figures is recorded
    cfg = r["config"]
    assert cfg["pool"]["settings"]["password_iterations"] == 1000
    assert cfg["pool"]["differ_from_serve"][0]["setting"] == "password_iterations"
    assert (cfg["workers"], cfg["speedup"], cfg["ramp"]) == (1, 40.0, 50.0)
    assert cfg["cores"] >= 1
    assert cfg["driver_metrics_port"] > 0
    # the driver's own health and the pool's own latency beside the client's
    assert r["driver"]["drivers"]["driver"]["samples"]
    assert {row["rpc"] for row in r["server_latency"]["rows"]} >= {"GetPresence"}


def test_exit_codes() -> None:
    def result(outcome: str) -> dict[str, Any]:
        return {"verdict": {"result": outcome}}

    assert exit_code(result("PASS")) == EXIT_PASS == 0
    assert exit_code(result("FAIL")) == EXIT_FAIL == 1
    assert exit_code(result("INCONCLUSIVE")) == EXIT_INCONCLUSIVE == 3
    assert exit_code(result("FAIL"), exit_zero=True) == 0


def test_a_run_starts_its_pool_like_serve_but_says_what_differs() -> None:
    same = pool_settings(RunOptions(password_iterations=50_000))
    assert same["differ_from_serve"] == []
    big = pool_settings(RunOptions(users=20_000))
    assert {d["setting"] for d in big["differ_from_serve"]} == {
        "password_iterations",
        "max_users_per_registrar",
    }


async def test_a_running_pool_can_be_driven_again_with_another_seed(tmp_path: Path) -> None:
    """`poolsim serve` with its defaults (250 contacts at most), driven twice, then with
    more users: the contact lists are the pool's, not the schedule's. The second run's
    endpoints make unary calls, the others' use Session streams."""
    pool = await asyncio.to_thread(
        start_standard, tmp_path / "pool", "--password-iterations", "1000"
    )
    try:
        token = tmp_path / "token"
        token.write_text(pool.admin_token)
        token.chmod(0o600)
        results = []
        for seed, users, transport in ((1, 40, "session"), (2, 40, "unary"), (3, 50, "session")):
            opts = RunOptions(
                users=users, duration=6.0, ramp=50.0, speedup=40.0, seed=seed,
                target=pool.address, admin_token_file=token, progress=False, min_window=1.0,
                transport=transport,
            )  # fmt: skip
            results.append(await run(opts))
    finally:
        await asyncio.to_thread(pool.stop)
    for r in results:
        assert r["operations"]["sign-in"]["errors"] == 0
        assert r["counters"]["logon_attempts"] > 0
        assert "pool" not in r["config"]  # a pool it did not start
        assert r["counters"]["im_messages_received"] > 0
    assert [r["config"]["transport"] for r in results] == ["session", "unary", "session"]
    assert results[0]["config"]["contact_lists_kept"] == 0
    assert results[1]["config"]["contact_lists_kept"] == 0  # the same lists again
    took = results[2]["config"]["provisioning"]
    assert took["users"] == 50
    assert took["contact_entries"] > 0
    assert took["users_seconds"] > 0
    assert took["contacts_seconds"] > 0
    assert "provisioned 50 users in" in report_files.text(results[2])


@pytest.mark.usefixtures("ray_cluster")
def test_workers_split_the_users_and_merge_their_figures(tmp_path: Path) -> None:
    """--workers 2: two Ray actors (on the session's Ray cluster) drive disjoint halves; the
    report adds both up, with each one's health."""
    from bench.workers import auto_workers, slices

    assert slices(5, 2) == [(0, 2, 4), (1, 3)]
    assert auto_workers(8, 1) == 7
    assert auto_workers(2, 3) == 1
    out = tmp_path / "report"
    opts = RunOptions(
        users=40, duration=12.0, ramp=40.0, speedup=40.0, seed=5, out=out, workers=2,
        progress=False, min_window=3.0, window_at=6.0,
    )  # fmt: skip
    main(opts)
    r = json.loads((out / "report.json").read_text())
    assert r["counters"]["logon_attempts"] == r["operations"]["sign-in"]["calls"] > 0
    assert r["counters"].get("im_messages_undelivered", 0) == 0
    assert r["config"]["workers"] == 2
    assert set(r["driver"]["drivers"]) == {"driver-1", "driver-2"}
    assert r["window"]["from"] is not None
