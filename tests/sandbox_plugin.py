"""Pytest fixtures for the local Stripe sandbox (registered from tests/conftest.py).

- `sandbox`: a sandbox on a free port, shared by the session and emptied before each test.
- `stripe_sdk`: the `stripe` module pointed at that sandbox (api_base, an sk_test_ key, no retries),
  restored afterwards.
- `sandbox_factory(**options)`: a separate sandbox with options (rate limits, faults), stopped
  at the end of the test.
- `stripe_examples`: Stripe's example objects from fixtures3.json (tests/conftest.py's `fixtures3`,
  which fails saying where to put the file when it is missing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import stripe

from app.sandbox.server import SandboxHandle, run_in_thread

TEST_KEY = "sk_test_sandbox_tests"


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxHandle]:
    handle = run_in_thread(0)
    yield handle
    handle.stop()


@pytest.fixture()
def sandbox(sandbox_server: SandboxHandle) -> SandboxHandle:
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture()
def stripe_sdk(sandbox: SandboxHandle) -> Iterator[ModuleType]:
    saved = (stripe.api_base, stripe.api_key, stripe.max_network_retries)
    stripe.api_base, stripe.api_key, stripe.max_network_retries = sandbox.url, TEST_KEY, 0
    try:
        yield stripe
    finally:
        stripe.api_base, stripe.api_key, stripe.max_network_retries = saved


@pytest.fixture()
def sandbox_factory() -> Iterator[Callable[..., SandboxHandle]]:
    handles: list[SandboxHandle] = []

    def make(**options: Any) -> SandboxHandle:
        handle = run_in_thread(0, **options)
        handles.append(handle)
        return handle

    yield make
    for handle in handles:
        handle.stop()


@pytest.fixture(scope="session")
def stripe_examples(fixtures3: dict[str, Any]) -> dict[str, Any]:
    return fixtures3
