"""The batched-calls part of the enterprise bench (``bench.hotpath_link``) on the session's Ray
cluster, in its smallest size: the real ``Link`` batches what is queued while a batch is in
flight, every message arrives, and the figures are there. No figure is judged for speed."""

from __future__ import annotations

import math

import pytest

from bench.hotpath_link import measure_link


@pytest.mark.usefixtures("ray_cluster")
async def test_batched_and_bare_calls_move_every_message() -> None:
    n, warmup, concurrency, rounds = 300, 50, 8, 2
    data = await measure_link(n, warmup, concurrency, rounds)
    # the warm-up and the measured rounds, each way, all arrived
    assert data["peer_received"] == 2 * (warmup + n * rounds)
    for mode in ("batched", "bare"):
        got = data[mode]
        assert len(got["rounds"]) == rounds
        assert len(got["latencies"]) == n * rounds
        assert all(lat > 0 for lat in got["latencies"])
        for r in got["rounds"]:
            assert r["items"] == n
            assert math.isfinite(r["throughput"])
            assert r["throughput"] > 0
    bare = data["bare"]["rounds"]
    assert all(r["ray_calls"] == n and r["max_batch_items"] == 1 for r in bare)
    batched = data["batched"]["rounds"]
    # the workers' first requests leave together: one Ray call carries several messages
    assert all(1 < r["max_batch_items"] <= concurrency for r in batched)
    assert all(r["ray_calls"] < n for r in batched)
