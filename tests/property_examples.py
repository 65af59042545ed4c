"""How many examples each property test draws, set for every module at once by HYPOTHESIS_PROFILE:

- unset: each test's own count (`make test`);
- `fast`: a tenth of it, at least five (`make test-fast`, the edit loop);
- `slow`: ten times as many, or the count the test names for a slow run.

The explicit `@example`s, the failures hypothesis once found, run in every profile.
"""

from __future__ import annotations

import os

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "")


def examples(n: int, *, slow: int | None = None) -> int:
    if PROFILE == "fast":
        return max(5, n // 10)
    if PROFILE == "slow":
        return 10 * n if slow is None else slow
    return n
