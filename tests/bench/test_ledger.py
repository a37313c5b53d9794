"""The read-back ledger stays bounded per user: the latest acknowledged write and a few
failed ones after it."""

from __future__ import annotations

from bench.driver import UNCERTAIN_KEPT, Ledger
from bench.stats import ERROR_SAMPLES, Recorder


def test_ledger_keeps_the_latest_acknowledged_write_and_a_few_failed_ones() -> None:
    ledger = Ledger()
    for k in range(1000):
        ledger.acknowledged(7, (3500, f"note {k}"))
    assert ledger.presence == {7: (3500, "note 999")}
    for k in range(UNCERTAIN_KEPT + 5):
        ledger.failed(7, (6500, f"failed {k}"))
    assert len(ledger.uncertain[7]) == UNCERTAIN_KEPT
    assert ledger.uncertain[7][-1] == (6500, f"failed {UNCERTAIN_KEPT + 4}")
    assert ledger.overflowed == {7}  # a read-back matching none of them is unverifiable
    ledger.acknowledged(7, (3500, "again"))
    assert 7 not in ledger.uncertain
    assert not ledger.overflowed


def test_error_samples_are_bounded_and_merge() -> None:
    a, b = Recorder(), Recorder()
    for k in range(10):
        a.error_sample("poll", "UNAVAILABLE", f"a {k}")
        b.error_sample("poll", "UNAVAILABLE", f"b {k}")
    b.error_sample("send", "NOT_FOUND", "x" * 1000)
    a.merge(b)
    assert a.error_samples["poll UNAVAILABLE"] == [f"a {k}" for k in range(ERROR_SAMPLES)]
    assert len(a.error_samples["send NOT_FOUND"][0]) == 300
    assert Recorder.from_wire(a.to_wire()).error_samples == a.error_samples
