"""Fixtures of the domain-tier tests: one engine over a MemoryStore and a FakeClock.

Nothing here sleeps: time moves only with ``Sim.advance`` (the fake clock, then a tick).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from pool.clock import FakeClock
from pool.config import EngineConfig
from pool.directory import User
from pool.engine import Engine
from pool.events import ChatMessage, Event
from pool.registrar import Endpoint
from pool.store import MemoryStore

PASSWORD = "s3cret-Passw0rd"
DOMAIN = "contoso.com"
OTHER_DOMAIN = "fabrikam.com"

ALICE = "sip:user0@contoso.com"
BOB = "sip:user1@contoso.com"
CAROL = "sip:user2@contoso.com"
DAVE = "sip:user3@contoso.com"
ERIN = "sip:user4@contoso.com"
FRANK = "sip:user5@contoso.com"
EXTERNAL = "sip:ext0@fabrikam.com"

E = TypeVar("E")


def of_type(events: list[Event], cls: type[E]) -> list[E]:
    """The events of one type, in order."""
    return [e for e in events if isinstance(e, cls)]


class Sim:
    """An engine with six users of contoso.com (user0..user5) and two of fabrikam.com."""

    def __init__(self, config: EngineConfig) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.engine = Engine(config, self.store, self.clock)
        self.engine.provision("user", DOMAIN, 6, 0, PASSWORD)
        self.engine.provision("ext", OTHER_DOMAIN, 2, 0, PASSWORD)

    def provision(self, prefix: str, count: int, domain: str = DOMAIN) -> list[str]:
        result = self.engine.provision(prefix, domain, count, 0, PASSWORD)
        assert result.created == count
        return [f"sip:{prefix}{i}@{domain}" for i in range(count)]

    def user(self, uri: str) -> User:
        return self.engine.directory.require(uri)

    def sign_in(self, uri: str, device: str = "desktop") -> Endpoint:
        return self.engine.sign_in(self.engine.check_password(uri, PASSWORD), device)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.tick()

    def drain(self, ep: Endpoint) -> list[Event]:
        return self.engine.drain(ep, 100_000)

    def two_party(self, inviter: Endpoint, invitee: Endpoint, first: str = "hello") -> str:
        """A two-party conversation the invitee accepted; both queues are drained after."""
        conv, _ = self.engine.create_conversation(inviter, [invitee.uri], "", ChatMessage(first))
        self.engine.accept(invitee, conv.id)
        self.drain(inviter)
        self.drain(invitee)
        return conv.id


SimFactory = Callable[..., Sim]


@pytest.fixture
def make_sim() -> SimFactory:
    """Build a Sim; keyword arguments replace EngineConfig settings."""

    def make(**changes: Any) -> Sim:
        return Sim(EngineConfig(password_iterations=1).replace(**changes))

    return make


@pytest.fixture
def sim(make_sim: SimFactory) -> Sim:
    return make_sim()
