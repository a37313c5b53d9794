"""The CI slice of the API fuzzer: a few thousand requests against a real Standard server
(its own process, on loopback), then the fuzzed users must still work. ``scripts/fuzz`` runs
the long version and prints the histogram."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.fuzzer import BODY_BUDGET, Method, State, Strategies, methods, weight
from tests.fuzz.run import fuzz

SLICE = 3000


def test_a_fuzzed_standard_pool_answers_every_request_with_a_proper_status(
    tmp_path: Path,
) -> None:
    report = fuzz("standard", SLICE, seed=12, data_dir=tmp_path / "data")
    assert report.result.requests >= SLICE * 0.9, report.text()
    assert report.ok, report.text()


@pytest.mark.parametrize("method", methods(), ids=lambda m: m.label)
def test_an_adversarial_request_stays_within_the_fuzzers_budget(method: Method) -> None:
    """Thousands of one item, nested in thousands of one item, would be a request the fuzzer
    spends minutes building (its own event loop held up, its calls timing out as if the pool
    hung): only a request's top-level lists are long, and no longer than the budget."""
    desc = method.request.DESCRIPTOR
    lists = sum(1 for f in desc.fields if f.is_repeated)
    strategy = Strategies(State([f"sip:fuzz{i}@contoso.com" for i in range(3)], "pw", "", []))

    @settings(
        max_examples=60, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        fields = data.draw(strategy.fields(desc, False))  # type: ignore[arg-type]
        assert weight(fields) <= (1 + lists) * BODY_BUDGET

    draw()
