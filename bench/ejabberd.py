"""ejabberd, measured in the same run as the session rows: their reference server, when the
machine has it (Debian's ``ejabberd`` package: ``apt install ejabberd``).

``start_ejabberd`` runs ``ejabberdctl foreground`` with a configuration of its own (one
plain-text client listener on loopback, in-band registration open, the roster, no shaper, no
TLS, Mnesia in a temporary directory), as the ``ejabberd`` user when run as root (as
``ejabberdctl`` insists), with Debian's Erlang settings otherwise. (Its schedulers spin a
while before they sleep; without that, ``+sbwt none`` and the like, it was charged the same
processor per message within the noise of a loaded machine, so the defaults stay.)

``XmppClient`` is a raw XMPP client on an asyncio protocol: stanzas written as strings, the
stream parsed with expat, one callback per stanza. It registers (XEP-0077), authenticates (SASL
PLAIN) and binds a resource; then it sends chat messages and presence, and hands each incoming
message and presence to the bench.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

import psutil  # type: ignore[import-untyped]  # no stubs shipped

from bench.hotpath_common import cpu_seconds

CTL_CANDIDATES = ("ejabberdctl", "/usr/sbin/ejabberdctl")
USER = "ejabberd"  # the system user Debian's ejabberdctl runs the server as
START_TIMEOUT = 60.0
START_ATTEMPTS = 3  # starts tried when one exits while starting
RESOURCE = "bench"

CONFIG = """\
loglevel: warning
hosts: ["{domain}"]
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
modules:
  mod_roster: {{}}
  mod_register: {{}}
"""


def ejabberdctl() -> str | None:
    """The path of ``ejabberdctl``, or None when ejabberd is not installed."""
    for name in CTL_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _beam_pid(root: int) -> int | None:
    """The Erlang VM among ``root``'s descendants (ejabberdctl -> su -> sh -> beam.smp)."""
    try:
        for child in psutil.Process(root).children(recursive=True):
            if child.name().startswith("beam"):
                return int(child.pid)
    except psutil.NoSuchProcess:
        return None
    return None


@dataclass
class EjabberdProcess:
    proc: subprocess.Popen[bytes]
    beam: int
    port: int
    home: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def cpu(self) -> float:
        return cpu_seconds(self.beam)

    def stop(self) -> None:
        for pid in (self.proc.pid, self.beam):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def _answers(port: int, domain: str) -> bool:
    """Whether ejabberd answers a stream's opening with its features: it accepts connections
    before its hosts are ready, and a stream opened then may never be answered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(OPEN.format(to=quoteattr(domain)).encode())
            got = b""
            while b"</stream:features>" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                got += chunk
            return b"iq-register" in got  # its modules, too, are up (XEP-0077)
    except OSError:
        return False


def start_ejabberd(domain: str, pin: list[int]) -> EjabberdProcess:
    """A fresh ejabberd serving ``domain`` on a free loopback port, once it accepts clients.
    One that exits while starting is tried again (the first start on a machine fresh from
    ``apt install ejabberd`` has been seen to exit at once, the next to start)."""
    why = ""
    for _ in range(START_ATTEMPTS):
        started = _start_once(domain, pin)
        if isinstance(started, EjabberdProcess):
            return started
        why = started
    raise RuntimeError(f"ejabberd did not start ({START_ATTEMPTS} attempts): {why}")


def _start_once(domain: str, pin: list[int]) -> EjabberdProcess | str:
    """The server, or why it exited while starting (its console and log)."""
    ctl = ejabberdctl()
    if ctl is None:
        raise RuntimeError("ejabberd is not installed (apt install ejabberd)")
    home = Path(tempfile.mkdtemp(prefix="poolsim-ejabberd-"))
    (home / "db").mkdir()
    (home / "log").mkdir()
    port = _free_port()
    (home / "ejabberd.yml").write_text(CONFIG.format(domain=domain, port=port))
    if os.geteuid() == 0:
        shutil.chown(home, USER, USER)
        for path in home.rglob("*"):
            shutil.chown(path, USER, USER)
    node = f"poolsim-bench-{port}@localhost"
    argv = [ctl, "--config-dir", str(home), "--config", str(home / "ejabberd.yml")]
    argv += ["--spool", str(home / "db"), "--logs", str(home / "log"), "--node", node]
    with (home / "console.log").open("wb") as console:
        proc = subprocess.Popen(
            [*argv, "foreground"],
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=home,
            preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = [
                f.read_text(errors="replace")[-1000:]
                for f in (home / "console.log", home / "log" / "ejabberd.log")
                if f.exists()
            ]
            shutil.rmtree(home, ignore_errors=True)
            return f"exited ({proc.returncode}): " + " | ".join(said).strip()
        beam = _beam_pid(proc.pid)
        if beam is not None and _answers(port, domain):
            return EjabberdProcess(proc, beam, port, home)
        time.sleep(0.2)
    EjabberdProcess(proc, _beam_pid(proc.pid) or proc.pid, port, home).stop()
    raise RuntimeError(f"ejabberd did not listen on port {port} within {START_TIMEOUT:g}s")


OPEN = (
    "<?xml version='1.0'?><stream:stream to={to} xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)

#: (stanza name, its attributes, the text of its child elements by name)
Stanza = tuple[str, dict[str, str], dict[str, str]]


@dataclass
class _Parse:
    """expat over one XML stream: each top-level child (a stanza) handed on when it ends."""

    on_stanza: Callable[[Stanza], None]
    depth: int = 0
    name: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    child: str = ""
    parser: Any = None

    def __post_init__(self) -> None:
        p = expat.ParserCreate()
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        self.parser = p

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 2:
            self.name, self.attrs, self.texts = name, attrs, {}
        elif self.depth == 3:
            self.child = name
            self.texts.setdefault(name, "")

    def _end(self, name: str) -> None:
        if self.depth == 2:
            self.on_stanza((self.name, self.attrs, self.texts))
        self.depth -= 1

    def _text(self, data: str) -> None:
        if self.depth == 3:
            self.texts[self.child] += data


class XmppClient(asyncio.Protocol):
    """One XMPP client connection (see the module's text)."""

    def __init__(
        self,
        domain: str,
        user: str,
        password: str,
        on_message: Callable[[dict[str, str], dict[str, str]], None] | None = None,
        on_presence: Callable[[dict[str, str], dict[str, str]], None] | None = None,
    ) -> None:
        self.domain, self.user, self.password = domain, user, password
        self.jid = f"{user}@{domain}"
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._parse = _Parse(self._stanza)
        self._waiting: dict[str, asyncio.Future[Stanza]] = {}  # by stanza name or iq id
        self.on_message = on_message or _ignore  # (attributes, child texts) of each stanza
        self.on_presence = on_presence or _ignore
        self.closed = self.loop.create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._parse.parser.Parse(data, False)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.jid}: the stream ended"))

    def _stanza(self, stanza: Stanza) -> None:
        name, attrs, texts = stanza
        if name == "message":
            self.on_message(attrs, texts)
            return
        if name == "presence":
            if attrs.get("type") == "subscribe":  # accept every subscription request
                self.write(f"<presence to={quoteattr(attrs['from'])} type='subscribed'/>")
            self.on_presence(attrs, texts)
            return
        key = attrs.get("id", name) if name == "iq" else name
        if name in ("success", "failure"):
            key = "sasl"
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(stanza)

    def write(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode())

    async def _expect(self, key: str, text: str | None = None) -> Stanza:
        future: asyncio.Future[Stanza] = self.loop.create_future()
        self._waiting[key] = future
        if text is not None:
            self.write(text)
        return await asyncio.wait_for(future, START_TIMEOUT)

    async def _open(self) -> None:
        self._parse = _Parse(self._stanza)  # a new stream is a new XML document
        await self._expect("stream:features", OPEN.format(to=quoteattr(self.domain)))

    async def start(self, address: tuple[str, int]) -> None:
        """Connect, register the account, authenticate, bind, and send initial presence."""
        await self.loop.create_connection(lambda: self, *address)
        await self._open()
        user, password = escape(self.user), escape(self.password)
        query = f"<query xmlns='jabber:iq:register'><username>{user}</username>"
        query += f"<password>{password}</password></query>"
        _, attrs, _ = await self._expect("reg", f"<iq type='set' id='reg'>{query}</iq>")
        if attrs.get("type") != "result":
            raise ConnectionError(f"{self.jid}: in-band registration refused")
        plain = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        sasl = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        name, _, _ = await self._expect("sasl", f"{sasl}{plain}</auth>")
        if name != "success":
            raise ConnectionError(f"{self.jid}: authentication refused")
        await self._open()
        bind = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        bind += f"<resource>{RESOURCE}</resource></bind>"
        _, attrs, _ = await self._expect("bind", f"<iq type='set' id='bind'>{bind}</iq>")
        if attrs.get("type") != "result":
            raise ConnectionError(f"{self.jid}: bind refused")
        self.write("<presence/>")

    def message(self, to: str, body: str) -> None:
        body = escape(body)
        self.write(f"<message to='{to}/{RESOURCE}' type='chat'><body>{body}</body></message>")

    def presence(self, show: str, status: str) -> None:
        shown = f"<show>{show}</show>" if show else ""
        self.write(f"<presence>{shown}<status>{escape(status)}</status></presence>")

    def subscribe(self, to: str) -> None:
        self.write(f"<presence to='{to}' type='subscribe'/>")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.write("</stream:stream>")
            self.transport.close()


def _ignore(attrs: dict[str, str], texts: dict[str, str]) -> None:
    return None
