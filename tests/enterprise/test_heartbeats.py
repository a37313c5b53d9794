"""A heartbeat round's answers, judged (``enterprise.heartbeats``): late answers are not
misses until ``heartbeat_misses`` rounds in a row go unanswered; a dead actor is down at once."""

from __future__ import annotations

import ray

from enterprise.heartbeats import MissedRounds, judge_round
from pool.status import FrontEndState
from tests.enterprise.test_fabric import INTERVAL, MISSES, started

ROUND = 1.5 * INTERVAL + 2 * INTERVAL  # a round that waited its whole deadline, and the sleep


def _alive() -> tuple[dict[int, int], int, int]:
    return {}, 2, 1


def test_late_answers_are_not_misses_until_enough_rounds_in_a_row() -> None:
    fabric = started(3, heartbeat_interval=INTERVAL, heartbeat_misses=MISSES)
    missed = MissedRounds(MISSES)
    now = 1.0
    for _ in range(MISSES - 1):  # each round longer than the fabric's whole timeout
        now += ROUND
        answers = {"fe-1": _alive(), "fe-2": TimeoutError(), "fe-3": _alive()}
        judged = judge_round(fabric, missed, answers, now)
        assert fabric.state_of("fe-2") is FrontEndState.UP
        assert judged.answers == {"fe-1": (2, 1), "fe-3": (2, 1)}
    judge_round(fabric, missed, {"fe-1": _alive(), "fe-2": _alive(), "fe-3": _alive()}, now)
    assert missed.missed == {}  # an answer starts the count again
    for _ in range(MISSES + 1):
        now += ROUND
        judge_round(
            fabric, missed, {"fe-1": _alive(), "fe-2": TimeoutError(), "fe-3": _alive()}, now
        )
    assert fabric.state_of("fe-2") is FrontEndState.DOWN


def test_a_dead_or_restarted_actor_is_down_at_once() -> None:
    fabric = started(4, heartbeat_interval=INTERVAL, heartbeat_misses=MISSES)
    missed = MissedRounds(MISSES)
    gone = ray.exceptions.RayActorError()
    judged = judge_round(fabric, missed, {"fe-1": _alive(), "fe-2": gone, "fe-3": None}, 1.0)
    assert judged.died == {"fe-2", "fe-3"}
    assert fabric.state_of("fe-2") is FrontEndState.DOWN
    assert fabric.state_of("fe-3") is FrontEndState.DOWN
    assert fabric.state_of("fe-1") is FrontEndState.UP
