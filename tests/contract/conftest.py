"""The contract suite: behaviour every edition must show through the public API.

Tests here use only ``pool`` (a running pool: ``sign_in(i)``, ``client``, ``admin_token``)
and the PoolClient. Each edition adds itself to ``EDITIONS``; the Enterprise pool runs the
same tests unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_standard
from tests.ray_pool import start_enterprise

EDITIONS = ["standard", "enterprise"]


@pytest.fixture(params=EDITIONS)
async def pool(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A running pool of each edition; Enterprise is three front ends on three Ray nodes."""
    if request.param == "standard":
        p: Any = await start_standard(tmp_path)
    else:
        request.getfixturevalue("ray_cluster")
        p = await start_enterprise(tmp_path)
    try:
        yield p
    finally:
        await p.close()
