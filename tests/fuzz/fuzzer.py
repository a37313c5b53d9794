"""A fuzzer of the poolsim API, built from the service descriptors (hypothesis).

Every RPC of ``poolsim.v1.FrontEnd`` and ``poolsim.v1.PoolAdmin`` and every field of its
request type is found in the descriptors, so a new RPC or field is fuzzed without editing
this file. Each drawn call is one of:

* **valid**: fields drawn from values the pool accepts (the fuzz users' URIs and password,
  conversation ids the pool handed out, known numbers, times near now), with a live token, so
  random orders of valid calls drive users through sign-in, presence, contacts, conversations
  and sign-out;
* **adversarial**: edge integers, unknown enum numbers, huge, empty and control-character
  strings, near-valid URIs, Timestamps at and past their edges, repeated fields with thousands
  of items;
* **raw**: the serialized request mutated (truncated, bytes flipped, garbage appended) or
  random bytes;

each with a token chosen among none, garbage, a malformed header, a live user's (anyone's),
a signed-out one and the admin token, sent to any front end of the pool.

What is checked: no call ends in UNKNOWN, INTERNAL or DEADLINE_EXCEEDED (a hang); the
pool's processes are alive and serving at the end; and ``verify_users`` then checks that
every fuzzed user still works normally (sign-in, publish, a Workgroup watcher's poll and
event stream, contacts, a conversation).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api.server import MAX_MESSAGE_BYTES, SERVICE_NAMES
from pool.api.status import HOME_ADDRESS_KEY

BAD_CODES = frozenset({"UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED"})
CALL_TIMEOUT = 30.0  # seconds: a call that takes longer is a hang
STREAM_LISTEN = 0.05  # seconds an Events stream is listened to before the fuzzer hangs up
STREAM_ITEMS = 100  # streamed items read before hanging up
DOMAIN = "contoso.com"
USERS = 10
PREFIX = "fuzz"
INT_EDGES = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
MEANINGFUL = (0, 1, 2, 3, 4, 5, 10, 60, 100, 200, 300, 400, 600, 3500, 6500, 9500, 12500)
MEANINGFUL += (15500, 18500, 6900, 4500, 7500, 32000, 86_400, 86_401, 100_000, 100_001)
TS_MIN = -62_135_596_800
TS_MAX = 253_402_300_799
#: fields whose accepted values are expensive (every user a count creates stays): drawn small
SMALL = {
    ("poolsim.v1.ProvisionUsersRequest", "count"),
    ("poolsim.v1.ProvisionUsersRequest", "start_index"),
}
#: an adversarial list is cut to about this many bytes: twice what a front end accepts, so
#: oversized requests are still sent, and each is built in milliseconds
BODY_BUDGET = 2 * MAX_MESSAGE_BYTES
CONTROL = "".join(chr(c) for c in (*range(0, 32), 127, 0x85, 0x9F))


@dataclass(frozen=True, slots=True)
class Method:
    service: str
    name: str
    path: str
    request: type[Message]
    response: type[Message]
    streaming: bool

    @property
    def label(self) -> str:
        return f"{self.service.rsplit('.', 1)[1]}.{self.name}"


def methods() -> list[Method]:
    """Every RPC of the poolsim services, from the descriptor pool."""
    pool = descriptor_pool.Default()
    out = []
    for service in SERVICE_NAMES:
        for m in pool.FindServiceByName(service).methods:
            out.append(_method(service, m))
    return out


def _method(service: str, m: MethodDescriptor) -> Method:
    return Method(
        service,
        m.name,
        f"/{service}/{m.name}",
        message_factory.GetMessageClass(m.input_type),
        message_factory.GetMessageClass(m.output_type),
        m.server_streaming,
    )


@dataclass
class Live:
    """A signed-in endpoint the fuzzer holds."""

    token: str
    user: str
    address: str


@dataclass
class State:
    """What the fuzzer learned from the pool's answers: tokens, ids, homes."""

    users: list[str]
    password: str
    admin_token: str
    addresses: list[str]
    live: list[Live] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    homes: dict[str, str] = field(default_factory=dict)
    #: RPCs never sent with the admin token: an Enterprise pool's own failure injection
    #: (StopFrontEnd crashes front ends; tests/enterprise covers them), which would leave
    #: nothing to fuzz. They are still fuzzed with every other token and with bad bodies.
    no_admin: frozenset[str] = frozenset()

    def valid_strings(self) -> list[str]:
        return [*self.users, self.password, *self.conversations[-50:]]


@dataclass(frozen=True, slots=True)
class Call:
    method: Method
    mode: str  # valid | adversarial | raw
    fields: Any  # what the strategies drew, turned into a request by ``build``
    token: str  # none | garbage | malformed | live | stale | admin
    mutation: tuple[str, int, int]  # raw mode: (kind, position, byte)


# --- strategies from descriptors ---


def _near_uris(users: Sequence[str]) -> list[str]:
    u = users[0]
    return [
        u + "\n",
        u.upper(),
        u.removeprefix("sip:"),
        u.replace("@", "@@"),
        u + ".",
        "sip:" + "a" * 65 + "@contoso.com",
        "sip:a@" + "b" * 64 + ".com",
        "sip:a@" + ("b." * 130) + "com",
        "sip:ünï@contoso.com",
        "sip:a@contoso.com\x00",
        " " + u,
        "sip:@contoso.com",
        "sip:a@-contoso.com",
        "sip:a@contoso..com",
        "sip:user1@fabrikam.com",
        "c-g0-00000000",
        "c-g99999999999999999999-x",
        "c-g²-x",
        "c--g1-",
    ]


def _adversarial_text(users: Sequence[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.text(max_size=40),
        st.text(alphabet=st.sampled_from(CONTROL), min_size=1, max_size=5),
        st.builds(
            lambda a, c, b: a + c + b,
            st.text(max_size=8),
            st.sampled_from(CONTROL),
            st.text(max_size=8),
        ),
        st.sampled_from(_near_uris(users)),
        st.sampled_from(
            [
                "text/plain",
                "text/html",
                "text/rtf",
                "application/x-evil",
                "in-a-meeting",
                "off-work",
                DOMAIN,
                PREFIX,
                "Other Contacts",
            ]
        ),
        st.integers(1, 200_000).map(lambda n: "x" * n),
        st.integers(1, 3000).map(lambda n: "é" * n),
    )


def _many(item: Any, n: int) -> list[Any]:
    """``n`` copies of ``item``, fewer where that would pass ``BODY_BUDGET``."""
    return [item] * max(1, min(n, BODY_BUDGET // weight(item)))


def weight(value: Any) -> int:
    """About how many bytes ``value`` (drawn fields) takes on the wire."""
    if isinstance(value, str | bytes):
        return len(value) * (2 if isinstance(value, str) else 1) + 2
    if isinstance(value, dict):
        return 2 + sum(weight(v) for v in value.values())
    if isinstance(value, list):
        return 2 + sum(weight(v) for v in value)
    return 10


def _int_strategy(kind: str, small: bool) -> st.SearchStrategy[int]:
    lo, hi = INT_EDGES[kind]
    if small:
        return st.one_of(st.integers(0, 20), st.sampled_from([lo, hi, 100_001]))
    edges = [lo, hi, lo + 1, hi - 1, 0, 1, hi // 2 + 1]
    return st.one_of(
        st.sampled_from([v for v in MEANINGFUL if lo <= v <= hi] + edges),
        st.integers(lo, hi),
    )


_INT_KINDS = {
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_SINT32: "int32",
    FieldDescriptor.TYPE_SFIXED32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_SINT64: "int64",
    FieldDescriptor.TYPE_SFIXED64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_FIXED32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_FIXED64: "uint64",
}


class Strategies:
    """Per message type: a strategy for a dict of its fields, valid or adversarial."""

    def __init__(self, state: State) -> None:
        self.state = state

    def fields(self, desc: Descriptor, valid: bool, depth: int = 0) -> st.SearchStrategy[Any]:
        if desc.full_name == "google.protobuf.Timestamp":
            return self._timestamp(valid)
        parts: dict[str, st.SearchStrategy[Any]] = {}
        for f in desc.fields:
            value = self._field(desc, f, valid, depth)
            if value is None:
                continue
            if f.is_repeated:
                value = self._repeated(value, valid, depth)
            parts[f.name] = value
        if valid:  # every field set, as a careful client would (an empty list stays possible)
            return st.fixed_dictionaries(parts)
        return st.fixed_dictionaries({}, optional=parts)

    def _repeated(
        self, item: st.SearchStrategy[Any], valid: bool, depth: int
    ) -> st.SearchStrategy[Any]:
        """A list of items; adversarial top-level lists may hold thousands of one item, up to
        ``BODY_BUDGET`` bytes (a list of thousands of lists of thousands of 200 kB strings is
        terabytes, which would stall the fuzzer, not test the pool)."""
        few = st.lists(item, max_size=4 if valid else 6)
        if valid or depth:
            return few
        many = st.builds(_many, item, st.integers(500, 3000))
        return st.one_of(few, few, few, many)

    def _field(
        self, desc: Descriptor, f: FieldDescriptor, valid: bool, depth: int
    ) -> st.SearchStrategy[Any] | None:
        state = self.state
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry or depth >= 3:
                return None
            return self.fields(f.message_type, valid, depth + 1)
        if f.type == FieldDescriptor.TYPE_STRING:
            if valid:
                return self._valid_text(f.name)
            return st.one_of(st.sampled_from(state.valid_strings()), _adversarial_text(state.users))
        if f.type == FieldDescriptor.TYPE_BYTES:
            return st.binary(max_size=64)
        if f.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if f.type == FieldDescriptor.TYPE_ENUM:
            assert f.enum_type is not None
            known = sorted(f.enum_type.values_by_number)
            if valid:
                return st.sampled_from(known)
            return st.one_of(
                st.sampled_from(known), st.sampled_from([-1, 5, 99, 2**31 - 1, -(2**31)])
            )
        kind = _INT_KINDS.get(f.type)
        if kind is not None:
            small = (desc.full_name, f.name) in SMALL
            if valid:
                return st.sampled_from([v for v in MEANINGFUL if v >= 0 and v < 2**31][:22])
            return _int_strategy(kind, small)
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return st.floats(allow_nan=True, allow_infinity=True)
        return None

    def _valid_text(self, name: str) -> st.SearchStrategy[str]:
        """What a well-behaved client puts in a field, guessed from the field's name."""
        state = self.state
        if "uri" in name or name in ("invitees", "owner"):
            return st.sampled_from(state.users)
        if name == "conversation_id":
            return st.deferred(lambda: st.sampled_from(state.conversations[-50:] or ["c-g0-none"]))
        if name == "password":
            return st.just(state.password)
        if name == "content_type":
            return st.sampled_from(["", "text/plain", "text/html", "text/rtf"])
        if name == "domain":
            return st.just(DOMAIN)
        if name == "prefix":
            return st.sampled_from([PREFIX, "extra"])
        if name == "activity":
            return st.sampled_from(["", "in-a-meeting", "off-work", "custom state"])
        if name == "id" or name.endswith("front_end_id"):
            return st.sampled_from(["fe1", "fe2", "fe3", "fe9", ""])
        return st.sampled_from(["", "hello", "Team", "desktop"])

    def _timestamp(self, valid: bool) -> st.SearchStrategy[Any]:
        now = int(datetime.now(UTC).timestamp())  # the server's wall clock: same machine
        if valid:
            seconds = st.sampled_from([now + 60, now + 3600, now + 86_400, 0, now - 60])
            return st.fixed_dictionaries({"seconds": seconds, "nanos": st.just(0)})
        seconds = st.sampled_from(
            [
                0,
                now,
                now + 3600,
                now + 10**8,
                TS_MAX,
                TS_MAX + 1,
                TS_MIN,
                TS_MIN - 1,
                -1,
                2**63 - 1,
                -(2**63),
            ]
        )
        nanos = st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31)])
        return st.fixed_dictionaries({"seconds": seconds, "nanos": nanos})


def _token(method: Method, mode: str, drawn: str, pick: int) -> str:
    """Valid calls mostly carry the token their service takes; the rest, the drawn one."""
    if mode != "valid" or pick % 5 == 0:
        return drawn
    return "admin" if method.service.endswith("PoolAdmin") else "live"


def build(cls: type[Message], fields: dict[str, Any]) -> Message:
    """A message of ``cls`` with the drawn fields (nested dicts are nested messages)."""
    msg = cls()
    desc = msg.DESCRIPTOR
    for name, value in fields.items():
        if value is None:
            continue
        f = desc.fields_by_name[name]
        if f.message_type is not None:
            sub_cls = message_factory.GetMessageClass(f.message_type)
            if f.is_repeated:
                getattr(msg, name).extend(build(sub_cls, v) for v in value)
            else:
                getattr(msg, name).CopyFrom(build(sub_cls, value))
        elif f.is_repeated:
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


def mutate(data: bytes, kind: str, position: int, byte: int) -> bytes:
    if kind == "random":
        return random.Random(position).randbytes(position % 64)
    if not data:
        return bytes([byte, 0x7F, byte])
    at = position % len(data)
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ (byte or 1)]) + data[at + 1 :]
    if kind == "insert":
        return data[:at] + bytes([byte, 0x02, 0xFF, 0xFE]) + data[at:]
    return data + bytes([byte, 0x7F])  # append: a field that says more follows than does


# --- sending ---


@dataclass
class Result:
    histogram: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    #: the longest the fuzzer's own event loop was kept from running (seconds): a hang
    #: reported while this is near CALL_TIMEOUT is the fuzzer's, not the pool's
    stall: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.histogram.values())

    def table(self) -> str:
        by_method: dict[str, Counter[str]] = {}
        for (method, code), n in self.histogram.items():
            by_method.setdefault(method, Counter())[code] = n
        lines = []
        for method in sorted(by_method):
            codes = by_method[method]
            shown = ", ".join(f"{c} {n}" for c, n in sorted(codes.items(), key=lambda x: -x[1]))
            lines.append(f"{method:<36} {sum(codes.values()):>7}  {shown}")
        return "\n".join(lines)


class Fuzzer:
    def __init__(self, state: State, seed: int = 0, concurrency: int = 16) -> None:
        self.state = state
        self.methods = methods()
        self.strategies = Strategies(state)
        self.result = Result()
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = grpc.aio.insecure_channel(
                address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
            )
        return ch

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    def calls(self) -> st.SearchStrategy[Call]:
        """One call to any RPC: its mode, fields, token and (raw mode) mutation."""
        per_method = []
        for m in self.methods:
            desc = m.request.DESCRIPTOR
            valid = self.strategies.fields(desc, True)  # type: ignore[arg-type]
            adversarial = self.strategies.fields(desc, False)  # type: ignore[arg-type]
            per_method.append(
                st.tuples(
                    st.just(m),
                    st.sampled_from(["valid"] * 3 + ["adversarial"] * 2 + ["raw"]),
                    valid,
                    adversarial,
                )
            )
        tokens = st.sampled_from(["live"] * 6 + ["none", "garbage", "malformed", "stale", "admin"])
        mutation = st.tuples(
            st.sampled_from(["truncate", "flip", "insert", "append", "random"]),
            st.integers(0, 10_000),
            st.integers(0, 255),
        )
        return st.builds(
            lambda mvf, token, mut: Call(
                mvf[0], mvf[1], mvf[2] if mvf[1] == "valid" else mvf[3], token, mut
            ),
            st.one_of(per_method),
            tokens,
            mutation,
        )

    def _target(
        self, call: Call, pick: int
    ) -> tuple[str, tuple[tuple[str, str], ...], Live | None]:
        """Where the call goes and with which token. ``pick`` is a random number from the
        fuzzer's seeded generator (hypothesis draws small numbers far more often)."""
        state = self.state
        token = _token(call.method, call.mode, call.token, pick)
        address = state.addresses[pick % len(state.addresses)]
        live: Live | None = None
        header: str | None
        if token == "live" and state.live:
            live = state.live[pick % len(state.live)]
            header = f"Bearer {live.token}"
            if pick % 10:
                address = live.address
        elif token == "stale" and state.stale:
            header = f"Bearer {state.stale[pick % len(state.stale)]}"
        elif token == "admin" and call.method.name not in state.no_admin:
            header = f"Bearer {state.admin_token}"
        elif token == "garbage":
            header = f"Bearer {self.rng.randbytes(12).hex()}"
        elif token == "malformed":
            header = self.rng.choice(["Basic abc", "Bearer", "bearer  ", "x" * 300, "Bearer  a b"])
        else:
            header = None
        if call.method.name == "SignIn" and call.mode == "valid":
            user = dict(call.fields).get("user_uri")
            if user in state.homes and pick % 4:
                address = state.homes[user]
        md = (("authorization", header),) if header is not None else ()
        return address, md, live

    def body(self, call: Call, pick: int = 1) -> tuple[bytes, Message | None]:
        fields = call.fields
        if call.method.name == "SignIn" and call.mode == "valid":
            fields = dict(fields, password=self.state.password if pick % 5 else "wrong")
        request = build(call.method.request, fields)
        data = request.SerializeToString()
        if call.mode == "raw":
            return mutate(data, *call.mutation), None
        return data, request

    async def send(self, call: Call) -> None:
        method = call.method
        pick = self.rng.getrandbits(31)
        try:
            data, request = self.body(call, pick)
        except (ValueError, TypeError, OverflowError):
            return  # the drawn value does not fit the field's type: nothing to send
        address, md, live = self._target(call, pick)
        channel = self.channel(address)
        code = "OK"
        try:
            if method.streaming:
                code = await self._stream(channel, method, data, md)
            else:
                reply = await channel.unary_unary(method.path)(
                    data, metadata=md, timeout=CALL_TIMEOUT
                )
                self._learn(method, request, reply, address, live)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            self._learn_error(method, request, exc, live, address)
            if code in BAD_CODES:
                self.result.bad.append(
                    f"{method.label} {code}: {exc.details()!r} request={data[:200].hex()}"
                )
        self.result.histogram[(method.label, code)] += 1

    async def _stream(self, channel: grpc.aio.Channel, method: Method, data: bytes, md: Any) -> str:
        call = channel.unary_stream(method.path)(data, metadata=md, timeout=CALL_TIMEOUT)
        items = 0
        try:
            while items < STREAM_ITEMS:
                item = await asyncio.wait_for(call.read(), STREAM_LISTEN)
                if item is grpc.aio.EOF:
                    return "OK"
                items += 1
            return "OK"
        except TimeoutError:
            return "OK" if method.name != "Events" or items else "OPEN"
        finally:
            call.cancel()

    def _learn(
        self,
        method: Method,
        request: Message | None,
        reply: bytes,
        address: str,
        live: Live | None,
    ) -> None:
        state = self.state
        if method.name == "SignIn":
            out = pb.SignInResponse.FromString(reply)
            user = request.user_uri.lower() if isinstance(request, pb.SignInRequest) else ""
            state.live.append(Live(out.token, user, address))
            state.homes[user] = address
        elif method.name == "SignOut" and live is not None:
            if live in state.live:
                state.live.remove(live)
            state.stale.append(live.token)
            del state.stale[:-50]
        elif method.name == "CreateConversation":
            out2 = pb.CreateConversationResponse.FromString(reply)
            state.conversations.append(out2.conversation_id)
            del state.conversations[:-200]

    def _learn_error(
        self,
        method: Method,
        request: Message | None,
        exc: grpc.aio.AioRpcError,
        live: Live | None,
        address: str,
    ) -> None:
        state = self.state
        trailers = dict(exc.trailing_metadata() or ())
        home = trailers.get(HOME_ADDRESS_KEY)
        if method.name == "SignIn" and isinstance(request, pb.SignInRequest) and home:
            state.homes[request.user_uri.lower()] = str(home)
        if (
            exc.code() == grpc.StatusCode.UNAUTHENTICATED
            and live is not None
            and live.address == address
            and method.name != "SignIn"  # that one is about the password, not the token
            and live in state.live  # expired, signed out by the server, or moved
        ):
            state.live.remove(live)

    async def run_batch(self, calls: list[Call]) -> None:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(c: Call) -> None:
            async with sem:
                await self.send(c)

        await asyncio.gather(*(one(c) for c in calls))

    def run(
        self,
        loop: asyncio.AbstractEventLoop,
        requests: int,
        batch: int = 100,
        progress: Callable[[Result], None] | None = None,
    ) -> Result:
        """Draw and send ``requests`` calls. Hypothesis draws them in batches on this thread
        while ``loop`` (running on another thread) sends the previous batch."""
        examples = max(1, requests // batch)
        pending: list[concurrent.futures.Future[None]] = []
        watch = asyncio.run_coroutine_threadsafe(self._watch_loop(), loop)

        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(self.calls(), min_size=batch, max_size=batch))
        def example(calls: list[Call]) -> None:
            if pending:
                pending.pop().result()
            pending.append(asyncio.run_coroutine_threadsafe(self.run_batch(calls), loop))
            if progress is not None:
                progress(self.result)

        try:
            example()
            for future in pending:
                future.result()
        finally:
            watch.cancel()
        return self.result

    async def _watch_loop(self, tick: float = 0.1) -> None:
        clock = asyncio.get_running_loop().time
        while True:
            before = clock()
            await asyncio.sleep(tick)
            self.result.stall = max(self.result.stall, clock() - before - tick)

    async def sign_out_all(self) -> None:
        for live in list(self.state.live):
            md = (("authorization", f"Bearer {live.token}"),)
            with contextlib.suppress(grpc.aio.AioRpcError):  # gone already
                await self.channel(live.address).unary_unary("/poolsim.v1.FrontEnd/SignOut")(
                    pb.SignOutRequest().SerializeToString(), metadata=md, timeout=CALL_TIMEOUT
                )
        self.state.live.clear()


async def provision(addresses: Sequence[str], admin_token: str, password: str) -> list[str]:
    """The fuzz users: sip:fuzz0@contoso.com .. and one watcher, sip:fuzzwatch0@contoso.com."""
    md = (("authorization", f"Bearer {admin_token}"),)
    async with grpc.aio.insecure_channel(addresses[0]) as ch:
        call = ch.unary_unary(
            "/poolsim.v1.PoolAdmin/ProvisionUsers",
            request_serializer=apb.ProvisionUsersRequest.SerializeToString,
            response_deserializer=apb.ProvisionUsersResponse.FromString,
        )
        for prefix, count in ((PREFIX, USERS), (PREFIX + "watch", 1)):
            request = apb.ProvisionUsersRequest(
                prefix=prefix, domain=DOMAIN, count=count, password=password
            )
            await call(request, metadata=md, timeout=CALL_TIMEOUT)
    return [f"sip:{PREFIX}{i}@{DOMAIN}" for i in range(USERS)]
