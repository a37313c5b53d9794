"""The pool's own latency per RPC, beside the client's: every front end's
``poolsim_rpc_duration_seconds{method,code}`` histogram read at the start and at the end of the
measurement window, the difference taken, and quantiles computed from its buckets the way
Prometheus' ``histogram_quantile`` does (linear inside the bucket that holds the rank), from
whatever buckets the server exposes.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

FAMILY = "poolsim_rpc_duration_seconds"
#: the store queue's latency (SPEC 6: below 100 ms in steady state), kept as a pseudo-RPC
STORE_FAMILY = "poolsim_store_write_seconds"
STORE = "store-write"
#: the report's operations and the RPC each one is
RPC_OF = {
    "sign-in": "SignIn",
    "publish": "PublishPresence",
    "poll": "GetPresence",
    "subscribe": "Subscribe",
    "batch-subscribe": "Subscribe",
    "im-invite": "CreateConversation",
    "conference-create": "CreateConversation",
    "accept": "AcceptInvitation",
    "send": "SendMessage",
    "typing": "SetTyping",
}
#: a client p99 more than this many times the server's (and GAP_MS over it) is named
GAP_RATIO = 2.0
GAP_MS = 5.0


@dataclass
class Buckets:
    """One histogram: cumulative counts per upper bound (``+Inf`` last), sum and count."""

    bounds: list[float] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    sum: float = 0.0

    @property
    def count(self) -> float:
        return self.counts[-1] if self.counts else 0.0

    def add(self, other: Buckets) -> Buckets:
        """The sum of two histograms (bounds of both, counts read off each at every bound)."""
        bounds = sorted(set(self.bounds) | set(other.bounds))
        return Buckets(bounds, [self.at(b) + other.at(b) for b in bounds], self.sum + other.sum)

    def minus(self, before: Buckets) -> Buckets:
        """What was observed since ``before`` (a counter reset: everything is new)."""
        if before.count > self.count:
            return self
        return Buckets(
            list(self.bounds),
            [max(0.0, c - before.at(b)) for b, c in zip(self.bounds, self.counts, strict=True)],
            max(0.0, self.sum - before.sum),
        )

    def at(self, bound: float) -> float:
        """Cumulative count at ``bound`` (that of the largest bound not above it)."""
        out = 0.0
        for b, c in zip(self.bounds, self.counts, strict=True):
            if b > bound:
                break
            out = c
        return out

    def quantile(self, q: float) -> float | None:
        """``histogram_quantile(q)`` in seconds; None without observations. A rank in the
        ``+Inf`` bucket gives the largest finite bound (as Prometheus does)."""
        total = self.count
        if total <= 0 or not self.bounds:
            return None
        rank = q * total
        prev_bound, prev_count = 0.0, 0.0
        for b, c in zip(self.bounds, self.counts, strict=True):
            if c >= rank:
                if math.isinf(b):
                    return prev_bound
                if c == prev_count:
                    return b
                return prev_bound + (b - prev_bound) * (rank - prev_count) / (c - prev_count)
            prev_bound, prev_count = b, c
        return prev_bound


Snapshot = dict[tuple[str, str], Buckets]  # (method, code) -> histogram


def parse(text: str) -> Snapshot:
    """The ``poolsim_rpc_duration_seconds`` histograms of one /metrics page, and the store
    queue's (``poolsim_store_write_seconds``) as method ``STORE``."""
    out: Snapshot = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (FAMILY, STORE_FAMILY):
            continue
        for sample in family.samples:
            key = (sample.labels.get("method", ""), sample.labels.get("code", ""))
            if family.name == STORE_FAMILY:
                key = (STORE, "OK")
            h = out.setdefault(key, Buckets())
            if sample.name.endswith("_bucket"):
                h.bounds.append(float(sample.labels["le"]))
                h.counts.append(float(sample.value))
            elif sample.name.endswith("_sum"):
                h.sum = float(sample.value)
    for h in out.values():
        pairs = sorted(zip(h.bounds, h.counts, strict=True))
        h.bounds = [b for b, _ in pairs]
        h.counts = [c for _, c in pairs]
    return out


def scrape(address: str, timeout: float = 2.0) -> Snapshot:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        return parse(resp.read().decode())


def scrape_all(addresses: Iterable[str]) -> dict[str, Snapshot]:
    """Every front end's histograms; one that does not answer is left out."""
    out: dict[str, Snapshot] = {}
    for address in addresses:
        try:
            out[address] = scrape(address)
        except OSError:
            continue
    return out


def window_histograms(
    start: Mapping[str, Snapshot], end: Mapping[str, Snapshot]
) -> dict[str, Buckets]:
    """Per RPC method: the OK calls the pool served between the two scrapes, over every
    front end that answered both times."""
    out: dict[str, Buckets] = {}
    for address, last in end.items():
        first = start.get(address, {})
        for (method, code), h in last.items():
            if code != "OK":
                continue
            diff = h.minus(
                first.get((method, code), Buckets(list(h.bounds), [0.0] * len(h.bounds)))
            )
            out[method] = out[method].add(diff) if method in out else diff
    return out


def compare(
    server: Mapping[str, Buckets], client: Mapping[str, Mapping[str, float]]
) -> list[dict[str, object]]:
    """One row per client operation that has an RPC: client p50/p99 (ms, the window's),
    the server's p50/p99 (ms) for that RPC, and whether the gap is large enough to name."""
    rows: list[dict[str, object]] = []
    for op, figures in client.items():
        method = RPC_OF.get(op)
        if method is None or method not in server:
            continue
        h = server[method]
        p50, p99 = h.quantile(0.5), h.quantile(0.99)
        c99 = float(figures.get("p99", 0.0))
        s99 = None if p99 is None else p99 * 1000
        gap = s99 is not None and c99 > GAP_RATIO * s99 and c99 - s99 > GAP_MS
        rows.append(
            {
                "operation": op,
                "rpc": method,
                "client_p50_ms": float(figures.get("p50", 0.0)),
                "client_p99_ms": c99,
                "server_p50_ms": None if p50 is None else p50 * 1000,
                "server_p99_ms": s99,
                "server_calls": h.count,
                "gap": gap,
            }
        )
    return rows


def _bound(b: float) -> float | str:
    return "+Inf" if math.isinf(b) else b


def snapshots_to_wire(snapshots: Mapping[str, Snapshot]) -> dict[str, Any]:
    """Scrapes as strict JSON (for the run folder's checkpoint)."""
    return {
        address: [
            [m, c, [_bound(b) for b in h.bounds], h.counts, h.sum] for (m, c), h in snap.items()
        ]
        for address, snap in snapshots.items()
    }


def snapshots_from_wire(data: Mapping[str, Any]) -> dict[str, Snapshot]:
    return {
        address: {
            (m, c): Buckets([math.inf if b == "+Inf" else float(b) for b in bounds], counts, total)
            for m, c, bounds, counts, total in rows
        }
        for address, rows in data.items()
    }


class WindowScrapes:
    """The front ends' histograms at the window's start and end (scraped in a thread), and
    the latest scrape inside the window (``mark_progress``, at each checkpoint of the run
    folder), so a run killed in its window still has the pool's latency up to then."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = [a for a in addresses if a]
        self.start: dict[str, Snapshot] | None = None
        self.latest: dict[str, Snapshot] | None = None
        self.end: dict[str, Snapshot] | None = None

    async def mark_start(self) -> None:
        self.start = await asyncio.to_thread(scrape_all, self.addresses)

    async def mark_progress(self) -> None:
        if self.start is not None and self.end is None:
            self.latest = await asyncio.to_thread(scrape_all, self.addresses)

    async def mark_end(self) -> None:
        if self.start is not None and self.end is None:
            self.end = await asyncio.to_thread(scrape_all, self.addresses)

    def histograms(self, *, so_far: bool = False) -> dict[str, Buckets]:
        """The window's histograms per RPC; ``so_far``: up to the latest scrape when the
        window's end was never scraped (a killed run)."""
        end = self.end if self.end is not None or not so_far else self.latest
        if self.start is None or end is None:
            return {}
        return window_histograms(self.start, end)

    def to_wire(self) -> dict[str, Any]:
        return {
            k: None if v is None else snapshots_to_wire(v)
            for k, v in (("start", self.start), ("latest", self.latest), ("end", self.end))
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WindowScrapes:
        w = cls(())
        w.start, w.latest, w.end = (
            None if data.get(k) is None else snapshots_from_wire(data[k])
            for k in ("start", "latest", "end")
        )
        return w
