"""The command line's manners: --version, defaults in --help, durations with units, one clear
line for a busy port, one server per data directory, joining Ray with the cluster's token,
and the shipped monitoring files."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from enterprise import cluster
from pool import monitoring
from pool.cli import build_parser
from standard.data_lock import DataDirBusy, DataDirLock

REPO = Path(__file__).resolve().parents[1]


def poolsim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pool.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version_answers() -> None:
    done = poolsim("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"poolsim {version('poolsim')}"


def test_every_default_is_in_help() -> None:
    missing = []
    for name, sub in _subparsers().items():
        text = sub.format_help()
        for action in sub._actions:
            default = action.default
            if not action.option_strings or default in (None, False, [], argparse.SUPPRESS):
                continue
            if action.help is None or "default" not in sub._get_formatter()._expand_help(action):
                missing.append(f"{name} {action.option_strings[0]}")
        assert "(default" in text or "default " in text
    assert not missing, f"options whose --help does not give the default: {missing}"


@pytest.mark.parametrize(
    ("argv", "field", "seconds"),
    [
        (["run", "--duration", "5m"], "duration", 300.0),
        (["run", "--duration", "45"], "duration", 45.0),
        (["run", "--kill-front-end-at", "1m30s"], "kill_front_end_at", 90.0),
        (["serve", "--registration-expiry", "15m"], "registration_expiry", 900.0),
        (["serve", "--idle-timeout", "1h"], "idle_timeout", 3600.0),
        (["serve", "--backup-interval", "2m"], "backup_interval", 120.0),
        (["serve", "--heartbeat-interval", "250ms"], "heartbeat_interval", 0.25),
        (["plan", "--duration", "30s"], "duration", 30.0),
        (["serve"], "registration_expiry", 600.0),
        (["run"], "duration", 60.0),
    ],
)
def test_durations_take_units(argv: list[str], field: str, seconds: float) -> None:
    assert getattr(build_parser().parse_args(argv), field) == seconds


def test_a_bad_duration_is_one_line_naming_the_option() -> None:
    done = poolsim("run", "--duration", "5 minutes")
    assert done.returncode == 2
    assert "argument --duration" in done.stderr
    assert "30s, 5m, 2h, 1h30m" in done.stderr


@pytest.mark.parametrize("option", ["--port", "--metrics-port"])
def test_a_busy_port_is_one_line_naming_it(tmp_path: Path, option: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": "0", "--metrics-port": "0", option: str(port)}
        done = poolsim(
            "serve", *(x for kv in ports.items() for x in kv), "--data-dir", str(tmp_path)
        )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert option in lines[0]


def test_a_second_server_on_a_data_dir_refuses(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        done = poolsim("serve", "--port", "0", "--metrics-port", "-1", "--data-dir", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"poolsim: data directory {tmp_path} is in use by another poolsim server "
        f"(pid {os.getpid()}): stop it, or give this one its own --data-dir"
    )


def test_the_lock_goes_with_its_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire()
    with pytest.raises(DataDirBusy, match="in use by another poolsim server"):
        DataDirLock(tmp_path).acquire()
    first.release()
    with DataDirLock(tmp_path):
        pass


def test_token_at_hand_follows_rays_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not cluster.token_at_hand()
    assert not cluster.use_cluster_token()  # nothing to present: no change to Ray's mode
    assert "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t" * 32)
    assert cluster.token_at_hand()
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "elsewhere"))
    assert not cluster.token_at_hand()  # the path Ray was told to read wins
    monkeypatch.setenv("RAY_AUTH_TOKEN", "x" * 32)
    assert cluster.token_at_hand()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert not cluster.use_cluster_token()  # an explicit mode is respected
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert cluster.use_cluster_token()


def test_monitoring_writes_the_shipped_files(tmp_path: Path) -> None:
    pool = [
        monitoring.Target("127.0.0.1:9464", (("pool", "pool01"), ("front_end", "fe1"))),
        monitoring.Target("127.0.0.1:9465", (("pool", "pool01"), ("front_end", "fe2"))),
    ]
    written = monitoring.write(tmp_path, pool)
    assert sorted(p.name for p in written) == sorted(
        [*monitoring.FILES, monitoring.TARGETS, monitoring.DRIVER_TARGETS]
    )
    groups = json.loads((tmp_path / monitoring.TARGETS).read_text())
    assert groups[1] == {
        "targets": ["127.0.0.1:9465"],
        "labels": {"pool": "pool01", "front_end": "fe2"},
    }
    assert json.loads((tmp_path / monitoring.DRIVER_TARGETS).read_text()) == []
    again = monitoring.write(tmp_path, pool[:1], targets_only=True)
    assert [p.name for p in again] == [monitoring.TARGETS]  # the driver list is kept
    assert len(json.loads((tmp_path / monitoring.TARGETS).read_text())) == 1


def test_the_dashboard_covers_what_the_issue_lists() -> None:
    queries = " ".join(q for _, q in monitoring.dashboard_queries())
    for metric in (
        "poolsim_endpoints_active",
        "poolsim_users_signed_in",
        "poolsim_logon_attempts_total",
        "poolsim_logon_failures_total",
        "poolsim_presence_publishes_total",
        "poolsim_im_messages_sent_total",
        "grpc_server_handling_seconds_bucket",
        "grpc_server_handled_total",
        "poolsim:front_end_cpu:ratio",
        "poolsim_pool_routing_groups",
        "poolsim_pool_promotions_total",
        "poolsim_replication_seconds_bucket",
        "poolsim_events_dropped_total",
        "poolsim_driver_operations_total",
        "poolsim_driver_operation_seconds_bucket",
        "poolsim_driver_late_starts_total",
        "poolsim_driver_skipped_total",
        "poolsim_driver_loop_lag_seconds_bucket",
        "poolsim_driver_phase",
    ):
        assert metric in queries, metric


def test_promtool_accepts_the_shipped_config_and_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (CI installs Debian's prometheus package)")
    monitoring.write(tmp_path, [monitoring.Target("127.0.0.1:9464")])
    for args in (["config", "prometheus.yml"], ["rules", "poolsim-rules.yml"]):
        done = subprocess.run(
            [promtool, "check", args[0], str(tmp_path / args[1])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr
