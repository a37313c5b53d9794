"""What the engine reports as it works, for metrics. The domain calls these; the metrics
adapter (pool.api.metrics) implements them with Prometheus objects. The default does nothing.
"""

from __future__ import annotations


class Observer:
    """Counters of the stress tool and server (SPEC section 6). Override what you need."""

    def logon(self, ok: bool, reason: str = "") -> None: ...

    def presence_published(self) -> None: ...

    def presence_polled(self, users: int) -> None: ...

    def presence_notified(self, count: int) -> None: ...

    def im_session_attempted(self) -> None: ...

    def im_session_established(self) -> None: ...

    def message_routed(self, recipients: int, seconds: float) -> None:
        """One message routed to ``recipients`` endpoints, in ``seconds`` (one call: it is on
        the path of every message)."""

    def events_dropped(self, count: int) -> None: ...

    def deregistered(self, reason: str) -> None: ...

    def conference_started(self) -> None: ...

    def store_write(self, seconds: float) -> None: ...


NULL_OBSERVER = Observer()
