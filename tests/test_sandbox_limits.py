"""Opt-in rate limits (429 with Stripe's body) and fault injection (500s, slow, dropped)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from app.sandbox.server import SandboxConfig, SandboxHandle

TEST = {"Authorization": "Bearer sk_test_limits"}
LIVE = {"Authorization": "Bearer sk_live_limits"}


def _burst(
    url: str, count: int, headers: dict[str, str]
) -> tuple[Counter[int], float, list[requests.Response]]:
    session = requests.Session()
    started = time.monotonic()
    responses = [session.get(url, headers=headers) for _ in range(count)]
    return Counter(r.status_code for r in responses), time.monotonic() - started, responses


def test_429s_appear_under_load_at_the_test_mode_rate(
    sandbox_factory: Callable[..., SandboxHandle],
) -> None:
    sandbox = sandbox_factory(rate_limit=True)
    statuses, elapsed, responses = _burst(f"{sandbox.url}/v1/customers", 80, TEST)
    assert statuses[429] > 0
    # A bucket of 25 plus what refills while the burst runs.
    assert statuses[200] <= 25 + 25 * elapsed + 1
    limited = next(r for r in responses if r.status_code == 429)
    error = limited.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit") and error[
        "message"
    ]
    assert limited.headers["Request-Id"].startswith("req_")


def test_live_mode_allows_100_per_second(sandbox_factory: Callable[..., SandboxHandle]) -> None:
    # Stripe's published limits are the defaults: 100/s live, 25/s in test mode
    assert (SandboxConfig().live_rate, SandboxConfig().test_rate) == (100.0, 25.0)
    # a live key draws from the live bucket, not the test one (rates scaled down so that a
    # sequential burst outruns them even on a busy machine: at 100/s it needs < 10 ms a request)
    sandbox = sandbox_factory(rate_limit=True, live_rate=40, test_rate=10)
    statuses, elapsed, _ = _burst(f"{sandbox.url}/v1/customers", 100, LIVE)
    assert statuses[429] > 0 and statuses[200] >= 40
    assert statuses[200] <= 40 + 40 * elapsed + 1


def test_per_endpoint_limit_leaves_other_endpoints_alone(
    sandbox_factory: Callable[..., SandboxHandle],
) -> None:
    sandbox = sandbox_factory(rate_limit=True, endpoint_rate=5, test_rate=1000)
    statuses, _, _ = _burst(f"{sandbox.url}/v1/customers", 15, TEST)
    assert statuses[429] > 0 and statuses[200] <= 7
    assert requests.get(f"{sandbox.url}/v1/products", headers=TEST).status_code == 200


def test_no_429_when_rate_limiting_is_off(sandbox: SandboxHandle) -> None:
    statuses, _, _ = _burst(f"{sandbox.url}/v1/customers", 300, TEST)
    assert statuses == Counter({200: 300})


@pytest.mark.slow
def test_injected_500s_appear_at_about_the_chosen_share(
    sandbox_factory: Callable[..., SandboxHandle],
) -> None:
    sandbox = sandbox_factory(error_rate=0.2, fault_seed=11)
    statuses, _, responses = _burst(f"{sandbox.url}/v1/customers", 500, TEST)
    assert set(statuses) == {200, 500}
    assert 0.14 <= statuses[500] / 500 <= 0.26
    failed = next(r for r in responses if r.status_code == 500)
    assert failed.json()["error"]["type"] == "api_error"


@pytest.mark.slow
def test_dropped_connections_and_slow_responses(
    sandbox_factory: Callable[..., SandboxHandle],
) -> None:
    sandbox = sandbox_factory(drop_rate=0.1, slow_rate=0.1, slow_seconds=0.05, fault_seed=5)
    session = requests.Session()
    dropped = slow = ok = 0
    for _ in range(300):
        started = time.monotonic()
        try:
            response = session.get(f"{sandbox.url}/v1/customers", headers=TEST, timeout=5)
        except requests.ConnectionError:
            dropped += 1
            continue
        assert response.status_code == 200
        ok += 1
        slow += time.monotonic() - started >= 0.05
    assert 0.05 <= dropped / 300 <= 0.16
    assert 0.05 <= slow / 300 <= 0.17
    assert ok + dropped == 300


@pytest.mark.slow
def test_faults_are_off_by_default(sandbox: SandboxHandle) -> None:
    statuses, elapsed, _ = _burst(f"{sandbox.url}/v1/products", 200, TEST)
    assert statuses == Counter({200: 200}) and elapsed < 10
