#!/usr/bin/env python3
"""Autogenerate an Alembic revision from the models, or say that none is needed.

The dev database is brought to head first, then compared with the models: when they agree
nothing is written (so running it twice never makes an empty revision).
Exit codes: 0 done; 2 the database unreachable or an unexpected error; 130 interrupted.
"""

import argparse
import sys

from alembic import command

from app import schema
from app.commands.cli import EXIT_FAILED, add_debug_option, run_command
from app.core.config import load_settings, mask_secrets
from app.core.errors import PipelineError


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
    add_debug_option(parser)
    args = parser.parse_args(argv)
    try:
        url = load_settings().database_url
        schema.create_database(url)
        changes = schema.pending_changes(url)
    except PipelineError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    if not changes:
        print("models and migrations agree: no revision needed")
        return 0
    print(f"{len(changes)} difference(s) between the models and the migrations:")
    for change in changes:
        print(f"  {change}")
    command.revision(schema.alembic_config(url), message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    run_command(main)
