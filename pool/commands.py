"""The composition root's registry: the commands and the editions ``poolsim`` offers, found
through entry points, so that the core never imports the packages built on it.

    poolsim.commands   a :class:`Command` each (``bench`` declares run, plan, bench, report)
    poolsim.editions   an :class:`Edition` each (``standard``, ``enterprise``): what
                       ``poolsim serve --edition NAME`` starts

Both groups are declared in ``pyproject.toml`` (``[project.entry-points."poolsim.commands"]``),
as pytest and flake8 find their plugins; an installed package can add its own. The core's
own commands (serve, status, monitoring) are :class:`Command` values in ``pool.cli``. A
source tree that was never installed (``pip install -e .``) has no entry points: ``poolsim``
then offers the core's commands only and says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

COMMANDS = "poolsim.commands"
EDITIONS = "poolsim.editions"


@dataclass(frozen=True, slots=True)
class Command:
    """One ``poolsim NAME``: its one-line help, its place in ``poolsim --help`` (``order``,
    smallest first), its options, and what it does (an exit code)."""

    name: str
    help: str
    order: int
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class Edition:
    """One ``poolsim serve --edition NAME``: ``serve`` runs it with the serve options
    (``pool.serve_options``) until it is stopped, and returns the exit code."""

    name: str
    order: int
    serve: Callable[[argparse.Namespace], int]


def _load(group: str) -> list[object]:
    return [ep.load() for ep in entry_points(group=group)]


def installed_commands() -> list[Command]:
    """The commands other packages declare, in their order."""
    found = [c for c in _load(COMMANDS) if isinstance(c, Command)]
    return sorted(found, key=lambda c: c.order)


def editions() -> dict[str, Edition]:
    """The editions installed, by name, in their order."""
    found = sorted((e for e in _load(EDITIONS) if isinstance(e, Edition)), key=lambda e: e.order)
    return {e.name: e for e in found}
