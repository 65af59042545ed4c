#!/usr/bin/env python
"""Fill the Stripe test account or the local sandbox from data/fixtures/ (idempotent).

Exit codes: 0 everything created or found; 1 some objects failed (listed in the summary);
2 refused (ENV=PROD, live key), Stripe could not be used at all, or an unexpected error;
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.commands.cli import add_debug_option, log_to_stderr, run_command  # noqa: E402
from app.commands.populate import check_allowed, load_fixtures, populate  # noqa: E402
from app.core.config import PROJECT_ROOT, load_settings, mask_key, mask_secrets  # noqa: E402
from app.core.errors import PipelineError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Create the fixture products, prices, customers, cards and subscriptions in "
        "Stripe test mode (or the local sandbox); a second run creates nothing.",
        epilog="Refused under ENV=PROD and for live keys (sk_live_…, rk_live_…). Exit codes: 0 "
        "all created or found; 1 some objects failed; 2 refused or Stripe unusable; 130 "
        "interrupted. Environment: ENV, STRIPE_SECRET_KEY, STRIPE_API_BASE, STRIPE_API_VERSION.",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=PROJECT_ROOT / "data" / "fixtures",
        help="folder with products.json, prices.json, customers.json",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="cancel the fixture customers' subscriptions and create them again",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    add_debug_option(parser)
    args = parser.parse_args(argv)
    log_to_stderr(quiet=args.quiet)
    # the SDK logs every request at INFO: keep our own progress lines readable
    logging.getLogger("stripe").setLevel(logging.WARNING)
    try:
        settings = load_settings()
        check_allowed(settings)  # before anything is read or sent
        fixtures = load_fixtures(args.fixtures)
        print(
            f"populating {settings.stripe_api_base} (ENV={settings.env}, "
            f"key {mask_key(settings.stripe_secret_key)})",
            file=sys.stderr,
        )
        report = populate(settings, fixtures, force=args.force)
    except PipelineError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    print(report.table())
    if report.failed:
        print(f"\n{report.failed} failure(s): see above", file=sys.stderr)
        return 1
    if not report.created():
        print("\nnothing to create: everything was already there", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_command(main)
