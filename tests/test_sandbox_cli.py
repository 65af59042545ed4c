"""`python -m app.sandbox`: start (twice), status, seed, reset, stop, as a user runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# `python -m app.sandbox` in processes of its own
pytestmark = pytest.mark.e2e


@dataclass
class Cli:
    """The CLI on a free port, with its pid and log files in a temporary directory."""

    port: int
    state: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SANDBOX_STATE_DIR": str(self.state), "SANDBOX_PORT": str(self.port)}
        return subprocess.run(
            [sys.executable, "-m", "app.sandbox", *args],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip


@pytest.fixture()
def cli(tmp_path: Path) -> Iterator[Cli]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    runner = Cli(port, tmp_path)
    yield runner
    runner("stop")


def test_start_twice_status_seed_reset_stop(cli: Cli) -> None:
    started = cli("start")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == f"http://127.0.0.1:{cli.port}"
    pid = int((cli.state / "sandbox.pid").read_text())
    again = cli("start")
    assert again.returncode == 0 and "already running" in again.stdout
    assert int((cli.state / "sandbox.pid").read_text()) == pid
    assert cli("status").returncode == 0
    seeded = cli("seed", "--customers", "50")
    assert seeded.returncode == 0 and "objects/s" in seeded.stdout
    assert "customer 50" in cli("status").stdout
    assert cli("reset").returncode == 0
    assert "empty" in cli("status").stdout
    assert cli("stop").returncode == 0
    status = cli("status")
    assert status.returncode == 3 and "not running" in status.stdout
    assert not (cli.state / "sandbox.pid").exists() and (cli.state / "sandbox.log").exists()


def test_commands_without_a_running_sandbox_say_so(cli: Cli) -> None:
    seeded = cli("seed", "--customers", "5")
    assert seeded.returncode == 3 and "start it with" in seeded.stderr
    assert cli("stop").returncode == 0


def test_help_explains_the_commands() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "app.sandbox", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0
    for command in ("start", "stop", "status", "reset", "seed", "serve"):
        assert command in shown.stdout


def test_webhook_options_reach_the_server() -> None:
    from app.sandbox.__main__ import _serve_args, _webhook_config, build_parser
    from app.sandbox.webhooks import WebhookConfig

    start = build_parser().parse_args(
        ["start", "--no-persist", "--webhook-retry-base", "0.2", "--webhook-max-attempts", "8",
         "--webhook-shuffle", "--webhook-duplicate-rate", "0.1", "--fault-seed", "3"]
    )  # fmt: skip
    serve = build_parser().parse_args(["serve", *_serve_args(start)])
    assert _webhook_config(serve) == WebhookConfig(
        retry_base=0.2, max_attempts=8, shuffle=True, duplicate_rate=0.1, seed=3
    )
    assert _webhook_config(build_parser().parse_args(["serve"])) == WebhookConfig()


def test_seed_draws_its_progress_as_plain_lines_when_stderr_is_a_pipe(cli: Cli) -> None:
    assert cli("start").returncode == 0
    os.environ["PROGRESS_INTERVAL"] = "0.1"
    try:
        seeded = cli("seed", "--customers", "3000")
        quiet = cli("seed", "--customers", "10", "-q")
    finally:
        del os.environ["PROGRESS_INTERVAL"]
    assert seeded.returncode == 0, seeded.stderr
    assert "seed customers: 3,000 customers in" in seeded.stderr  # each step's closing line
    assert "\x1b[" not in seeded.stderr  # no terminal escapes in a pipe
    assert "objects/s" in seeded.stdout
    assert quiet.returncode == 0 and quiet.stderr == ""
