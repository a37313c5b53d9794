"""The session rows' reference server: ejabberd driven by the raw XMPP client of
``bench.ejabberd``. The parser is tested alone; the rest against a real ejabberd, when the
machine has one (CI installs Debian's package)."""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from pathlib import Path

import pytest

from bench import ejabberd
from bench.ejabberd import Stanza, XmppClient, _Parse, ejabberdctl, start_ejabberd

DOMAIN = "contoso.com"


def test_the_parser_hands_on_each_stanza_whatever_the_chunks() -> None:
    stream = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' id='s1' version='1.0'>"
        b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        b"<message from='a@d/r' type='chat'><body>h&amp;llo</body></message>"
        b"<presence from='b@d/r'><show>dnd</show><status>r1</status></presence>"
        b"<iq type='result' id='bind'/>"
    )
    for size in (1, 7, len(stream)):
        got: list[Stanza] = []
        parse = _Parse(got.append)
        for i in range(0, len(stream), size):
            parse.parser.Parse(stream[i : i + size], False)
        assert [name for name, _, _ in got] == ["stream:features", "message", "presence", "iq"]
        assert got[1][1] == {"from": "a@d/r", "type": "chat"}
        assert got[1][2] == {"body": "h&llo"}
        assert got[2][2] == {"show": "dnd", "status": "r1"}
        assert got[3][1]["id"] == "bind"


@pytest.mark.skipif(
    ejabberdctl() is None, reason="ejabberd is not installed (apt install ejabberd)"
)
def test_raw_xmpp_clients_register_subscribe_and_exchange_messages_and_presence() -> None:
    server = start_ejabberd(DOMAIN, [])
    home = server.home
    try:
        asyncio.run(_exchange(server.address))
        before = server.cpu()
        assert before > 0  # the Erlang VM's own counter, read from /proc
    finally:
        server.stop()
    assert not Path(home).exists()
    deadline = time.monotonic() + 30
    while server.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.proc.poll() is not None


def _flaky_ctl(tmp_path: Path, failures: int) -> str:
    """An ``ejabberdctl`` that exits at once, saying so, its first ``failures`` times, then is
    the real one."""
    real, count = ejabberdctl(), tmp_path / "count"
    assert real is not None
    count.write_text("0")
    script = tmp_path / "ejabberdctl"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count}); echo $((n + 1)) > {count}\n"
        f'if [ "$n" -lt {failures} ]; then echo "no epmd yet (attempt $n)"; exit 3; fi\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    script.chmod(0o755)
    os.chmod(tmp_path, 0o755)
    return str(script)


@pytest.mark.skipif(
    ejabberdctl() is None, reason="ejabberd is not installed (apt install ejabberd)"
)
def test_an_ejabberd_that_exits_while_starting_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl = _flaky_ctl(tmp_path, 1)
    monkeypatch.setattr(ejabberd, "ejabberdctl", lambda: ctl)
    server = start_ejabberd(DOMAIN, [])
    try:
        assert (tmp_path / "count").read_text().strip() == "2"
        assert server.cpu() > 0
    finally:
        server.stop()


def test_an_ejabberd_that_never_starts_says_what_it_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "ejabberdctl"
    script.write_text('#!/bin/sh\necho "epmd: cannot bind"; exit 3\n')
    script.chmod(0o755)
    monkeypatch.setattr(ejabberd, "ejabberdctl", lambda: str(script))
    monkeypatch.setattr(ejabberd, "USER", os.environ.get("USER", "root"), raising=True)
    with pytest.raises(RuntimeError, match=r"3 attempts\): exited \(3\): epmd: cannot bind"):
        start_ejabberd(DOMAIN, [])


async def _exchange(address: tuple[str, int]) -> None:
    messages: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    notes: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    alice = XmppClient(
        DOMAIN,
        "alice",
        "pw",
        on_presence=lambda attrs, texts: notes.put_nowait(
            (attrs.get("from", ""), attrs.get("type", ""), texts.get("status", ""))
        ),
    )
    bob = XmppClient(
        DOMAIN,
        "bob",
        "pw",
        on_message=lambda attrs, texts: messages.put_nowait((attrs["from"], texts["body"])),
    )
    await asyncio.gather(alice.start(address), bob.start(address))
    alice.subscribe(bob.jid)  # bob's client accepts every subscription request
    seen: list[tuple[str, str, str]] = []
    while ("bob@contoso.com/bench", "", "") not in seen:  # bob's presence, once subscribed
        seen.append(await asyncio.wait_for(notes.get(), 30))
    alice.message(bob.jid, "one <&> two")
    assert await asyncio.wait_for(messages.get(), 30) == ("alice@contoso.com/bench", "one <&> two")
    bob.presence("dnd", "r1")
    while (note := await asyncio.wait_for(notes.get(), 30))[0] != "bob@contoso.com/bench":
        pass
    assert note == ("bob@contoso.com/bench", "", "r1")
    alice.close()
    bob.close()
    await asyncio.wait_for(asyncio.gather(alice.closed, bob.closed), 30)
