"""The background sandbox keeps its state in a file: stop/start, SIGKILL, reset, a damaged file.

Each test runs the real CLI on a free port with SANDBOX_STATE_DIR in a temporary directory, so
neither data/sandbox nor port 12111 is touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import urllib3

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": "Bearer sk_test_persist"}
# background sandboxes started, killed and restarted through the CLI
pytestmark = pytest.mark.e2e


@dataclass
class Sandbox:
    """The CLI and HTTP API of one background sandbox in a temporary state directory."""

    port: int
    state: Path
    http: urllib3.PoolManager

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.state / "state.pickle"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SANDBOX_STATE_DIR": str(self.state), "SANDBOX_PORT": str(self.port)}
        env.pop("SANDBOX_PERSIST", None)
        return subprocess.run(
            [sys.executable, "-m", "app.sandbox", *args],
            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        started = self.cli("start")
        assert started.returncode == 0, started.stderr

    def call(self, method: str, path: str, **fields: str) -> Any:
        encoded = "&".join(f"{k}={v}" for k, v in fields.items())
        if method == "GET":
            response = self.http.request(method, self.url + path + "?" + encoded, headers=AUTH)
        else:
            response = self.http.request(
                method, self.url + path, body=encoded, headers={
                    **AUTH, "Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
        assert response.status == 200, response.data
        return orjson.loads(response.data)

    def wait_until_saved(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call("GET", "/_sandbox/health")["state_saved"]:
                return
            time.sleep(0.1)
        raise AssertionError(f"state not saved within {timeout}s")

    def pid(self) -> int:
        return int((self.state / "sandbox.pid").read_text())


@pytest.fixture()
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    runner = Sandbox(port, tmp_path, urllib3.PoolManager(retries=False, timeout=30))
    yield runner
    runner.cli("stop")


def test_objects_survive_stop_and_start_in_the_same_order(sandbox: Sandbox) -> None:
    sandbox.start()
    emails = [f"user{i}@example.com" for i in range(5)]
    for email in emails:
        sandbox.call("POST", "/v1/customers", email=email)
    product = sandbox.call("POST", "/v1/products", name="Pro")
    before = sandbox.call("GET", "/v1/customers", limit="100")["data"]
    events_before = sandbox.call("GET", "/v1/events", limit="100")["data"]
    assert sandbox.cli("stop").returncode == 0
    assert sandbox.state_file.is_file()

    sandbox.start()
    after = sandbox.call("GET", "/v1/customers", limit="100")["data"]
    assert after == before
    assert [c["email"] for c in after] == emails[::-1]
    assert sandbox.call("GET", f"/v1/products/{product['id']}")["name"] == "Pro"
    assert sandbox.call("GET", "/v1/events", limit="100")["data"] == events_before
    # Counters go on: a new customer gets a fresh id and lists first, ahead of the old ones.
    newest = sandbox.call("POST", "/v1/customers", email="late@example.com")
    listed = sandbox.call("GET", "/v1/customers", limit="100")["data"]
    assert newest["id"] not in {c["id"] for c in before}
    assert [c["id"] for c in listed] == [newest["id"]] + [c["id"] for c in before]


def test_a_killed_sandbox_keeps_what_was_saved(sandbox: Sandbox) -> None:
    sandbox.start()
    customer = sandbox.call("POST", "/v1/customers", email="kill@example.com")
    sandbox.wait_until_saved()
    os.kill(sandbox.pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while sandbox.cli("status").returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

    sandbox.start()
    found = sandbox.call("GET", f"/v1/customers/{customer['id']}")
    assert found["email"] == "kill@example.com"


def test_reset_empties_the_state_file(sandbox: Sandbox) -> None:
    sandbox.start()
    sandbox.call("POST", "/v1/customers", email="gone@example.com")
    sandbox.wait_until_saved()
    assert sandbox.cli("reset").returncode == 0
    # Killed right after the reset: nothing may come back.
    os.kill(sandbox.pid(), signal.SIGKILL)
    time.sleep(0.2)
    sandbox.start()
    assert sandbox.call("GET", "/v1/customers")["data"] == []
    assert "empty" in sandbox.cli("status").stdout


def test_a_damaged_state_file_stops_the_start_and_names_the_file(sandbox: Sandbox) -> None:
    sandbox.state.mkdir(exist_ok=True)
    sandbox.state_file.write_bytes(b"\x80\x05 this is not a pickle")
    started = sandbox.cli("start")
    assert started.returncode == 1
    assert str(sandbox.state_file) in started.stderr
    assert "delete it to start with an empty sandbox" in started.stderr
    assert sandbox.state_file.read_bytes().startswith(b"\x80\x05 this")  # left for the user


def test_no_persist_keeps_state_in_memory_only(sandbox: Sandbox) -> None:
    started = sandbox.cli("start", "--no-persist")
    assert started.returncode == 0, started.stderr
    sandbox.call("POST", "/v1/customers", email="memory@example.com")
    assert "memory only" in sandbox.cli("status").stdout
    assert sandbox.cli("stop").returncode == 0
    assert not sandbox.state_file.exists()


def test_two_sandboxes_cannot_share_a_state_file(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        other_port = int(sock.getsockname()[1])
    other = Sandbox(other_port, tmp_path / "other", sandbox.http)
    started = other.cli("start", "--state-file", str(sandbox.state_file), "--wait", "20")
    assert started.returncode == 1
    assert "another sandbox" in started.stderr and str(sandbox.state_file) in started.stderr
    assert sandbox.cli("status").returncode == 0  # the first one is untouched
