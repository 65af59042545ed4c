#!/usr/bin/env python3
"""Autogenerate an Alembic revision from the models, or say that none is needed.

The dev database is brought to head first, then compared with the models: when they agree
nothing is written (so running it twice never makes an empty revision).
"""

import argparse
import sys

from alembic import command

from app.config import load_settings
from app.db import schema
from app.errors import PipelineError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-m",
        "--message",
        default="schema change",
        help="the revision's message (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        url = load_settings().database_url
        schema.create_database(url)
        changes = schema.pending_changes(url)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not changes:
        print("models and migrations agree: no revision needed")
        return 0
    print(f"{len(changes)} difference(s) between the models and the migrations:")
    for change in changes:
        print(f"  {change}")
    command.revision(schema.alembic_config(url), message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
