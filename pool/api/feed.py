"""An endpoint's event queue as one stream reads it: the part ``Events`` and ``Session`` share.

A stream attaches by setting the queue's ``waker`` (an older stream of the endpoint sees it was
replaced and ends); it sleeps on one future while it has nothing to write, woken once however
many events arrive before it runs again (a wake while it writes makes its next sleep return at
once, so it need not look at the queue again after every write). When the engine drops the
reader for not reading (flow control, a hard close), the waker cancels the stream's task, so a
write blocked by that reader ends there and the stream answers ``FlowControlled``.
"""

from __future__ import annotations

import asyncio

from pool.engine import Engine
from pool.errors import ResourceExhausted
from pool.registrar import Endpoint

STREAM_BATCH = 256  # events drained at once


class FlowControlled(ResourceExhausted):
    """The endpoint was dropped for not reading its events."""


class Feed:
    def __init__(self, engine: Engine, ep: Endpoint) -> None:
        self.engine = engine
        self.ep = ep
        self.queue = queue = ep.queue
        previous = queue.waker
        if previous is not None:
            previous()  # an older stream of this endpoint: it sees it was replaced and ends
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        # The future this stream sleeps on while it has nothing to write (None while it works)
        self._idle: asyncio.Future[None] | None = None
        self._woken = False  # woken while it worked: its next sleep returns at once
        self.waker = self._wake  # one bound method, compared by identity
        queue.waker = self.waker
        engine.open_stream(ep)

    def _wake(self) -> None:
        idle = self._idle
        if idle is None:
            self._woken = True
        elif not idle.done():
            idle.set_result(None)
        if self.queue.hard_close and self._task is not None:
            self._task.cancel()  # the reader stopped reading: do not wait for its writes

    def poke(self) -> None:
        """Something other than an event is ready to write (a session's reply)."""
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    @property
    def attached(self) -> bool:
        """False once a newer stream of the endpoint took the queue."""
        return self.queue.waker is self.waker

    async def sleep(self) -> None:
        """Until woken; at once if it was woken since it last slept (an event arrived, the
        queue closed or a newer stream took it while this one was writing)."""
        if self._woken:
            self._woken = False
            return
        self._idle = self._loop.create_future()
        try:
            await self._idle
        finally:
            self._idle = None

    def flow_controlled(self) -> FlowControlled:
        ep = self.ep
        return FlowControlled(
            f"{ep.uri} (endpoint {ep.id}) read nothing for "
            f"{self.engine.config.timers.flow_control_timeout:g} s while its event queue was "
            "full: signed out (flow-controlled); sign in again"
        )

    def close(self) -> None:
        if self.queue.waker is self.waker:
            self.queue.waker = None
        self.engine.close_stream(self.ep)
