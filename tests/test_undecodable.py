"""An undecodable request body costs the server one counter increment: no traceback in the log
(one warning a minute at most), and the call is INVALID_ARGUMENT."""

from __future__ import annotations

import logging

import grpc
import pytest

from pool.api.decoding import RateLimitedLog
from tests.conftest import StandardPool, eventually


async def test_undecodable_bodies_are_counted_and_not_logged_each(
    standard: StandardPool, caplog: pytest.LogCaptureFixture
) -> None:
    call = standard.client.channel().unary_unary("/poolsim.v1.FrontEnd/SignIn")
    caplog.set_level(logging.DEBUG)
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(bytes.fromhex("0a02fffe"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "could not be parsed as poolsim.v1.SignInRequest" in (info.value.details() or "")
    assert standard.metric("poolsim_undecodable_requests_total", {"method": "SignIn"}) == 20
    # the status reaches the client before the handler's last line counts the call
    labels = {"method": "SignIn", "code": "INVALID_ARGUMENT"}
    await eventually(
        lambda: standard.metric("poolsim_rpc_duration_seconds_count", labels) == 20,
        what="the 20th refusal counted",
    )
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert noisy == []
    warnings = [r for r in caplog.records if r.name == "poolsim.rpc"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_the_log_line_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(lambda: now[0], every=60.0)
    with caplog.at_level(logging.WARNING, logger="poolsim.rpc"):
        for t in (0.0, 1.0, 59.0, 60.0, 61.0, 130.0):
            now[0] = t
            limited.warning("bad body")
    assert [r.getMessage() for r in caplog.records] == [
        "bad body",
        "bad body (2 more since the last line)",
        "bad body (1 more since the last line)",
    ]
