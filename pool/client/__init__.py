"""An asyncio client of a poolsim pool: every RPC with typed results and typed errors.

    async with PoolClient(["127.0.0.1:5061", "127.0.0.1:5062"]) as client:  # or one address
        alice = await client.sign_in("sip:user0@contoso.com", "pw")   # follows redirects
        conv = await alice.create_conversation(["sip:user1@contoso.com"], first_message="hi")
        async for event in alice.events():
            ...

Errors are the domain's own (``pool.errors``): a ``grpc.aio.AioRpcError`` is translated where
it happens, ``raise ... from`` the original. Codes with no domain meaning (DEADLINE_EXCEEDED,
CANCELLED, INTERNAL, ...) become ``TransportError``.

Reconnection (Enterprise): ``sign_in`` starts at the first address and moves on to the next
known one while a front end is unavailable; addresses learned from redirects are remembered in
``client.addresses``. A ``Session`` re-registers by itself (``PoolClient(..., reconnect=True)``,
the default): when a call fails with ``Unavailable`` (its front end died or is stopping) or
``Redirect`` (its user's home moved), it signs in again with the same password and device -
at the redirect's home, else where it was, else at the other known front ends - takes the new
token and endpoint, counts ``session.reconnections`` and retries the call once. Concurrent
failures reconnect once. If signing in again fails, that error is raised (a pool that lost
quorum gives its own ``Unavailable`` message). ``Unauthenticated`` never reconnects, nor does a
session after ``sign_out()``. ``events()`` likewise opens a new stream on the new endpoint when
the stream fails that way or ends with SignedOut "home-server-changed".

Transports: ``PoolClient(..., transport="session")`` sends each endpoint's calls, and takes
its events, on one ``FrontEnd.Session`` stream (futures per call; ``events()`` as before);
the default "unary" makes one RPC per call and reads ``Events``.

The package: ``pool`` (PoolClient: channels, sign-in), ``endpoint`` (Session: the calls),
``stream`` (the Session stream), ``admin`` (AdminClient), ``errors`` and ``values``.
"""

from pool.client.admin import RESET_TYPES, STOP_MODES, AdminClient
from pool.client.endpoint import RECONNECT_REASONS, Session
from pool.client.errors import TransportError, translate
from pool.client.pool import MAX_REDIRECTS, STREAM_RECONNECT_WINDOW, TRANSPORTS, PoolClient
from pool.client.values import Contact, Conversation, Presence, Sent

__all__ = [
    "MAX_REDIRECTS",
    "RECONNECT_REASONS",
    "RESET_TYPES",
    "STOP_MODES",
    "STREAM_RECONNECT_WINDOW",
    "TRANSPORTS",
    "AdminClient",
    "Contact",
    "Conversation",
    "PoolClient",
    "Presence",
    "Sent",
    "Session",
    "TransportError",
    "translate",
]
