"""Secrets out of sight: the users' password never printed and not only on the command line,
the data directory private, an admin token file others can read refused, metrics apart from
the gRPC address."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pool.cli import build_parser
from pool.serve_options import user_password
from pool.sqlite_store import SqliteStore
from standard.admin_token import load_or_create
from standard.server import private_data
from tests.test_process import running, serve_argv


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_password_comes_from_the_flag_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = build_parser().parse_args
    monkeypatch.delenv("POOLSIM_USER_PASSWORD", raising=False)
    assert user_password(parse(["serve"])) == "poolsim"
    monkeypatch.setenv("POOLSIM_USER_PASSWORD", "from-env")
    assert user_password(parse(["serve"])) == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n")
    assert user_password(parse(["serve", "--user-password-file", str(secret)])) == "from-file"
    assert user_password(parse(["serve", "--user-password", "from-flag"])) == "from-flag"
    with pytest.raises(SystemExit, match="not both"):
        user_password(parse(["serve", "--user-password", "a", "--user-password-file", "b"]))


def test_the_data_directory_and_its_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SqliteStore(private_data(data) / "pool.db").close()
    assert _mode(data) == 0o700
    for path in data.iterdir():
        assert _mode(path) == 0o600, path
    token = load_or_create(data / "admin.token", create=True)
    assert len(token) >= 16
    assert _mode(data / "admin.token") == 0o600
    (data / "pool.db").chmod(0o644)  # an older poolsim's file is made private at start
    data.chmod(0o755)
    private_data(data)
    assert (_mode(data), _mode(data / "pool.db")) == (0o700, 0o600)


def test_an_admin_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("a-token-of-twenty-characters\n")
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create(path, create=False)
    path.chmod(0o600)
    assert load_or_create(path, create=False) == "a-token-of-twenty-characters"


def test_serve_never_prints_the_password_and_keeps_metrics_on_loopback(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret-Passw0rd\n")
    argv = serve_argv(tmp_path / "data", "--user-password-file", str(secret))
    with running(argv, tmp_path) as server:
        output = "\n".join(server.output)
    assert "s3cret-Passw0rd" not in output
    assert "metrics: http://127.0.0.1:" in output
    assert _mode(tmp_path / "data") == 0o700
    assert os.stat(tmp_path / "data" / "pool.db").st_mode & 0o077 == 0
