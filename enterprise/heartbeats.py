"""What one heartbeat round's answers mean (``judge_round``), and the rounds a front end left
unanswered in a row (``MissedRounds``), as the fabric actor counts them.

A round waits up to two heartbeat intervals for each answer, so on a starved machine one slow
answer would outlast the fabric's timeout (``heartbeat_misses`` intervals) by itself. The
setting's promise is that only so many heartbeats *missed* mark a front end down: while a
front end has missed fewer rounds in a row than that, the actor counts it as alive (late), and
the fabric's own clock judges only the silence after. An actor that died is noticed at once,
from Ray, whatever the count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, cast

import ray

from enterprise.changes import Change
from enterprise.fabric import Fabric
from enterprise.front_ends import RUNNING
from pool.status import FrontEndState


class MissedRounds:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.missed: dict[str, int] = {}

    def answered(self, fe: str) -> None:
        self.missed.pop(fe, None)

    def late(self, fe: str) -> bool:
        """``fe`` left this round unanswered: True while that makes fewer than ``limit`` in a
        row (it is only late), False from then on (it missed them)."""
        missed = self.missed[fe] = self.missed.get(fe, 0) + 1
        return missed < self.limit

    forget = answered  # it went down: a front end that comes back starts from none


#: what a front end's heartbeat answers: its replicas' freshness, endpoints, users signed in
Heartbeat: TypeAlias = tuple[dict[int, int], int, int]


@dataclass(slots=True)
class Round:
    changes: list[Change] = field(default_factory=list)
    died: frozenset[str] = frozenset()  # Ray says their actors are gone
    #: front end -> (endpoints, users signed in), as each one that answered said
    answers: dict[str, tuple[int, int]] = field(default_factory=dict)


def judge_round(
    fabric: Fabric, missed: MissedRounds, answers: Mapping[str, object], now: float
) -> Round:
    """Each front end's answer to this round (its heartbeat's result, or the exception it
    raised) told to ``fabric`` at ``now``: alive (with its replicas' freshness), dead (its Ray
    actor is gone, or was restarted and not started again: ``None``), or late; then the
    fabric's own check of every front end's silence."""
    out = Round()
    died: set[str] = set()
    for fe, result in answers.items():
        if isinstance(result, ray.exceptions.RayActorError):
            died.add(fe)
            out.changes += fabric.mark_dead(fe, "its Ray actor is gone")
        elif result is None:
            died.add(fe)
            out.changes += fabric.mark_dead(fe, "its Ray actor was restarted")
        elif not isinstance(result, BaseException):
            missed.answered(fe)
            freshness, endpoints, signed_in = cast(Heartbeat, result)
            out.answers[fe] = endpoints, signed_in
            if fabric.state_of(fe) in RUNNING:
                fabric.heartbeat(fe, now)
                if fabric.state_of(fe) is FrontEndState.UP:
                    fabric.report_freshness(fe, freshness)
        elif missed.late(fe) and fabric.state_of(fe) in RUNNING:
            fabric.heartbeat(fe, now)  # late, not yet missed
    out.changes += fabric.check(now)
    out.died = frozenset(died)
    return out
