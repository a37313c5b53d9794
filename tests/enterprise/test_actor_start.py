"""``FrontEndActor.start`` on its own (the class, on this loop, without Ray): asked twice it
starts once, and a start that fails on a taken port is undone and can be asked again, losing
none of the endpoints its local store says were lost with the front end. The pool-level
restart is tested on a real Ray cluster in test_pool_ray.py; a loaded machine, where the
fabric gives up waiting on a start and asks again, cannot be made to happen there on cue."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from enterprise.actors import FrontEndActor, node_address
from enterprise.local_store import LocalReplicaStore, store_path
from enterprise.options import PoolOptions
from pool.cdr import RegistrationRecord


def _taken_port() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def _free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def test_a_second_start_while_one_runs_waits_for_it(tmp_path: Path) -> None:
    actor = FrontEndActor("fe1", PoolOptions(data_dir=tmp_path), fabric=None)
    first, second = await asyncio.gather(
        actor.start([], 0, 0, True, 0.0), actor.start([], 0, 0, True, 0.0)
    )
    try:
        assert first == second
        assert first[0].startswith("127.0.0.1:")
        assert first[1].startswith("127.0.0.1:")
    finally:
        actor.node.store.cdrs = []  # no fabric here to flush them to
        await actor.stop()


async def test_a_start_failing_on_a_taken_port_is_undone_and_can_be_asked_again(
    tmp_path: Path,
) -> None:
    holder = _taken_port()
    metrics_port = holder.getsockname()[1]
    opts = PoolOptions(data_dir=tmp_path, metrics_base_port=metrics_port)  # the user's choice
    local = LocalReplicaStore(store_path(tmp_path, "fe1"), durability=opts.durability)
    local.register("ep-1", "sip:user1@contoso.com", "pc", 100.0)
    local.close()
    with _taken_port() as spare:
        grpc_port = spare.getsockname()[1]  # free again once closed
    actor = FrontEndActor("fe1", opts, fabric=None)
    with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{metrics_port}"):
        await actor.start([], grpc_port, metrics_port, False, 200.0)
    assert actor.server is None
    assert actor.local is None
    assert _free(grpc_port), "the failed start's gRPC server still holds its port"
    holder.close()
    address, metrics_address, _ = await actor.start([], grpc_port, metrics_port, False, 200.0)
    try:
        assert address == f"127.0.0.1:{grpc_port}"
        assert metrics_address == f"127.0.0.1:{metrics_port}"
        records = [record for _, record in actor.node.store.cdrs]  # for the fabric, next flush
        assert all(isinstance(r, RegistrationRecord) for r in records)
        assert [(r.endpoint_id, r.deregister_time) for r in records] == [  # type: ignore[union-attr]
            ("ep-1", 200.0)
        ]
    finally:
        actor.node.store.cdrs = []  # no fabric here to flush them to
        await actor.stop()


async def test_a_free_port_it_had_that_was_taken_meanwhile_gives_way_to_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Given any free port (the default), a front end restarted on the metrics port it had
    finds it taken by another socket: it serves its metrics on another free port (the fabric
    records the address it returns) instead of failing to come back."""
    actor = FrontEndActor("fe1", PoolOptions(data_dir=tmp_path), fabric=None)
    with _taken_port() as holder:
        taken = holder.getsockname()[1]
        _, metrics_address, _ = await actor.start([], 0, taken, False, 0.0)
    try:
        assert metrics_address.startswith("127.0.0.1:")
        assert metrics_address != f"127.0.0.1:{taken}"
        assert f"cannot serve metrics on 127.0.0.1:{taken}" in caplog.text
    finally:
        actor.node.store.cdrs = []
        await actor.stop()


async def test_the_peer_address_is_given_only_while_the_front_end_serves(tmp_path: Path) -> None:
    actor = FrontEndActor("fe1", PoolOptions(data_dir=tmp_path), fabric=None)
    assert await actor.peer_address() is None  # not started: the peers' batches fail at once
    await actor.start([], 0, 0, True, 0.0)
    try:
        address = await actor.peer_address()
        assert address is not None
        host, port, secret = address
        assert host == node_address("127.0.0.1")  # Ray's address of this node, when Ray is up
        assert len(secret) == 32
        assert not _free(port, host)  # listening
    finally:
        actor.node.store.cdrs = []
        await actor.stop()
    assert await actor.peer_address() is None
    assert _free(port, host)


async def test_front_ends_asked_for_ray_calls_open_no_port_of_their_own(tmp_path: Path) -> None:
    actor = FrontEndActor("fe1", PoolOptions(data_dir=tmp_path, peer_links="ray"), fabric=None)
    await actor.start([], 0, 0, True, 0.0)
    try:
        assert actor.transport.peers is None
        assert await actor.peer_address() is None
    finally:
        actor.node.store.cdrs = []
        await actor.stop()


def test_an_unknown_way_of_passing_messages_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="peer_links must be one of direct, ray, not 'udp'"):
        PoolOptions(peer_links="udp")
