"""Front end to front end over TCP connections of their own: a link's batch without a Ray call.

A Ray actor call costs about 2 ms of processor across its two ends whatever it carries (measured
on a 2-core machine); a batch written to a socket the two front ends keep open costs a write and
a read. ``PeerServer`` listens beside a front end's gRPC server, on its event loop, and answers
each batch as the actor's ``exchange`` would. ``PeerClient`` keeps one connection per
destination, opened when first needed with the address and the secret the destination gives
through Ray (``FrontEndActor.peer_address``): only a member of the Ray cluster learns it, and a
connection that does not open with it is closed after its first frame, nothing else read.

Frames: a header (payload length, request id, status) then the payload, a pickled list of
packed messages one way and of their replies the other (unpickled only once the connection
proved it knows the secret). The far side handles each batch as it arrives, in order (only
the replies of a batch that wrote wait, for its replication). A batch with requests waits for
its replies, which come back by request id (a destination's main link and its replica link
share the connection); a batch of posts only (most of the traffic: events for stand-ins)
waits for nothing, and only the replies worth acting on come back (an endpoint gone, a watch
to drop), with the posts they answer. TCP keeps a link's batches in the order it sent them;
a connection whose far side reads slower than batches come (asyncio's high-water mark on its
buffer) takes no more posts, and the link waits on an exchange instead.

Failures, as for a Ray call: a connection that closes or breaks fails every batch waiting on it
(``ConnectionError``; the link makes it ``Unavailable``), and the next batch asks the
destination's address again (a front end started again listens elsewhere) and opens a new one.
A batch the link gave up waiting for gives up its own reply only (the other link's batches on
the connection are not failed with it). A far machine gone without a word (no FIN, no RST)
drops its connections within ``DEAD_AFTER`` (TCP keepalive and user time-out), and a routing
table that has a front end down, or back at another address, closes the connection to it at
once, so posts are not written for long into a dead machine. Nothing queues without bound.

A front end listens where Ray says its node is (the address the other nodes reach it at, as
Ray's own ports do), whatever the clients' ``--host``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import pickle
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping

from enterprise.wire import Packed, Reply

log = logging.getLogger("poolsim.enterprise")

HEADER = struct.Struct("!IQB")  # payload length, request id, status
OK, ERROR = 0, 1  # a batch waiting for its replies, and its replies or the far side's error
POSTS, POSTS_REPLIED = 2, 3  # a batch of posts, and the replies to them worth acting on
HELLO_MAX = 1024  # bytes a connection's first frame (secret + name) may take
HELLO_TIMEOUT = 10.0  # seconds a connection may take to send it
DEAD_AFTER = 10.0  # seconds without an answer from a far machine before its connection drops
FRAME_MAX = 1 << 31  # bytes a batch or its replies may take
SECRET_BYTES = 32

#: (host, port, secret) a destination listens on, or None when it is not serving
PeerAddress = tuple[str, int, bytes]
#: the far side's answer to a batch from ``src``, handled at once: its replies, and what to
#: wait for before giving them (``FrontEndNode.answer_now``)
Answer = Callable[[str, list[Packed]], tuple[list[Reply], Awaitable[None] | None]]
#: told the replies worth acting on to posts: (packed post, reply) each
OnPostReplies = Callable[[list[tuple[Packed, Reply]]], None]


class PeerError(Exception):
    """The far front end failed answering a batch (an error of ours, not a domain error)."""


class _Frames(asyncio.Protocol):
    """Splits the byte stream into frames; ``frame`` is told each."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()  # the start of a frame not yet whole
        self.need = 0  # bytes the buffer holds once that frame is (0: the header decides)
        self.limit = FRAME_MAX

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.buffer:  # a large frame comes in many reads: joined once it is whole
            self.buffer += data
            if len(self.buffer) < self.need:
                return
            data, self.buffer = bytes(self.buffer), bytearray()
        view = memoryview(data)
        at, size, end = 0, HEADER.size, len(data)
        self.need = size
        while end - at >= size:
            length, rid, status = HEADER.unpack_from(view, at)
            if length > self.limit:
                self.refuse(f"a frame of {length} bytes (at most {self.limit})")
                return
            stop = at + size + length
            if stop > end:
                self.need = size + length
                break
            self.frame(rid, status, view[at + size : stop])
            if self.transport is None or self.transport.is_closing():
                return
            at = stop
        if at < end:
            self.buffer = bytearray(view[at:])

    def frame(self, rid: int, status: int, payload: memoryview) -> None:
        raise NotImplementedError

    def refuse(self, why: str) -> None:
        log.warning("peer connection closed: %s", why)
        if self.transport is not None:
            self.transport.abort()

    def send(self, rid: int, status: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(HEADER.pack(len(payload), rid, status) + payload)


class _Answering(_Frames):
    """One peer's connection to this front end: a hello with the secret, then batches."""

    def __init__(self, server: PeerServer) -> None:
        super().__init__()
        self.server = server
        self.src: str | None = None
        self.limit = HELLO_MAX
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)
        asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._no_hello)

    def _no_hello(self) -> None:
        if self.src is None and self.transport is not None:
            self.refuse(f"no hello within {HELLO_TIMEOUT:g} s")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None

    def frame(self, rid: int, status: int, payload: memoryview) -> None:
        if self.src is None:
            secret, name = bytes(payload[:SECRET_BYTES]), bytes(payload[SECRET_BYTES:])
            if not hmac.compare_digest(secret, self.server.secret):
                self.refuse("the first frame did not carry this front end's secret")
                return
            self.src, self.limit = name.decode(), FRAME_MAX
            return
        batch: list[Packed] = pickle.loads(payload)
        try:  # handled now, in the order batches arrive
            replies, replicated = self.server.answer(self.src, batch)
        except Exception as exc:  # a defect here: the link turns it into Unavailable
            log.exception("answering a batch from %s", self.src)
            if status == OK:
                self.send(rid, ERROR, f"{type(exc).__name__}: {exc}".encode())
            return
        if replicated is None:
            self._reply(rid, status, batch, replies)
            return
        task = asyncio.get_running_loop().create_task(
            self._reply_once(replicated, rid, status, batch, replies)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply_once(
        self,
        replicated: Awaitable[None],
        rid: int,
        status: int,
        batch: list[Packed],
        replies: list[Reply],
    ) -> None:
        await replicated
        self._reply(rid, status, batch, replies)

    def _reply(self, rid: int, status: int, batch: list[Packed], replies: list[Reply]) -> None:
        if status == OK:
            self.send(rid, OK, pickle.dumps(replies, 5))
            return
        worth = [
            (item, reply) for item, reply in zip(batch, replies, strict=True) if reply is not None
        ]
        if worth:  # most posts' replies are None: nothing goes back for them
            self.send(rid, POSTS_REPLIED, pickle.dumps(worth, 5))


class PeerServer:
    """Where the other front ends' batches come in (see the module docstring)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.secret = secrets.token_bytes(SECRET_BYTES)
        self.connections: set[_Answering] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Answering(self), host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        """Stop listening and drop every connection (the peers' batches fail at once)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()


class _Calling(_Frames):
    """This front end's connection to one destination: batches out, replies back."""

    def __init__(self, dst: str) -> None:
        super().__init__()
        self.dst = dst
        self.waiting: dict[int, asyncio.Future[list[Reply]]] = {}
        self.ids = itertools.count(1)
        self.lost: Exception | None = None
        self.paused = False  # the far side reads slower than batches are written
        self.on_post_replies: OnPostReplies = lambda replies: None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost = ConnectionError(f"the connection to front end {self.dst} closed")
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(self.lost)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def frame(self, rid: int, status: int, payload: memoryview) -> None:
        if status == POSTS_REPLIED:
            self.on_post_replies(pickle.loads(payload))
            return
        future = self.waiting.pop(rid, None)
        if future is None or future.done():
            return  # given up on (the connection is closing)
        if status == OK:
            future.set_result(pickle.loads(payload))
        else:
            future.set_exception(PeerError(f"front end {self.dst}: {bytes(payload).decode()}"))

    def post(self, batch: list[Packed], on_replies: OnPostReplies) -> None:
        """Send a batch of posts and wait for nothing: the far side handles batches in the
        order they arrive, and sends back only the replies worth acting on, to
        ``on_replies``. Lost with the connection, as a post may be."""
        self.on_post_replies = on_replies  # the same for every post: the links of one front end
        self.send(0, POSTS, _dumps(batch))

    @property
    def usable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()

    async def call(self, batch: list[Packed]) -> list[Reply]:
        rid = next(self.ids)
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        payload = _dumps(batch)
        self.waiting[rid] = future
        self.send(rid, OK, payload)
        try:
            return await future
        except asyncio.CancelledError:  # the link gave up on this batch only (its reply dropped)
            self.waiting.pop(rid, None)
            raise


def _dumps(batch: list[Packed]) -> bytes:
    payload = pickle.dumps(batch, 5)
    if len(payload) > FRAME_MAX:  # the far side would close the connection on it
        raise PeerError(f"a batch of {len(payload)} bytes (at most {FRAME_MAX})")
    return payload


def _keep_alive(sock: socket.socket) -> None:
    """A far machine gone without a word (no FIN, no RST) drops the connection within about
    ``DEAD_AFTER`` seconds, sending or idle, where the system has the options (Linux)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_USER_TIMEOUT", int(DEAD_AFTER * 1000)),  # data unacknowledged this long
        ("TCP_KEEPIDLE", int(DEAD_AFTER / 2)),
        ("TCP_KEEPINTVL", 1),
        ("TCP_KEEPCNT", int(DEAD_AFTER / 2)),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class PeerClient:
    """This front end's connections to the others (see the module docstring). ``locate`` gives
    a destination's ``PeerAddress`` (through Ray)."""

    def __init__(self, src: str, locate: Callable[[str], Awaitable[PeerAddress | None]]) -> None:
        self.src = src
        self.locate = locate
        self.connections: dict[str, _Calling] = {}
        self.opening: dict[str, asyncio.Future[_Calling]] = {}
        self.opened = 0  # connections opened, for tests and the curious
        self.homes: dict[str, str] = {}  # front end -> its address in the last table
        self.closed = False

    async def exchange(self, dst: str, batch: list[Packed]) -> list[Reply]:
        connection = self.connections.get(dst)
        if connection is None or not connection.usable:
            connection = await self._connection(dst)
        return await connection.call(batch)

    def ready(self, dst: str) -> _Calling | None:
        """The open connection to ``dst`` if a batch of posts can go on it now, without
        waiting for anything (none yet, or the far side reading slower: ``exchange``)."""
        connection = self.connections.get(dst)
        if connection is None or connection.paused or not connection.usable:
            return None
        return connection

    async def _connection(self, dst: str) -> _Calling:
        opening = self.opening.get(dst)
        if opening is None:  # one connection for all the links that want one now
            opening = self.opening[dst] = asyncio.ensure_future(self._open(dst))
            opening.add_done_callback(lambda _: self.opening.pop(dst, None))
        return await asyncio.shield(opening)

    async def _open(self, dst: str) -> _Calling:
        address = await self.locate(dst)
        if address is None:
            raise ConnectionError(f"front end {dst} is not serving yet")
        host, port, secret = address
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(DEAD_AFTER):  # a host gone silent never answers a SYN
                _, connection = await loop.create_connection(lambda: _Calling(dst), host, port)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "%s cannot connect to front end %s at %s:%d (%s): if a firewall stands between "
                "the Ray nodes, serve with --peer-links ray",
                self.src,
                dst,
                host,
                port,
                exc,
            )
            raise ConnectionError(f"cannot connect to front end {dst}: {exc}") from exc
        assert connection.transport is not None
        if self.closed:
            connection.transport.abort()
            raise ConnectionError(f"{self.src} is stopping")
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            _keep_alive(sock)
        connection.send(0, OK, secret + self.src.encode())
        self.connections[dst] = connection
        self.opened += 1
        return connection

    def set_table(self, addresses: Mapping[str, str]) -> None:
        """A new routing table (``addresses``: every front end up): a connection to one the
        pool took for down, or that came back at another address, is closed (its next batch
        asks where it listens now) instead of writing to what may be a dead machine."""
        for dst in list(self.connections):
            address = addresses.get(dst)
            if address is None or address != self.homes.get(dst, address):
                self._drop(dst)
        self.homes = dict(addresses)

    def _drop(self, dst: str) -> None:
        connection = self.connections.pop(dst, None)
        if connection is not None and connection.transport is not None:
            connection.transport.abort()

    def close(self) -> None:
        self.closed = True
        for dst in list(self.connections):
            self._drop(dst)
