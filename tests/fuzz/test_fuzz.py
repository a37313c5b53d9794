"""The CI slice of the API fuzzer: a few thousand requests against a real Standard server
(its own process, on loopback), then the fuzzed users must still work. ``scripts/fuzz`` runs
the long version and prints the histogram."""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.run import fuzz

SLICE = 3000


def test_a_fuzzed_standard_pool_answers_every_request_with_a_proper_status(
    tmp_path: Path,
) -> None:
    report = fuzz("standard", SLICE, seed=12, data_dir=tmp_path / "data")
    assert report.result.requests >= SLICE * 0.9, report.text()
    assert report.ok, report.text()
