"""Prometheus and Grafana for a pool, shipped inside the package (`poolsim monitoring` writes
them out).

- ``prometheus.yml``: scrapes every front end (job ``poolsim``) from ``poolsim-targets.json``
  (Prometheus file-based discovery: one target per front end, labelled ``pool`` and
  ``front_end``) and a load driver's endpoint (job ``poolsim-driver``) from
  ``poolsim-driver-targets.json``; loads the rules.
- ``poolsim-rules.yml``: recording rules (processor per front end, store write p99, RPC p99)
  and alerts for SPEC 6's thresholds (processor over 80%, store latency over 100 ms) and the
  pool's state (a front end down, routing groups not served, events dropped).
- ``grafana-dashboard.json``: the pool overview and the driver's client-side series. Every
  query uses ``[1m]`` windows, so it runs unchanged in Prometheus too.

This module only reads and writes files (no framework): the command asks the pool for its
front ends through the admin API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

# written name -> name inside the package
FILES = {
    "prometheus.yml": "prometheus.yml",
    "poolsim-rules.yml": "rules.yml",
    "grafana-dashboard.json": "dashboard.json",
}
TARGETS = "poolsim-targets.json"
DRIVER_TARGETS = "poolsim-driver-targets.json"


@dataclass(frozen=True, slots=True)
class Target:
    """One /metrics endpoint to scrape (``host:port``) and the labels it gets."""

    address: str
    labels: tuple[tuple[str, str], ...] = ()


def shipped(name: str) -> str:
    """The text of a shipped file (a key of FILES)."""
    return resources.files(__name__).joinpath(FILES[name]).read_text()


def file_sd(targets: Iterable[Target]) -> str:
    """Targets in Prometheus's file_sd format: one group per target, with its labels."""
    groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in targets]
    return json.dumps(groups, indent=2) + "\n"


def write(
    out: Path,
    pool: Sequence[Target],
    driver: Sequence[Target] = (),
    *,
    targets_only: bool = False,
) -> list[Path]:
    """Write the files into ``out`` (made if missing); the target lists always, the shipped
    files unless ``targets_only``. Returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if not targets_only:
        for name in FILES:
            path = out / name
            path.write_text(shipped(name))
            written.append(path)
    for name, targets in ((TARGETS, pool), (DRIVER_TARGETS, driver)):
        path = out / name
        if targets or not path.exists():  # a driver list written before is kept
            _replace(path, file_sd(targets))
            written.append(path)
    return written


def _replace(path: Path, text: str) -> None:
    """Write whole (Prometheus may read the file at any moment): a temporary file, renamed."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the dashboard."""
    dash = dashboard or json.loads(shipped("grafana-dashboard.json"))
    return [
        (panel["title"], target["expr"])
        for panel in dash["panels"]
        for target in panel.get("targets", ())
    ]
