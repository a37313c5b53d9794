"""Enterprise-only administration on a Standard server: a clear refusal, nothing changed."""

from __future__ import annotations

import pytest

from pool import errors
from tests.conftest import StandardPool


async def test_enterprise_admin_calls_say_they_need_an_enterprise_pool(
    standard: StandardPool,
) -> None:
    admin = standard.client.admin(standard.admin_token)
    with pytest.raises(errors.FailedPrecondition, match="needs an Enterprise pool"):
        await admin.stop_front_end("fe2", "crash")
    with pytest.raises(errors.FailedPrecondition, match="needs an Enterprise pool"):
        await admin.start_front_end("fe2")
    with pytest.raises(errors.FailedPrecondition, match="needs an Enterprise pool"):
        await admin.reset_pool_registrar_state("quorum-loss-recovery")
    assert len((await admin.status()).front_ends) == 1
