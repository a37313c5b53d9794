"""The routing table: where every routing group is served, as one immutable snapshot that
the fabric versions and every front end swaps in whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pool.errors import NotFound


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """An immutable, versioned snapshot of where every routing group is served.

    ``homes[g]`` is group g's primary FE, or ``""`` when g is not served (pool or group quorum
    lost), and then ``reasons[g]`` says why; ``secondaries[g]`` are the FEs its primary
    replicates to; ``addresses`` maps every UP FE to its address. The fabric builds a new one on
    every change and swaps it in whole; nothing ever mutates one.
    """

    version: int
    homes: tuple[str, ...]
    secondaries: tuple[tuple[str, ...], ...]
    reasons: tuple[str, ...]
    addresses: Mapping[str, str]

    def _check_group(self, group: int) -> None:
        if not (0 <= group < len(self.homes)):
            raise NotFound(
                f"unknown routing group {group}: the pool has groups 0..{len(self.homes) - 1}"
            )

    def home_of(self, group: int) -> str:
        """The FE serving ``group``'s users, or ``""`` when it is not served."""
        self._check_group(group)
        return self.homes[group]

    def reason_of(self, group: int) -> str:
        """Why ``group`` is not served, or ``""`` when it is."""
        self._check_group(group)
        return self.reasons[group]

    def secondaries_of(self, group: int) -> tuple[str, ...]:
        self._check_group(group)
        return self.secondaries[group]

    def address_of(self, fe: str) -> str:
        """The address of UP FE ``fe``; NotFound when it is not up."""
        try:
            return self.addresses[fe]
        except KeyError:
            raise NotFound(
                f"front end {fe!r} is not up in routing table v{self.version}: send the client "
                "to the home of its routing group instead"
            ) from None

    def same_routes(self, other: RoutingTable) -> bool:
        """Whether ``other`` routes exactly like this table (versions aside)."""
        return (
            self.homes == other.homes
            and self.secondaries == other.secondaries
            and self.reasons == other.reasons
            and dict(self.addresses) == dict(other.addresses)
        )
