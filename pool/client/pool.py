"""``PoolClient``: channels to a pool's front ends, and signing in (redirects followed)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.client.admin import AdminClient
from pool.client.endpoint import Session
from pool.client.errors import _call, _unavailable
from pool.errors import PoolError, Redirect

MAX_REDIRECTS = 3
#: how long an event stream keeps trying to sign in again after its front end failed (a
#: fail-over takes the pool a second or two: until then the user's new home is not known)
STREAM_RECONNECT_WINDOW = 30.0
TRANSPORTS = ("unary", "session")


class PoolClient:
    """Channels to a pool's front ends (one per address, opened on demand).

    ``address`` is one front end's ``host:port`` or a sequence of them (a pool's front ends):
    ``address`` is the first, ``addresses`` all that are known, those learned from redirects
    included. ``reconnect`` makes sessions re-register by themselves (see the module doc).
    ``transport="session"`` puts each signed-in endpoint's calls and events on one stream.
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        reconnect: bool = True,
        stream_reconnect_window: float = STREAM_RECONNECT_WINDOW,
        transport: str = "unary",
    ) -> None:
        given = [address] if isinstance(address, str) else list(address)
        if not given or not all(given):
            raise ValueError("PoolClient needs at least one front end address")
        self.addresses: tuple[str, ...] = tuple(dict.fromkeys(given))
        self.address = self.addresses[0]
        self.reconnect = reconnect
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        #: how sessions send their calls: "unary" (one RPC each) or "session" (one
        #: ``FrontEnd.Session`` stream per endpoint, carrying its calls and its events)
        self.transport = transport
        #: seconds an event stream keeps trying to sign in again while no front end takes it
        self.stream_reconnect_window = stream_reconnect_window
        self._credentials = credentials
        self._options = list(options)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def learn(self, address: str) -> None:
        """Remember a front end's address (appended to ``addresses`` unless known)."""
        if address and address not in self.addresses:
            self.addresses = (*self.addresses, address)

    def channel(self, address: str | None = None) -> grpc.aio.Channel:
        address = address or self.address
        channel = self._channels.get(address)
        if channel is None:
            channel = (
                grpc.aio.secure_channel(address, self._credentials, self._options)
                if self._credentials is not None
                else grpc.aio.insecure_channel(address, self._options)
            )
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)

    async def __aenter__(self) -> PoolClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def sign_in(
        self,
        user_uri: str,
        password: str,
        device: str = "poolsim",
        *,
        deadline: float | None = 30.0,
    ) -> Session:
        """Sign in, following the redirect to the user's home front end.

        Starts at ``address``; while a front end is unavailable, tries the next known one.
        """
        address, reply = await self._sign_in(user_uri, password, device, deadline, self.address)
        session = Session(self, address, user_uri.lower(), reply)
        session._remember(user_uri, password, device, deadline)
        return session

    async def _sign_in(
        self,
        user_uri: str,
        password: str,
        device: str,
        deadline: float | None,
        first: str,
    ) -> tuple[str, pb.SignInResponse]:
        """SignIn at ``first``, then at the other known front ends while one is unavailable,
        following redirects from each (at most MAX_REDIRECTS): the address signed in at and
        the reply. When none could be reached, the error of a front end that answered (its own
        reason, e.g. a quorum loss) wins over a connection failure."""
        request = pb.SignInRequest(user_uri=user_uri, password=password, device=device)
        tried: set[str] = set()
        answered: PoolError | None = None
        unreachable: PoolError | None = None
        while True:
            start = next((a for a in (first, *self.addresses) if a and a not in tried), None)
            if start is None:
                break
            tried.add(start)
            address = start
            for _ in range(MAX_REDIRECTS + 1):
                channel = self.channel(address)
                stub = pb_grpc.FrontEndStub(channel)
                try:
                    reply = await _call(stub.SignIn(request, timeout=deadline))
                except Redirect as redirect:
                    address = redirect.home_address
                    self.learn(address)
                    continue
                except PoolError as error:
                    if not _unavailable(error):
                        raise
                    tried.add(address)
                    if channel.get_state() == grpc.ChannelConnectivity.READY:
                        answered = answered or error
                    else:
                        unreachable = unreachable or error
                    break
                home = reply.home_address or address
                self.learn(home)
                return home, reply
            else:
                raise PoolError(
                    f"sign-in of {user_uri} was redirected more than {MAX_REDIRECTS} times"
                )
        failure = answered or unreachable
        if failure is None:  # not reached: ``addresses`` is never empty
            raise PoolError(f"no front end to sign {user_uri} in at")
        raise failure

    def admin(self, token: str) -> AdminClient:
        return AdminClient(self.channel(), token)
