"""Front ends' own connections (``enterprise.peers``), over real loopback sockets: a batch and
its replies, batches answered out of order, frames split and joined by TCP, a stranger without
the secret refused before anything of it is read, and every failure a link's batch can meet
turned into an error the link makes ``Unavailable``, with the next batch on a new connection."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
from collections.abc import AsyncIterator, Awaitable

import pytest

from enterprise import peers as peers_module
from enterprise.link import Links, OnReply
from enterprise.peers import HEADER, OK, POSTS, PeerAddress, PeerClient, PeerError, PeerServer
from enterprise.wire import Message, Packed, Reply, Views, pack, unpack
from pool.errors import Unavailable
from tests.conftest import DEADLINE
from tests.conftest import eventually as until


class Far:
    """A far front end: a ``PeerServer`` whose answers the test controls."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[Packed]]] = []
        self.hold: dict[object, asyncio.Event] = {}  # first item -> released when set
        self.server = PeerServer(self.answer)

    def answer(self, src: str, batch: list[Packed]) -> tuple[list[Reply], Awaitable[None] | None]:
        """Replies ``("ok", item)``, none to an item starting "quiet"; a held first item's
        replies wait for its gate (as a batch that wrote waits for its replication)."""
        self.batches.append((src, batch))
        if batch[0] == "fail":
            raise RuntimeError("a defect")
        replies = [None if str(item).startswith("quiet") else ("ok", item) for item in batch]
        gate = self.hold.get(batch[0])
        return replies, None if gate is None else gate.wait()  # type: ignore[return-value]

    async def start(self) -> PeerAddress:
        port = await self.server.start("127.0.0.1")
        return "127.0.0.1", port, self.server.secret


def client(addresses: list[PeerAddress | None]) -> tuple[PeerClient, list[str]]:
    asked: list[str] = []

    async def locate(dst: str) -> PeerAddress | None:
        asked.append(dst)
        return addresses[min(len(asked), len(addresses)) - 1]

    return PeerClient("fe1", locate), asked


@contextlib.asynccontextmanager
async def linked(*fars: Far) -> AsyncIterator[tuple[PeerClient, list[str]]]:
    """A client whose destination fe2 is each far side in turn, as ``locate`` is asked again."""
    peers, asked = client([await far.start() for far in fars])
    try:
        yield peers, asked
    finally:
        peers.close()
        for far in fars:
            far.server.close()
            for gate in far.hold.values():
                gate.set()  # no reply left waiting


async def test_a_batch_gets_its_replies_and_the_far_side_knows_who_sent_it() -> None:
    far = Far()
    async with linked(far) as (peers, asked):
        assert await peers.exchange("fe2", ["a", ("b", 2)]) == [("ok", "a"), ("ok", ("b", 2))]
        assert await peers.exchange("fe2", ["c"]) == [("ok", "c")]
        assert far.batches == [("fe1", ["a", ("b", 2)]), ("fe1", ["c"])]
        assert (asked, peers.opened) == (["fe2"], 1)  # one connection, asked for once


async def test_batches_sharing_a_connection_are_answered_out_of_order_to_the_right_caller() -> None:
    far = Far()
    far.hold["slow"] = gate = asyncio.Event()
    async with linked(far) as (peers, _):
        slow = asyncio.ensure_future(peers.exchange("fe2", ["slow"]))
        fast = asyncio.ensure_future(peers.exchange("fe2", ["fast"]))
        assert await fast == [("ok", "fast")]
        assert not slow.done()
        gate.set()
        assert await slow == [("ok", "slow")]
        assert peers.opened == 1  # the two links that wanted it at once share one connection


async def test_frames_cut_anywhere_and_joined_by_tcp_are_read_whole() -> None:
    far = Far()
    host, port, secret = await far.start()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        hello = secret + b"fe9"
        data = HEADER.pack(len(hello), 0, OK) + hello
        for rid, status, batch in ((1, OK, ["x"]), (0, POSTS, ["quiet"]), (2, OK, ["y", "z"])):
            payload = pickle.dumps(batch)
            data += HEADER.pack(len(payload), rid, status) + payload
        for i in range(len(data)):  # a byte at a time
            writer.write(data[i : i + 1])
            await writer.drain()
        answers = {}
        for _ in range(2):
            length, rid, status = HEADER.unpack(await reader.readexactly(HEADER.size))
            answers[rid] = (status, pickle.loads(await reader.readexactly(length)))
        assert answers == {1: (OK, [("ok", "x")]), 2: (OK, [("ok", "y"), ("ok", "z")])}
        assert far.batches == [("fe9", ["x"]), ("fe9", ["quiet"]), ("fe9", ["y", "z"])]
    finally:
        writer.close()
        far.server.close()


@pytest.mark.parametrize(
    "hello",
    [b"\0" * 32 + b"fe1", b"short", b"x" * 5000],
    ids=["wrong-secret", "too-short", "oversized"],
)
async def test_a_connection_without_the_secret_is_closed_and_nothing_of_it_is_read(
    hello: bytes,
) -> None:
    far = Far()
    host, port, _ = await far.start()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        evil = pickle.dumps(["never unpickled"])
        writer.write(HEADER.pack(len(hello), 0, OK) + hello + HEADER.pack(len(evil), 1, OK) + evil)
        await writer.drain()
        async with asyncio.timeout(DEADLINE):
            assert await reader.read() == b""  # closed by the far side, nothing answered
        assert far.batches == []
    finally:
        writer.close()
        far.server.close()


async def test_a_failure_answering_comes_back_as_an_error_and_the_connection_stays() -> None:
    far = Far()
    async with linked(far) as (peers, _):
        with pytest.raises(PeerError, match="fe2: RuntimeError: a defect"):
            await peers.exchange("fe2", ["fail"])
        assert await peers.exchange("fe2", ["after"]) == [("ok", "after")]
        assert peers.opened == 1


async def test_a_far_side_gone_fails_the_waiting_batch_and_the_next_finds_it_again() -> None:
    first, second = Far(), Far()
    first.hold["waits"] = asyncio.Event()
    async with linked(first, second) as (peers, asked):
        waiting = asyncio.ensure_future(peers.exchange("fe2", ["waits"]))
        await until(lambda: bool(first.batches))
        first.server.close()  # the far front end went down
        with pytest.raises(ConnectionError, match="front end fe2"):
            await waiting
        # started again elsewhere: the next batch asks where, and connects there
        assert await peers.exchange("fe2", ["again"]) == [("ok", "again")]
        assert (asked, peers.opened) == (["fe2", "fe2"], 2)
        assert second.batches == [("fe1", ["again"])]


async def test_a_batch_given_up_on_gives_up_its_reply_only() -> None:
    """The main link's batch timing out fails nothing of the replica link's on the same
    connection (under Ray a timed-out call cancelled only itself)."""
    far = Far()
    far.hold["hangs"] = gate = asyncio.Event()
    far.hold["other"] = other_gate = asyncio.Event()
    async with linked(far) as (peers, _):
        other = asyncio.ensure_future(peers.exchange("fe2", ["other"]))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await peers.exchange("fe2", ["hangs"])
        other_gate.set()
        assert await other == [("ok", "other")]
        gate.set()  # its late reply is dropped
        assert await peers.exchange("fe2", ["next"]) == [("ok", "next")]
        assert peers.opened == 1


async def test_a_table_with_the_far_side_down_or_moved_closes_the_connection_to_it() -> None:
    far = Far()
    far.hold["waits"] = asyncio.Event()
    async with linked(far) as (peers, asked):
        peers.set_table({"fe2": "10.0.0.2:5061"})
        await peers.exchange("fe2", ["open"])
        peers.set_table({"fe2": "10.0.0.2:5061", "fe3": "10.0.0.3:5061"})  # no change for fe2
        assert peers.ready("fe2") is not None
        waiting = asyncio.ensure_future(peers.exchange("fe2", ["waits"]))
        await until(lambda: len(far.batches) == 2)
        peers.set_table({"fe3": "10.0.0.3:5061"})  # fe2 down: a dead machine, for all we know
        with pytest.raises(ConnectionError):
            await waiting
        assert peers.ready("fe2") is None
        peers.set_table({"fe2": "10.0.0.2:5061", "fe3": "10.0.0.3:5061"})  # back
        await peers.exchange("fe2", ["back"])  # the next batch asks where it is
        assert peers.ready("fe2") is not None
        peers.set_table({"fe2": "10.0.0.9:5061", "fe3": "10.0.0.3:5061"})  # at another address
        assert peers.ready("fe2") is None
        assert (len(asked), peers.opened) == (2, 2)


async def test_connections_notice_a_far_machine_gone_without_a_word() -> None:
    far = Far()
    async with linked(far) as (peers, _):
        await peers.exchange("fe2", ["open"])
        connection = peers.ready("fe2")
        assert connection is not None
        assert connection.transport is not None
        sock = connection.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            assert timeout == peers_module.DEAD_AFTER * 1000


async def test_a_batch_too_large_for_a_frame_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    far = Far()
    async with linked(far) as (peers, _):
        await peers.exchange("fe2", ["open"])
        monkeypatch.setattr(peers_module, "FRAME_MAX", 1000)
        with pytest.raises(PeerError, match=r"a batch of \d+ bytes \(at most 1000\)"):
            await peers.exchange("fe2", ["x" * 2000])
        assert await peers.exchange("fe2", ["small"]) == [("ok", "small")]
        assert peers.opened == 1


async def test_a_front_end_not_serving_yet_cannot_be_reached() -> None:
    peers, _ = client([None])
    with pytest.raises(ConnectionError, match="fe2 is not serving yet"):
        await peers.exchange("fe2", ["x"])
    assert peers.opened == 0


class DirectTransport:
    """What ``RayTransport`` does with direct links, without Ray."""

    def __init__(self, peers: PeerClient) -> None:
        self.peers = peers

    async def exchange(self, dst: str, src: str, items: list[Message]) -> list[Reply]:
        return await self.peers.exchange(dst, [pack(item) for item in items])

    def post(self, dst: str, src: str, items: list[Message], on_reply: OnReply) -> bool:
        connection = self.peers.ready(dst)
        if connection is None:
            return False
        connection.post(
            [pack(item) for item in items],
            lambda replies: [on_reply(dst, unpack(item), reply) for item, reply in replies],
        )
        return True

    async def fabric(self, method: str, *args: object) -> object:
        raise NotImplementedError

    async def front_end(self, dst: str, method: str, *args: object) -> object:
        raise NotImplementedError


async def test_a_link_over_a_connection_that_breaks_fails_its_requests_as_unavailable() -> None:
    far = Far()
    request = Views(1, (2,))
    far.hold[pack(request)] = asyncio.Event()
    async with linked(far) as (peers, _):
        links = Links(DirectTransport(peers), "fe1", on_reply=lambda dst, item, reply: None)
        pending = links.to("fe2").request(request)
        await until(lambda: bool(far.batches))
        far.server.close()
        with pytest.raises(Unavailable, match="front end fe2 did not answer"):
            await pending


async def test_posts_wait_for_nothing_and_only_replies_worth_acting_on_come_back() -> None:
    far = Far()
    got: list[list[tuple[Packed, Reply]]] = []
    async with linked(far) as (peers, _):
        assert peers.ready("fe2") is None  # no connection yet: the first batch is exchanged
        await peers.exchange("fe2", ["open"])
        connection = peers.ready("fe2")
        assert connection is not None
        connection.post(["quiet-1", "quiet-2"], got.append)
        connection.post(["quiet-3", "loud"], got.append)
        # answered in the order sent: once this is, the posts were, and any reply to them is in
        assert await peers.exchange("fe2", ["last"]) == [("ok", "last")]
        assert got == [[("loud", ("ok", "loud"))]]
        assert [batch for _, batch in far.batches] == [
            ["open"],
            ["quiet-1", "quiet-2"],
            ["quiet-3", "loud"],
            ["last"],
        ]


async def test_a_link_posts_without_a_task_and_its_batches_arrive_in_order() -> None:
    far = Far()
    replied: list[tuple[str, Message, Reply]] = []
    async with linked(far) as (peers, _):
        # no linger: the posts right after the request leave after the loop turn they came in
        links = Links(DirectTransport(peers), "fe1", lambda *r: replied.append(r), linger=0)
        link = links.to("fe2")
        assert await link.request(Views(1, (1,))) == ("ok", pack(Views(1, (1,))))  # connects
        for i in range(2, 5):
            link.post(Views(i, (i,)))
        await asyncio.sleep(0)  # the loop turn after which the batch leaves
        assert (link.busy, link.items, links.tasks) == (False, [], set())
        last = await link.request(Views(9, (9,)))
        assert last == ("ok", pack(Views(9, (9,))))
        assert [batch for _, batch in far.batches] == [
            [pack(Views(1, (1,)))],
            [pack(Views(i, (i,))) for i in range(2, 5)],
            [pack(Views(9, (9,)))],
        ]
        assert [(dst, item) for dst, item, _ in replied] == [
            ("fe2", Views(i, (i,))) for i in range(2, 5)
        ]
        assert links.batches == 3


async def test_under_load_a_link_gathers_what_comes_within_its_linger_into_one_batch() -> None:
    far = Far()
    async with linked(far) as (peers, _):
        await peers.exchange("fe2", ["open"])  # connected: posts leave by ``post``
        links = Links(DirectTransport(peers), "fe1", lambda *r: None, linger=3600.0)
        link = links.to("fe2")
        link.post(Views(1, (1,)))  # an idle link: after this loop turn
        await until(lambda: len(far.batches) == 2)
        link.post(Views(2, (2,)))  # its last batch just left: this one waits for company
        for _ in range(3):
            await asyncio.sleep(0)
        link.post(Views(3, (3,)))
        for _ in range(3):
            await asyncio.sleep(0)
        assert [batch for _, batch in far.batches] == [["open"], [pack(Views(1, (1,)))]]
        assert (link.busy, link.items) == (True, [Views(2, (2,)), Views(3, (3,))])


async def test_a_lingering_batch_leaves_its_linger_after_the_batch_before() -> None:
    far = Far()
    linger = 0.05
    async with linked(far) as (peers, _):
        await peers.exchange("fe2", ["open"])
        links = Links(DirectTransport(peers), "fe1", lambda *r: None, linger=linger)
        link = links.to("fe2")
        link.post(Views(1, (1,)))
        await until(lambda: len(far.batches) == 2)
        first = link.sent_at
        link.post(Views(2, (2,)))
        link.post(Views(3, (3,)))
        await until(lambda: len(far.batches) == 3)
        assert link.sent_at >= first + linger
        assert [batch for _, batch in far.batches][1:] == [
            [pack(Views(1, (1,)))],
            [pack(Views(2, (2,))), pack(Views(3, (3,)))],
        ]
        assert (link.busy, links.batches) == (False, 2)


async def test_a_far_side_that_reads_nothing_stops_the_posts_before_memory_grows() -> None:
    sockets: list[asyncio.StreamWriter] = []

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sockets.append(writer)

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peers, _ = client([("127.0.0.1", port, b"s" * 32)])
    try:
        hanging = asyncio.ensure_future(peers.exchange("fe2", ["never answered"]))
        await until(lambda: peers.ready("fe2") is not None)
        big = ["x" * 100_000]
        for posted in range(10_000):  # noqa: B007 - read after the loop  # at most about a gigabyte, were nothing to stop it
            connection = peers.ready("fe2")
            if connection is None:
                break
            connection.post(big, lambda replies: None)
        else:
            raise AssertionError("the posts never stopped")
        assert posted < 1_000  # the socket's buffers and asyncio's high-water mark, no more
        hanging.cancel()
    finally:
        peers.close()
        for writer in sockets:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_front_end_that_cannot_be_connected_to_says_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    far = Far()
    address = await far.start()
    far.server.close()  # nothing listens there now
    peers, _ = client([address])
    with pytest.raises(ConnectionError, match="cannot connect to front end fe2"):
        await peers.exchange("fe2", ["x"])
    assert "serve with --peer-links ray" in caplog.text


async def test_a_large_batch_read_in_many_pieces_arrives_whole() -> None:
    far = Far()
    async with linked(far) as (peers, _):
        big = ["b" * 3_000_000, ("c", "d" * 2_000_000)]
        assert await peers.exchange("fe2", big) == [("ok", item) for item in big]


async def test_a_connection_that_says_nothing_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "HELLO_TIMEOUT", 0.05)
    far = Far()
    host, port, _ = await far.start()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(DEADLINE):
            assert await reader.read() == b""
        await until(lambda: not far.server.connections)
    finally:
        writer.close()
        far.server.close()
