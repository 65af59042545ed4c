#!/usr/bin/env python3
"""Start, stop or show the dev and test PostgreSQL servers (DATABASE_URL, TEST_DATABASE_URL).

A PostgreSQL that already answers at a configured URL with its credentials is used as it is
(another checkout's, a system one). Otherwise `docker compose` when a Docker engine answers,
and embedded PostgreSQL servers (from the pgserver wheel, data under data/pg/) otherwise.
Every action is idempotent. Exit codes: 0 done; 2 a server could not be started or a port is
taken by something that does not answer as that PostgreSQL; 130 interrupted.
"""

import argparse
import sys

from app.commands.cli import EXIT_FAILED, add_debug_option, run_command
from app.core.config import mask_secrets
from app.core.errors import PipelineError
from app.db import servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    add_debug_option(parser)
    args = parser.parse_args(argv)
    try:
        lines = {"up": servers.up, "down": servers.down, "status": servers.status}[args.action]()
    except PipelineError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_command(main)
