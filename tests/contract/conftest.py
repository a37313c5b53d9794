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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "one_transport: the test speaks the wire itself: run it over unary only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``pool`` for each edition and transport (one transport for ``one_transport`` tests)."""
    if "pool" not in metafunc.fixturenames:
        return
    one = metafunc.definition.get_closest_marker("one_transport") is not None
    combos = [(e, t) for e in EDITIONS for t in (TRANSPORTS[:1] if one else TRANSPORTS)]
    metafunc.parametrize("pool", combos, indirect=True, ids=[f"{e}-{t}" for e, t in combos])


@pytest.fixture
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
