"""A Node.js client built from the protos alone (examples/node/session.js, @grpc/grpc-js and
@grpc/proto-loader) uses the Session stream: a batch of calls, replies by id (an error reply
with its status code), an event, and the stream's end after its own sign-out.

`.ci/run` installs the Node packages (pinned) into .ci/node; under CI a missing one fails the
test instead of skipping it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import grpc
import pytest

from tests.conftest import PASSWORD, StandardPool, uri
from tests.contract.helpers import inbox

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / ".ci" / "node" / "node_modules"
EXAMPLE = ROOT / "examples" / "node" / "session.js"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (MODULES / "@grpc" / "grpc-js").exists():
        message = (
            "node or @grpc/grpc-js is not installed: `npm install --prefix .ci/node "
            "@grpc/grpc-js @grpc/proto-loader` (.ci/run does)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return node


async def test_a_node_client_uses_the_session_stream(standard: StandardPool) -> None:
    node = _node()
    bob = await standard.sign_in(1)
    async with inbox(bob) as box:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(EXAMPLE),
            standard.address,
            uri(0),
            PASSWORD,
            uri(1),
            env={**os.environ, "NODE_PATH": str(MODULES)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        replies = {line["reply"]: line for line in lines if "reply" in line}
        assert replies[1]["publish_presence"]["presence"]["availability"] == 6500
        assert replies[2]["create_conversation"]["conversation_id"]
        assert replies[3]["error"]["code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert "sign_out" in replies[4]
        events = [line for line in lines if "event" in line]
        assert events[-1]["signed_out"]["reason"] == "END_REASON_CLIENT_INITIATED"
        assert lines[-1] == {"ended": "OK"}
        invitation = await box.next("invitation")
        assert invitation.invitation.first_message.body == "hello from Node"
