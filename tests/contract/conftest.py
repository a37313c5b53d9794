"""The contract suite: behaviour every edition must show through the public API.

Tests here use only ``pool`` (a running pool: ``sign_in(i)``, ``client``, ``admin_token``)
and the PoolClient. Each edition adds itself to ``EDITIONS``; the Enterprise pool runs the
same tests unchanged, and each runs over both transports: sessions making one RPC per call,
and sessions on the endpoint's ``FrontEnd.Session`` stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_standard
from tests.ray_pool import start_enterprise

EDITIONS = ["standard", "enterprise"]
#: how the PoolClient's sessions send their calls: one RPC each, or the endpoint's Session stream
TRANSPORTS = ["unary", "session"]


@pytest.fixture(
    params=[(e, t) for e in EDITIONS for t in TRANSPORTS],
    ids=[f"{e}-{t}" for e in EDITIONS for t in TRANSPORTS],
)
async def pool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A running pool of each edition, driven over each transport; Enterprise is three front
    ends on three Ray nodes."""
    edition, transport = request.param
    if edition == "standard":
        p: Any = await start_standard(tmp_path)
    else:
        request.getfixturevalue("ray_cluster")
        p = await start_enterprise(tmp_path)
    p.client.transport = transport
    try:
        yield p
    finally:
        await p.close()
