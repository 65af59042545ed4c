#!/usr/bin/env python3
"""Start, stop or show the dev (5434) and test (5435) PostgreSQL servers.

Uses `docker compose` when a Docker engine answers, and embedded PostgreSQL servers (from the
pgserver wheel, data under data/pg/) otherwise. Every action is idempotent.
"""

import argparse
import sys

from app.db import servers
from app.errors import PipelineError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        lines = {"up": servers.up, "down": servers.down, "status": servers.status}[args.action]()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
