"""Named sets of ``poolsim run`` options (``--preset NAME``): a whole scenario in one word.

A preset gives defaults, never overrides: an option given on the command line keeps its value
(``Given`` marks the options a preset may set, so the run can tell "given" from "default").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: what a run needs after its sign-in ramp: short subscriptions and conferences reach their
#: steady level (10 minutes of model time), then a measurement window of 5 minutes
AFTER_RAMP_S = 900.0


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    summary: str  # one line, for --help
    values: Mapping[str, Any]  # option dest -> value (already converted, as argparse would)
    #: option dest -> its value computed from the others (once they are final), if not given
    derived: Mapping[str, Callable[[argparse.Namespace], Any]] | None = None
    derived_help: str = ""


def _ramp_and_after(a: argparse.Namespace) -> float:
    """The sign-in ramp of everyone who signs in, then ``AFTER_RAMP_S``."""
    return float(round(a.users * a.signed_in_fraction / a.ramp + AFTER_RAMP_S))


LARGEST_POOL = Preset(
    "largest-pool",
    "Lync's largest supported pool: 12 front ends, 80,000 users all signed in with 1.9 "
    "endpoints each (152,000), the user model at the Low level",
    {
        "edition": "enterprise",
        "front_ends": 12,
        # 12 front ends on a machine of a few cores: a 0.5 s heartbeat (1.5 s to be declared
        # down) takes a front end starved for a moment for a dead one
        "heartbeat_interval": 2.0,
        "users": 80_000,
        "signed_in_fraction": 1.0,
        "endpoints_per_user": 1.9,
        "level": "low",
        "ramp": 25.0,
        "min_window": 300.0,
    },
    derived={"duration": _ramp_and_after},
    derived_help=f"--duration: the sign-in ramp plus {AFTER_RAMP_S:g}s",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (LARGEST_POOL,)}


class Given(argparse.Action):
    """``store``, and remember that the option was given (so a preset leaves it alone)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        given: set[str] = getattr(namespace, "given", None) or set()
        given.add(self.dest)
        namespace.given = given


def apply(a: argparse.Namespace) -> argparse.Namespace:
    """``a`` with its preset's values for every option not given; unchanged without one."""
    name = getattr(a, "preset", None)
    if name is None:
        return a
    given: set[str] = getattr(a, "given", None) or set()
    preset = PRESETS[name]
    values = {k: v for k, v in preset.values.items() if k not in given}
    out = argparse.Namespace(**{**vars(a), **values})
    for key, derive in (preset.derived or {}).items():
        if key not in given:
            setattr(out, key, derive(out))
    return out


def help_text() -> str:
    return "; ".join(
        f"{p.name}: {p.summary} ("
        + ", ".join(
            [f"--{k.replace('_', '-')} {_shown(k, v)}" for k, v in p.values.items()]
            + ([p.derived_help] if p.derived_help else [])
        )
        + ")"
        for p in PRESETS.values()
    )


DURATIONS = ("duration", "min_window", "heartbeat_interval")


def _shown(key: str, value: Any) -> str:
    if key in DURATIONS:
        return f"{value:g}s"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
