"""Prometheus metrics after exactly known calls, label hygiene, and a promtool lint."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from prometheus_client import generate_latest

from pool import errors
from pool.client import Session
from tests.conftest import StandardPool, uri


async def _known_traffic(pool: StandardPool) -> list[Session]:
    """3 sign-ins, 1 failed sign-in, 2 publishes, 1 poll of 2 users, a two-party IM with 3
    messages after the invitee accepted, and 1 call rejected as INVALID_ARGUMENT."""
    alice, bob, carol = [await pool.sign_in(i) for i in range(3)]
    with pytest.raises(errors.Unauthenticated):
        await pool.client.sign_in(uri(3), "not-the-password")
    await alice.publish_presence(6500, "in-a-meeting")
    await bob.publish_presence(15500, "off-work", note="back at 3")
    polled = await carol.get_presence([uri(0), uri(1)])
    assert [p.availability for p in polled] == [6500, 15500]
    conv = await alice.create_conversation([uri(1)], subject="metrics")
    await bob.accept(conv.conversation_id)
    sent = [await alice.send_message(conv.conversation_id, f"m{i}") for i in range(3)]
    assert [s.sequence for s in sent] == [1, 2, 3]
    with pytest.raises(errors.InvalidArgument, match="not a SIP URI"):
        await carol.get_presence(["alice"])
    # an aborted call's status reaches the client before the server has recorded it
    count = "poolsim_rpc_duration_seconds_count"
    await _settled(pool, count, {"method": "SignIn", "code": "UNAUTHENTICATED"}, 1.0)
    await _settled(pool, count, {"method": "GetPresence", "code": "INVALID_ARGUMENT"}, 1.0)
    return [alice, bob, carol]


async def _settled(pool: StandardPool, name: str, labels: dict[str, str], want: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while pool.metric(name, labels) < want and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def test_counters_and_gauges_after_known_calls(standard: StandardPool) -> None:
    await _known_traffic(standard)
    m = standard.metric
    expected = {
        ("poolsim_logon_attempts_total", ()): 4.0,
        ("poolsim_logon_failures_total", (("reason", "bad-credentials"),)): 1.0,
        ("poolsim_presence_publishes_total", ()): 2.0,
        ("poolsim_presence_polls_total", ()): 1.0,
        ("poolsim_presence_polled_users_total", ()): 2.0,
        ("poolsim_im_sessions_attempted_total", ()): 1.0,
        ("poolsim_im_sessions_established_total", ()): 1.0,
        ("poolsim_im_messages_sent_total", ()): 3.0,
        ("poolsim_im_messages_delivered_total", ()): 3.0,
        ("poolsim_conferences_started_total", ()): 0.0,
        ("poolsim_endpoints_active", ()): 3.0,
        ("poolsim_users_signed_in", ()): 3.0,
        ("poolsim_conversations_active", ()): 1.0,
        ("poolsim_conferences_active", ()): 0.0,
        ("poolsim_users_provisioned", ()): 13.0,
        ("poolsim_rpc_duration_seconds_count", (("method", "SignIn"), ("code", "OK"))): 3.0,
        (
            "poolsim_rpc_duration_seconds_count",
            (("method", "SignIn"), ("code", "UNAUTHENTICATED")),
        ): 1.0,
        ("poolsim_rpc_duration_seconds_count", (("method", "PublishPresence"), ("code", "OK"))): 2,
        ("poolsim_rpc_duration_seconds_count", (("method", "GetPresence"), ("code", "OK"))): 1.0,
        (
            "poolsim_rpc_duration_seconds_count",
            (("method", "GetPresence"), ("code", "INVALID_ARGUMENT")),
        ): 1.0,
        ("poolsim_rpc_duration_seconds_count", (("method", "SendMessage"), ("code", "OK"))): 3.0,
        ("poolsim_rpc_duration_seconds_count", (("method", "AcceptInvitation"), ("code", "OK"))): 1,
    }
    actual = {key: m(key[0], dict(key[1])) for key in expected}
    wrong = {key: (actual[key], want) for key, want in expected.items() if actual[key] != want}
    assert not wrong, "(metric, labels): (actual, expected)\n" + "\n".join(
        f"{k}: {v}" for k, v in wrong.items()
    )


FE = "poolsim.v1.FrontEnd"


def _grpc(method: str, kind: str = "unary", **extra: str) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": FE, "grpc_method": method, **extra}


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def test_standard_grpc_series_beside_the_lync_ones(standard: StandardPool) -> None:
    """The names and labels of go-grpc-prometheus / py-grpc-prometheus, codes spelt as Go
    spells them, one handled call per poolsim_rpc_duration_seconds observation."""
    await _known_traffic(standard)
    m = standard.metric
    expected = {
        _key("grpc_server_started_total", _grpc("SignIn")): 4.0,
        _key("grpc_server_handled_total", _grpc("SignIn", grpc_code="OK")): 3.0,
        _key("grpc_server_handled_total", _grpc("SignIn", grpc_code="Unauthenticated")): 1.0,
        _key("grpc_server_handled_total", _grpc("GetPresence", grpc_code="InvalidArgument")): 1.0,
        _key("grpc_server_handled_total", _grpc("SendMessage", grpc_code="OK")): 3.0,
        _key("grpc_server_handling_seconds_count", _grpc("SignIn")): 4.0,
        _key("grpc_server_handling_seconds_count", _grpc("GetPresence")): 2.0,
        _key("grpc_server_msg_received_total", _grpc("SignIn")): 4.0,
        _key("grpc_server_msg_sent_total", _grpc("SignIn")): 3.0,  # the failed one sent no reply
        _key("grpc_server_msg_sent_total", _grpc("PublishPresence")): 2.0,
    }
    actual = {key: m(key[0], dict(key[1])) for key in expected}
    assert actual == expected


async def test_event_stream_counts_its_messages(standard: StandardPool) -> None:
    alice, bob = await standard.sign_in(0), await standard.sign_in(1)
    stream = bob.events()
    conv = await alice.create_conversation([uri(1)], first_message="one")
    assert (await anext(stream)).WhichOneof("kind") == "invitation"
    await bob.accept(conv.conversation_id)
    await alice.send_message(conv.conversation_id, "two")
    read = 1
    while True:  # until "two" (the first message came with the invitation)
        event = await asyncio.wait_for(anext(stream), 30)
        read += 1
        if event.WhichOneof("kind") == "message":
            break
    events = _grpc("Events", "server_stream")
    sent = "grpc_server_msg_sent_total"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while standard.metric(sent, events) < read and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # the server counts a batch once it is written
    assert standard.metric(sent, events) == read
    assert standard.metric("grpc_server_started_total", events) == 1.0
    await stream.aclose()


async def test_latency_buckets_resolve_tens_of_microseconds(standard: StandardPool) -> None:
    await _known_traffic(standard)
    name = "poolsim_rpc_duration_seconds_bucket"
    labels = {"method": "SignIn", "code": "OK"}
    for le in ("1e-05", "2.5e-05", "5e-05", "0.0001", "0.001", "1.0", "10.0", "+Inf"):
        assert standard.registry.get_sample_value(name, {**labels, "le": le}) is not None, le
    handling = "grpc_server_handling_seconds_bucket"
    signin = _grpc("SignIn")
    # the fake clock makes every duration 0: all four sign-ins are in the lowest bucket
    assert standard.registry.get_sample_value(handling, {**signin, "le": "1e-05"}) == 4.0
    assert standard.registry.get_sample_value(handling, {**signin, "le": "+Inf"}) == 4.0


async def test_no_created_series(standard: StandardPool) -> None:
    await _known_traffic(standard)
    names = {s.name for f in standard.registry.collect() for s in f.samples}
    assert not [n for n in names if n.endswith("_created")]


async def test_failed_call_is_counted_under_its_code_only(standard: StandardPool) -> None:
    alice = await standard.sign_in(0)
    for _ in range(2):
        with pytest.raises(errors.NotFound):
            await alice.send_message("c-404", "hello")
    count = "poolsim_rpc_duration_seconds_count"
    await _settled(standard, count, {"method": "SendMessage", "code": "NOT_FOUND"}, 2.0)
    assert standard.metric(count, {"method": "SendMessage", "code": "NOT_FOUND"}) == 2.0
    assert standard.metric(count, {"method": "SendMessage", "code": "OK"}) == 0.0
    assert standard.metric("poolsim_im_messages_sent_total") == 0.0


async def test_signing_out_lowers_the_gauges(standard: StandardPool) -> None:
    sessions = await _known_traffic(standard)
    for session in sessions:
        await session.sign_out()
    assert standard.metric("poolsim_endpoints_active") == 0.0
    assert standard.metric("poolsim_users_signed_in") == 0.0
    assert standard.metric("poolsim_conversations_active") == 0.0
    assert standard.metric("poolsim_deregistrations_total", {"reason": "client-initiated"}) == 3.0


async def test_no_user_or_token_in_any_label(standard: StandardPool) -> None:
    sessions = await _known_traffic(standard)
    exposition = generate_latest(standard.registry).decode()
    assert "sip:" not in exposition
    assert "@" not in exposition
    for session in sessions:
        assert session.token not in exposition
        assert session.endpoint_id not in exposition
    for family in standard.registry.collect():
        for sample in family.samples:
            for name, value in sample.labels.items():
                assert "sip:" not in value, (sample.name, name, value)
                assert "@" not in value, (sample.name, name, value)


async def test_promtool_accepts_the_exposition(standard: StandardPool) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (CI installs Debian's prometheus package)")
    await _known_traffic(standard)
    exposition = generate_latest(standard.registry)
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(exposition), 60)
    output = out.decode(errors="replace")
    print(output)
    assert proc.returncode == 0, f"promtool check metrics failed:\n{output}"
    assert not output.strip(), f"promtool check metrics complained:\n{output}"
