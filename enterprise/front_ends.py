"""A front end as the pool manager sees it: its state, the moves between states, and Lync's
two-front-end rule. Pure: ``enterprise.fabric.Fabric`` owns one ``Member`` per front end and
moves it only through ``check_transition``.

Front end states (``pool.status.FrontEndState``); anything not listed here (``TRANSITIONS``)
raises ``IllegalTransition``::

    (new)     --start()------------------------------------> STARTING
    (new)     --register()---------------------------------> UP        joins the start order
    STARTING  --register()---------------------------------> UP        joins it if the first time
    STARTING  --stop(graceful=False) / mark_dead()---------> DOWN
    UP        --stop(graceful=True)------------------------> DRAINING  hands its replicas over
    UP        --stop(graceful=False) / mark_dead()
                / check(): no heartbeat for misses*interval-> DOWN
    UP        --register() (it restarted unnoticed)--------> DOWN, then UP
    DRAINING  --check(): drain_timeout over / stop(False)
                / mark_dead() / heartbeats missed----------> DOWN
    DRAINING  --register() (it restarted)------------------> DOWN, then UP
    DOWN      --start()------------------------------------> STARTING
    DOWN      --register()---------------------------------> UP

**Lync's two-FE rule**: a two-FE pool whose FEs both went down comes back by itself only if
they return in reverse order (the one that went down last first); in the other order, its
groups wait for quorum-loss recovery, and their message says so (``TwoFrontEndRule``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from enterprise.quorum import two_fe_restart_ok
from pool.errors import FailedPrecondition
from pool.status import FrontEndState

UP: Final = FrontEndState.UP
DOWN: Final = FrontEndState.DOWN
DRAINING: Final = FrontEndState.DRAINING
STARTING: Final = FrontEndState.STARTING
#: the states in which an FE's process runs (and counts for pool quorum)
RUNNING: Final = frozenset({UP, DRAINING})

#: The allowed moves of an FE (``None``: an FE the pool has not seen yet). See the docstring.
TRANSITIONS: Final[Mapping[FrontEndState | None, frozenset[FrontEndState]]] = MappingProxyType(
    {
        None: frozenset({STARTING, UP}),
        STARTING: frozenset({UP, DOWN}),
        UP: frozenset({DRAINING, DOWN}),
        DRAINING: frozenset({DOWN}),
        DOWN: frozenset({STARTING, UP}),
    }
)


class IllegalTransition(FailedPrecondition):
    """An FE was asked to move between states that ``TRANSITIONS`` does not connect."""


@dataclass(slots=True)
class Member:
    """One known FE: its state, addresses and liveness."""

    state: FrontEndState
    address: str = ""
    metrics_address: str = ""
    last_heartbeat: float = 0.0
    drain_deadline: float = 0.0


def check_transition(
    fe_id: str, old: FrontEndState | None, new: FrontEndState, reason: str
) -> None:
    """IllegalTransition unless ``TRANSITIONS`` allows FE ``fe_id`` to go ``old`` -> ``new``."""
    allowed = TRANSITIONS[old]
    if new in allowed:
        return
    was = old.value if old is not None else "new"
    if old is new:
        raise IllegalTransition(f"front end {fe_id} is already {was} (asked: {reason})")
    names = " or ".join(sorted(s.value for s in allowed))
    raise IllegalTransition(
        f"front end {fe_id} cannot go from {was} to {new.value} ({reason}): "
        f"a {was} front end can only become {names}"
    )


@dataclass(slots=True)
class TwoFrontEndRule:
    """Which FE of a two-FE pool went down last when both did (``last_down``), and why its
    lost groups wait for quorum-loss recovery when the other came back first
    (``wrong_order``, empty otherwise)."""

    last_down: str = ""
    wrong_order: str = ""

    def moved(self, fe_id: str, new: FrontEndState, running: list[str]) -> None:
        """FE ``fe_id`` just became ``new``; ``running`` are the FEs now UP or DRAINING."""
        if new is DOWN and not running:
            self.last_down = fe_id
        elif new is UP and self.last_down and running == [fe_id]:
            if not two_fe_restart_ok(self.last_down, fe_id):
                self.wrong_order = (
                    f"both front ends of this two-front-end pool went down and {fe_id} came "
                    f"back first, but {self.last_down} went down last: Lync's pool comes back "
                    "only in reverse order; run ResetPoolRegistrarState(QUORUM_LOSS_RECOVERY)"
                )
            self.last_down = ""
