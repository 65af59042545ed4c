#!/usr/bin/env python3
"""Create stripe_db_dev and stripe_db_test if missing and bring both schemas to Alembic's head.

With --reset the databases are dropped first (refused under ENV=PROD).
Exit codes: 0 done; 2 refused, the database unreachable or the migrations failed; 130 interrupted.
"""

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from app import schema
from app.client.stripe_api import mirrored_account
from app.commands.cli import add_debug_option, run_command
from app.core.config import DEFAULT_ACCOUNT, Settings, load_settings, mask_secrets, refuse_in_prod
from app.core.errors import ConfigError, PipelineError, first_line
from app.core.exit_codes import EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="drop and recreate the databases (DEV only): every row is lost",
    )
    parser.add_argument(
        "--only",
        choices=["dev", "test"],
        default=None,
        help="only this database (default: both; under ENV=PROD only DATABASE_URL)",
    )
    add_debug_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        settings = load_settings()
        if args.reset:
            refuse_in_prod(settings, "reset the databases")
        urls = {"dev": settings.database_url}
        if not settings.is_prod and settings.test_database_url:
            urls["test"] = settings.test_database_url
        if args.only:
            if args.only not in urls:
                raise ConfigError(f"no {args.only} database under ENV={settings.env}")
            urls = {args.only: urls[args.only]}
        for name, url in urls.items():
            if args.reset:
                schema.drop_database(url)
            created = schema.create_database(url)
            schema.upgrade(url, account=_account_of_old_rows(name, url, settings))
            state = "created, schema at head" if created else "exists, schema at head"
            print(f"{name}: {mask_secrets(url)} — {state}")
    except PipelineError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        reason = mask_secrets(first_line(getattr(exc, "orig", None) or exc))
        print(
            f"error: {name}: the migrations could not be applied: {reason}\n"
            "If this database holds tables Alembic did not create, `make reset-db` (DEV) "
            "recreates it empty.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _account_of_old_rows(name: str, url: str, settings: Settings) -> str | None:
    """A mirror made before rows recorded their account: its rows are given the key's account,
    as GET /v1/account names it (so the next SOURCE=api load or sync updates them rather than
    adding the account beside them), when STRIPE_ACCOUNT does not say it and the API answers;
    else the migration's own rule (STRIPE_ACCOUNT, else acct_default)."""
    if settings.stripe_account or not settings.stripe_secret_key:
        return None
    if not schema.rows_without_account(url):
        return None
    try:
        account = mirrored_account(settings)
    except PipelineError as exc:
        print(
            f"note: {name}: its rows get {DEFAULT_ACCOUNT}: the API did not name the key's "
            f"account ({mask_secrets(first_line(exc))}); to give them yours, run "
            "`.venv/bin/alembic -x account=acct_… upgrade head` instead",
            file=sys.stderr,
        )
        return None
    print(f"{name}: the rows of this mirror are given the key's account, {account}")
    return account


if __name__ == "__main__":
    run_command(main)
