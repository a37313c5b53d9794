"""The real `poolsim serve` process: persistence across kill -9, SIGTERM, the admin token file,
the metrics endpoint, refusals of the command line and `poolsim status`.

Every server runs as a child process on port 0 with its data dir under ``tmp_path``; the
addresses come from the lines it prints. Each child is killed in a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api import convert
from pool.client import PoolClient, Session
from pool.errors import PoolError
from pool.privacy import AccessLevel

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "poolsim"
DEADLINE = 30.0  # seconds a start, a stop or a condition may take before a test fails
SERVING = re.compile(r"serving on (\S+) \(plaintext\)")
METRICS = re.compile(r"^metrics: (http://\S+/metrics)$")
TOKEN = re.compile(r"^admin token: (.+)$")


def uri(i: int) -> str:
    return f"sip:user{i}@contoso.com"


def _env() -> dict[str, str]:
    """The child imports this checkout's code, whatever the current directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def serve_argv(data_dir: Path, *extra: str, users: int | None = 5) -> list[str]:
    argv = [sys.executable, "-m", "pool.cli", "serve", "--port", "0", "--metrics-port", "0"]
    argv += ["--data-dir", str(data_dir), "--password-iterations", "1000"]
    if users is not None:
        argv += ["--users", str(users)]
    return [*argv, *extra]


class ServerProcess:
    """A running `poolsim serve`: its output, read line by line on a thread, with deadlines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address = ""
        self.metrics_url = ""
        self.token_path = Path()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, pattern: re.Pattern[str], deadline: float = DEADLINE) -> re.Match[str]:
        """The next printed line matching ``pattern`` (earlier lines are kept in ``output``)."""
        end = time.monotonic() + deadline
        while (left := end - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)  # later calls see the end too
                raise AssertionError(
                    f"poolsim exited ({self.proc.poll()}) before printing "
                    f"{pattern.pattern!r}; output:\n" + "\n".join(self.output)
                )
            self.output.append(line)
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError(
            f"no line matching {pattern.pattern!r} within {deadline} s; output:\n"
            + "\n".join(self.output)
        )

    def wait_started(self) -> None:
        self.address = self.expect(SERVING).group(1)
        self.metrics_url = self.expect(METRICS).group(1)
        self.token_path = Path(self.expect(TOKEN).group(1))
        self.expect(re.compile(r"^stop with Ctrl-C or SIGTERM$"))

    def rest_of_output(self) -> str:
        """Everything printed, once the process has exited and its pipe is drained."""
        self._reader.join(DEADLINE)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._lines.put(None)
                break
            self.output.append(line)
        return "\n".join(self.output)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        self._reader.join(DEADLINE)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def running(argv: list[str], cwd: Path) -> Iterator[ServerProcess]:
    """Start `poolsim serve`, wait until it says where it serves; kill it on the way out."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # logs too: one pipe, always drained by the reader thread
        text=True,
    )
    server = ServerProcess(proc)
    try:
        server.wait_started()
        yield server
    except BaseException as exc:  # what the server printed says what it was doing meanwhile
        status = proc.poll()
        server.kill()
        state = "was still running" if status is None else f"had exited ({status})"
        exc.add_note(f"poolsim serve {state}; it printed:\n{server.rest_of_output()}")
        raise
    finally:
        server.kill()


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run a command that should end by itself: (exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=DEADLINE)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def registration_reasons(records: list[apb.CallDetailRecord]) -> dict[str, str]:
    """endpoint id -> de-registration reason, from the registration records."""
    reasons: dict[str, str] = {}
    for record in records:
        if record.WhichOneof("record") == "registration":
            reg = record.registration
            reasons[reg.endpoint_id] = convert.REASON_NAMES[reg.deregister_reason]
    return reasons


# --- a. persistence across kill -9 ---


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    contacts = {
        (uri(1), AccessLevel.WORKGROUP, "Team"),
        (uri(2), AccessLevel.FRIENDS_AND_FAMILY, "Family"),
        (uri(3), AccessLevel.BLOCKED, "Other Contacts"),  # the default group
        (uri(4), AccessLevel.EXTERNAL, "Vendors"),
    }
    with running(serve_argv(data), tmp_path) as first:
        token_before = first.token_path.read_text()
        async with PoolClient(first.address) as client:
            alice = await client.sign_in(uri(0), PASSWORD)
            for contact, level, group in sorted(contacts):
                given = "" if group == "Other Contacts" else group
                added = await alice.add_contact(contact, level, given)
                assert (added.access_level, added.group) == (level, group)
            mine = await alice.publish_presence(6500, note="in the lab until 5")
            assert (mine.availability, mine.note) == (6500, "in the lab until 5")
            # the calls were acknowledged: kill at once, no chance to flush or close anything
            first.proc.kill()  # SIGKILL
            assert first.proc.wait(DEADLINE) == -signal.SIGKILL

    with running(serve_argv(data, users=None), tmp_path) as second:
        assert "users: 5 loaded from" in "\n".join(second.output)
        assert second.token_path == first.token_path
        assert second.token_path.read_text() == token_before
        token = token_before.strip()
        async with PoolClient(second.address) as client:
            alice = await client.sign_in(uri(0), PASSWORD)
            found = {(c.user_uri, c.access_level, c.group) for c in await alice.list_contacts()}
            assert found == contacts
            bob = await client.sign_in(uri(1), PASSWORD)  # a Workgroup contact: sees the note
            seen = (await bob.get_presence([uri(0)]))[0]
            assert (seen.availability, seen.note) == (6500, "in the lab until 5")
            status = await client.admin(token).status()
            assert status.users_provisioned == 5
            for i in range(5):  # every user can still sign in with the old password
                await (await client.sign_in(uri(i), PASSWORD, device="check")).sign_out()


# --- b. SIGTERM ---


async def test_sigterm_signs_everyone_out_with_records_and_exits_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    events: list[pb.Event] = []
    ended: list[str] = []
    got_event = asyncio.Event()

    async def read(session: Session) -> None:
        try:
            async for event in session.events():
                events.append(event)
                got_event.set()
            ended.append("ok")
        except PoolError as exc:
            ended.append(f"error: {exc}")

    with running(serve_argv(data), tmp_path) as server:
        async with PoolClient(server.address) as client:
            alice = await client.sign_in(uri(0), PASSWORD, device="desktop")
            bob = await client.sign_in(uri(1), PASSWORD, device="phone")
            reader = asyncio.get_running_loop().create_task(read(alice))
            try:
                await alice.subscribe([uri(1)])
                await bob.publish_presence(6500)
                # the stream is open: a presence change of bob reached it
                async with asyncio.timeout(DEADLINE):
                    while not any(
                        e.WhichOneof("kind") == "presence"
                        and e.presence.presence.user_uri == uri(1)
                        and e.presence.presence.availability == 6500
                        for e in events
                    ):
                        got_event.clear()
                        await got_event.wait()

                server.proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(server.proc.wait, DEADLINE)
                assert code == 0, server.rest_of_output()
                async with asyncio.timeout(DEADLINE):
                    await reader
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        output = server.rest_of_output()
        assert "stopping: signing endpoints out" in output
        assert "stopped" in output.splitlines()

    assert ended, "the event stream did not end"
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[-1] == "signed_out", (kinds, ended)
    assert events[-1].signed_out.reason == pb.END_REASON_SERVER_SHUTDOWN
    assert ended == ["ok"]

    with running(serve_argv(data), tmp_path) as again:  # --users 5 again: the 5 are kept
        assert any("0 provisioned, 5 already there" in line for line in again.output)
        token = again.token_path.read_text().strip()
        async with PoolClient(again.address) as client:
            reasons = registration_reasons(await client.admin(token).call_detail_records())
    assert reasons.get(alice.endpoint_id) == "server-shutdown"
    assert reasons.get(bob.endpoint_id) == "server-shutdown"


# --- c. the admin token file ---


def test_admin_token_file_is_made_private_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running(serve_argv(data), tmp_path) as server:
        assert server.token_path == data / "admin.token"
        mode = server.token_path.stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
        assert len(server.token_path.read_text().strip()) >= 16


def test_missing_admin_token_file_is_refused_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "admin.token"
    code, out, err = run_cli(
        serve_argv(tmp_path / "data", "--admin-token-file", str(missing)), tmp_path
    )
    assert code != 0
    assert str(missing) in err, (out, err)
    assert "serving on" not in out
    assert not missing.exists()


async def test_given_admin_token_file_is_used(tmp_path: Path) -> None:
    token_file = tmp_path / "secret.token"
    token_file.write_text("a-token-the-operator-chose-0123\n")
    token_file.chmod(0o600)  # one that others can read is refused
    argv = serve_argv(tmp_path / "data", "--admin-token-file", str(token_file))
    with running(argv, tmp_path) as server:
        assert server.token_path == token_file
        assert not (tmp_path / "data" / "admin.token").exists()
        async with PoolClient(server.address) as client:
            status = await client.admin("a-token-the-operator-chose-0123").status()
    assert status.users_provisioned == 5


# --- d. metrics ---


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        assert response.status == 200
        body: bytes = response.read()
        return body.decode()


async def test_metrics_endpoint_serves_the_gauges(tmp_path: Path) -> None:
    with running(serve_argv(tmp_path / "data"), tmp_path) as server:
        text = await asyncio.to_thread(_scrape, server.metrics_url)
        assert re.search(r"^poolsim_endpoints_active 0\.0$", text, re.M), text
        assert re.search(r"^poolsim_users_provisioned 5\.0$", text, re.M)
        async with PoolClient(server.address) as client:
            await client.sign_in(uri(0), PASSWORD)
            text = await asyncio.to_thread(_scrape, server.metrics_url)
        assert re.search(r"^poolsim_endpoints_active 1\.0$", text, re.M), text
        assert re.search(r"^poolsim_logon_attempts_total 1\.0$", text, re.M)


# --- e. refusals of the command line ---


def test_plaintext_on_a_public_address_is_refused(tmp_path: Path) -> None:
    code, out, err = run_cli(serve_argv(tmp_path / "data", "--host", "0.0.0.0"), tmp_path)
    assert code != 0
    assert "--insecure" in out + err
    assert "serving on" not in out


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    cert.write_text("not used\n")
    code, out, err = run_cli(serve_argv(tmp_path / "data", "--tls-cert", str(cert)), tmp_path)
    assert code != 0
    assert "--tls-key" in out + err
    assert "serving on" not in out


@pytest.mark.parametrize(
    ("flag", "value", "setting"),
    [
        ("--registration-expiry", "5", "registration_expiry"),
        ("--idle-timeout", "10", "idle_inactive"),
        ("--event-queue", "0", "event_queue_capacity"),
        ("--max-contacts", "5000", "max_contacts"),
    ],
)
def test_bad_setting_exits_2_naming_it(tmp_path: Path, flag: str, value: str, setting: str) -> None:
    code, out, err = run_cli(serve_argv(tmp_path / "data", flag, value), tmp_path)
    assert code == 2, (out, err)
    assert setting in err
    assert "serving on" not in out


# --- f. poolsim status ---


def test_status_prints_front_end_quorum_and_groups(tmp_path: Path) -> None:
    with running(serve_argv(tmp_path / "data"), tmp_path) as server:
        argv = [sys.executable, "-m", "pool.cli", "status", "--address", server.address]
        argv += ["--admin-token-file", str(server.token_path)]
        code, out, err = run_cli(argv, tmp_path)
    assert code == 0, err
    assert "fe1" in out
    assert "has-quorum" in out
    assert server.address in out
    groups = [
        line for line in out.splitlines() if re.match(r"^\s*\d+\s+healthy\s+fe1\s+-\s+\d+$", line)
    ]
    assert len(groups) == 8, out
    assert sum(int(line.split()[-1]) for line in groups) == 5


@pytest.mark.parametrize("case", ["wrong-token", "server-gone"])
def test_status_failure_is_one_line_not_a_traceback(tmp_path: Path, case: str) -> None:
    token_file = tmp_path / "status.token"
    with running(serve_argv(tmp_path / "data"), tmp_path) as server:
        if case == "wrong-token":
            token_file.write_text("not-the-admin-token-0123456789\n")
        else:
            token_file.write_text(server.token_path.read_text())
            server.kill()  # nothing listens on its port any more
        argv = [sys.executable, "-m", "pool.cli", "status", "--address", server.address]
        argv += ["--admin-token-file", str(token_file)]
        code, _out, err = run_cli(argv, tmp_path)
    assert code != 0
    assert "Traceback" not in err, err
    assert err.startswith("poolsim: "), err
    assert len(err.strip().splitlines()) == 1, err
