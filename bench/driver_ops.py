"""What each planned operation does for a simulated user: presence (publish, poll, subscribe)
and conversations (two-party IM sessions, conferences, their messages and typing notices);
at the end, reading back the ledger of acknowledged writes.

``Operations`` is a part of ``bench.driver.Driver`` (its base): it uses the driver's sessions,
recorder, schedule clock and ``_timed``, which the driver defines.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bench.driver_config import (
    ACCEPT_WAIT_S,
    LEDGER_TRIES,
    OP_NAME,
    PUBLISHED,
    READ_RETRY_S,
    DriverConfig,
    Ledger,
)
from bench.model import UserModel
from bench.schedule import Planned, Population, pick_size
from bench.stats import Recorder
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.client import Session
from pool.errors import PoolError

if TYPE_CHECKING:
    from bench.failover import Failover


class Operations:
    cfg: DriverConfig
    model: UserModel
    pop: Population
    rec: Recorder
    rng: random.Random
    ledger: Ledger
    sessions: dict[int, list[Session]]
    users: list[int]
    accepted: dict[str, asyncio.Event]
    sent_at: dict[str, float]
    sent_in: dict[str, str]
    members: dict[str, tuple[int, ...]]
    conferences_open: int
    failover: Failover | None
    enterprise: bool
    stopping: bool
    end_at: float
    _tag: int

    def now(self) -> float:
        raise NotImplementedError

    def uri(self, user: int) -> str:
        raise NotImplementedError

    async def until(self, at: float) -> None:
        raise NotImplementedError

    async def _timed(
        self,
        name: str,
        at: float,
        call: Awaitable[object],
        session: Session | None = None,
        conversation: str = "",
    ) -> object | None:
        raise NotImplementedError

    # --- presence ---

    def _choose(self, mix: tuple[tuple[int, float], ...]) -> int:
        return pick_size(mix, self.rng)

    async def _publish(self, op: Planned) -> None:
        s = self.sessions[op.user][0]
        x = self.rng.random()
        availability = 3500
        for value, weight in PUBLISHED:
            x -= weight
            if x < 0:
                availability = value
                break
        note = f"note {self.rng.randrange(1000)}"
        request = pb.PublishPresenceRequest(
            source=pb.PRESENCE_SOURCE_USER, availability=availability, note=note
        )
        call = s.call("PublishPresence", request)  # the reply is not read: not converted
        if await self._timed("publish", op.at, call, s) is not None:
            self.ledger.acknowledged(op.user, (availability, note))
        else:
            self.ledger.failed(op.user, (availability, note))

    def _some_users(self, user: int, n: int) -> list[str]:
        contacts = self.pop.contacts[user]
        if len(contacts) >= n:
            picks = self.rng.sample(contacts, n)
        else:
            picks = [self.rng.randrange(self.pop.users) for _ in range(n)]
        return [self.uri(p) for p in picks]

    async def _poll(self, op: Planned) -> None:
        s = self.sessions[op.user][0]
        await self._timed(
            "poll",
            op.at,
            s.call(  # the presences are not read: not converted
                "GetPresence",
                pb.GetPresenceRequest(
                    user_uris=self._some_users(op.user, self._choose(self.model.poll_sizes))
                ),
            ),
            s,
        )

    async def _subscribe(self, op: Planned) -> None:
        s = self.sessions[op.user][0]
        expires = max(1, int(self.model.short_subscription_s / self.cfg.speedup))
        request = pb.SubscribeRequest(
            user_uris=self._some_users(op.user, 1), expires_seconds=expires
        )
        call = s.call("Subscribe", request)
        await self._timed("subscribe", op.at, call, s)

    # --- conversations ---

    def _partners(self, user: int, n: int) -> list[int]:
        """Up to ``n`` signed-in contacts of ``user`` played by this driver."""
        candidates = [c for c in self.pop.contacts[user] if c in self.sessions]
        if len(candidates) < n:
            candidates = [u for u in self.users if u != user and u in self.sessions]
        return self.rng.sample(candidates, min(n, len(candidates)))

    def _body(self) -> tuple[str, str]:
        self._tag += 1
        tag = f"#{self._tag}"
        filler = "x" * max(0, self.model.message_bytes - len(tag) - 1)
        return tag, f"{tag} {filler}"

    async def _send(self, s: Session, conversation_id: str, at: float) -> bool:
        cid = conversation_id
        if self.model.typing_per_message:
            await self._timed("typing", at, s.set_typing(cid, True), s, cid)
        tag, body = self._body()
        self.sent_at[tag] = self.now()
        self.sent_in[tag] = cid
        ok = await self._timed("send", at, s.send_message(cid, body), s, cid) is not None
        if ok:
            self.rec.count("im_messages_sent")
        else:
            self.sent_at.pop(tag, None)
            self.sent_in.pop(tag, None)
        if self.model.typing_per_message:
            await self._timed("typing", self.now(), s.set_typing(cid, False), s, cid)
        return ok

    async def _wait_accepted(self, conversation_id: str) -> bool:
        event = self.accepted.setdefault(conversation_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), ACCEPT_WAIT_S)
        except TimeoutError:
            return False
        return True

    async def _im_session(self, op: Planned) -> None:
        partners = self._partners(op.user, 1)
        if not partners:
            self.rec.not_started(OP_NAME[op.kind], op.at)
            return
        caller = self.sessions[op.user][0]
        callee = self.sessions[partners[0]][0]
        self.rec.count("im_sessions_attempted")
        tag, body = self._body()
        self.sent_at[tag] = self.now()
        conv = await self._timed(
            "im-invite",
            op.at,
            caller.create_conversation([self.uri(partners[0])], first_message=body),
            caller,
        )
        if conv is None or not hasattr(conv, "conversation_id"):
            self.sent_at.pop(tag, None)
            return
        cid = conv.conversation_id
        self.members[cid] = (op.user, partners[0])
        if tag in self.sent_at:
            self.sent_in[tag] = cid
        self.rec.count("im_messages_sent")
        if self.model.typing_per_message:  # the first message's typing notices (SPEC 7)
            await self._timed("typing", self.now(), caller.set_typing(cid, True), caller, cid)
            await self._timed("typing", self.now(), caller.set_typing(cid, False), caller, cid)
        try:
            await self._im_messages(op, cid, caller, callee)
        finally:
            self._ended(cid)

    async def _im_messages(self, op: Planned, cid: str, caller: Session, callee: Session) -> None:
        if not await self._wait_accepted(cid):
            with contextlib.suppress(PoolError):
                await caller.leave(cid)
            return
        self.rec.count("im_sessions_established")
        interval = self.model.message_interval_s / self.cfg.speedup
        for k in range(1, self.model.messages_per_session):
            at = op.at + k * interval
            if at >= self.end_at or self.stopping:
                break
            await self.until(at)
            if not await self._send(caller if k % 2 == 0 else callee, cid, at):
                break
        with contextlib.suppress(PoolError):
            await caller.leave(cid)

    def _ended(self, cid: str) -> None:
        """Forget a conversation that ended (kept to the end of a fail-over run)."""
        self.accepted.pop(cid, None)
        if self.failover is None:
            self.members.pop(cid, None)

    async def _conference(self, op: Planned) -> None:
        size = self._choose(self.model.conference_sizes)
        others = self._partners(op.user, size - 1)
        if len(others) < 2:
            self.rec.not_started(OP_NAME[op.kind], op.at)
            return
        organizer = self.sessions[op.user][0]
        conv = await self._timed(
            "conference-create",
            op.at,
            organizer.create_conversation([self.uri(u) for u in others], subject="group IM"),
            organizer,
        )
        if conv is None or not hasattr(conv, "conversation_id"):
            return
        cid = conv.conversation_id
        self.members[cid] = (op.user, *others)
        self.rec.count("conferences")
        if op.remaining < 1.0:
            self.rec.count("conferences_in_progress_at_sign_in")
        self.conferences_open += 1
        try:
            await self._conference_messages(
                op, cid, [organizer, *(self.sessions[u][0] for u in others)]
            )
        finally:
            self.conferences_open -= 1
            self._ended(cid)

    def conference_length(self, op: Planned) -> float:
        """How long the conference planned as ``op`` lasts (seconds): what is left of it
        (``op.remaining``: all of it, or what a conference in progress at the organizer's
        sign-in has left)."""
        return op.remaining * self.model.conference_minutes * 60 / self.cfg.speedup

    async def _conference_messages(self, op: Planned, cid: str, members: list[Session]) -> None:
        """Each member's messages at random times over what is left of the conference's
        length; the conference lasts that out (or the run), then everyone leaves."""
        length = self.conference_length(op)
        per_member = self.model.messages_per_conference_user * op.remaining
        sends = sorted(
            (op.at + self.rng.uniform(0, length), m)
            for m in range(len(members))
            for _ in range(int(per_member) + (self.rng.random() < per_member % 1))
        )
        for at, who in sends:
            if at >= self.end_at or self.stopping:
                break
            await self.until(at)
            await self._send(members[who], cid, at)
        if not self.stopping:
            await self.until(min(op.at + length, self.end_at))
        for member in members:
            with contextlib.suppress(PoolError):
                await member.leave(cid)

    # --- the ledger ---

    async def verify_ledger(self) -> None:
        """Read back every acknowledged manual presence; count any that was lost.

        A value tried after the acknowledged one, whose call failed, may have been applied: it
        is no loss. After a fail-over the session signs in again by itself; a read that still
        fails is tried again (``LEDGER_TRIES``) before it counts as unreadable."""
        affected = self.failover.affected_users if self.failover is not None else set()
        for user, acked in self.ledger.presence.items():
            sessions = self.sessions.get(user)
            if not sessions:
                continue
            me = None
            for attempt in range(LEDGER_TRIES):
                try:
                    me = (await sessions[0].get_presence([self.uri(user)]))[0]
                    break
                except PoolError:
                    if not self.enterprise or attempt == LEDGER_TRIES - 1:
                        break
                    await asyncio.sleep(READ_RETRY_S)
            if me is None:
                self.rec.count("ledger_unreadable")
                continue
            self.rec.count("ledger_checked")
            if user in affected:
                self.rec.count("ledger_checked_affected")
            seen = (me.availability, me.note)
            if seen != acked:
                if seen in self.ledger.uncertain.get(user, ()):
                    self.rec.count("ledger_unacknowledged_applied")
                elif user in self.ledger.overflowed:
                    self.rec.count("ledger_unverifiable")
                else:
                    self.rec.count("ledger_lost")
