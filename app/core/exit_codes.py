"""The exit-code contract of every command (README, "Exit codes").

The table is `exit_codes.env` beside this module, which the curl fetchers (scripts/fetch_lib.sh)
source too: one definition for both languages.
"""

from __future__ import annotations

from pathlib import Path


def _table() -> dict[str, int]:
    lines = Path(__file__).with_name("exit_codes.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {name: int(value) for name, value in pairs}


_CODES = _table()
EXIT_OK = _CODES["EXIT_OK"]
EXIT_PARTIAL = _CODES["EXIT_PARTIAL"]
EXIT_FAILED = _CODES["EXIT_FAILED"]
EXIT_INTERRUPTED = _CODES["EXIT_INTERRUPTED"]

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL"]
