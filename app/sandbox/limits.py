"""Opt-in rate limiting and fault injection, both off unless asked for."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


class TokenBucket:
    """`rate` requests per second with bursts up to `rate`, like Stripe's per-second limits."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class RateLimiter:
    """One bucket per mode (25/s test, 100/s live by default) and, optionally, per endpoint."""

    def __init__(
        self,
        *,
        test_rate: float = 25.0,
        live_rate: float = 100.0,
        endpoint_rate: float | None = None,
    ) -> None:
        self.rates = {False: test_rate, True: live_rate}
        self.endpoint_rate = endpoint_rate
        self._buckets: dict[tuple[bool, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, livemode: bool, scope: str, rate: float) -> TokenBucket:
        key = (livemode, scope)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(rate)
            return bucket

    def allow(self, livemode: bool, endpoint: str) -> bool:
        if (
            self.endpoint_rate is not None
            and not self._bucket(livemode, endpoint, self.endpoint_rate).allow()
        ):
            return False
        return self._bucket(livemode, "*", self.rates[livemode]).allow()


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0  # share of requests answered 500
    slow_rate: float = 0.0  # share delayed by slow_seconds before being served
    slow_seconds: float = 1.0
    drop_rate: float = 0.0  # share whose connection is closed without an answer
    seed: int | None = None

    @property
    def enabled(self) -> bool:
        return self.error_rate > 0 or self.slow_rate > 0 or self.drop_rate > 0


class FaultInjector:
    """Draws at most one fault per request; seeded, so a run's faults can be replayed."""

    def __init__(self, config: FaultConfig) -> None:
        total = config.error_rate + config.slow_rate + config.drop_rate
        if total > 1.0 or min(config.error_rate, config.slow_rate, config.drop_rate) < 0:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        self.config = config
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            roll = self._rng.random()
        config = self.config
        if roll < config.drop_rate:
            return "drop"
        roll -= config.drop_rate
        if roll < config.error_rate:
            return "error"
        roll -= config.error_rate
        if roll < config.slow_rate:
            return "slow"
        return None
