"""Reading a session's event stream in tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.client import Session

WAIT = 20.0


class Inbox:
    """Collects a session's events in the background; ``next(kind)`` waits for one."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.events: list[pb.Event] = []
        self._seen = 0
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            async for event in self.session.events():
                self.events.append(event)
                self._changed.set()

    async def next(self, kind: str, within: float = WAIT) -> pb.Event:
        """The next unread event of ``kind`` (events of other kinds before it are skipped)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while True:
            while self._seen < len(self.events):
                event = self.events[self._seen]
                self._seen += 1
                if event.WhichOneof("kind") == kind:
                    return event
            self._changed.clear()
            left = end - loop.time()
            if left <= 0:
                kinds = [e.WhichOneof("kind") for e in self.events]
                raise AssertionError(f"no {kind} event within {within} s; got {kinds}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def inbox(session: Session) -> AsyncIterator[Inbox]:
    box = Inbox(session)
    try:
        yield box
    finally:
        await box.close()
