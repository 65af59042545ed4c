#!/usr/bin/env python
"""What the curl fetchers need from Python, so the registry and the settings stay the one source.

`list_resources.py [NAMES…]` prints one tab-separated line per resource, parents first:
    name  list_path  query  per_customer(0|1)  embedded
where query holds the registry's list params and expand[] (URL-encoded, without limit/cursor),
and embedded the lists Stripe embeds only a first page of, as `envelope|list_path` pairs joined by
"," (`lines|/v1/invoices/{id}/lines`: the parent's `lines`, paged at that path with {id} the
parent's id); "-" when there are none (tabs are whitespace to `read`, so no field may be empty).
`list_resources.py --shell [NAMES…]` prints the Stripe settings and those lines (as
RESOURCE_LINES) as shell assignments for `eval`: one Python start per fetch.
`list_resources.py --mask` prints its standard input with every secret masked.
Unknown names exit 2 with the list of known ones.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.client.budget import budget_rates  # noqa: E402
from app.client.stripe_api import (  # noqa: E402
    MAX_RATE_LIMIT_RETRIES,
    RETRY_AFTER_MAX_SECONDS,
    backoff_ceilings_ms,
)
from app.commands.cli import add_debug_option, run_command  # noqa: E402
from app.core.config import load_settings, mask_key, mask_secrets  # noqa: E402
from app.core.errors import PipelineError  # noqa: E402
from app.core.exit_codes import EXIT_FAILED  # noqa: E402
from app.registry import load_order  # noqa: E402


def resource_lines(names: list[str] | None, api_version: str) -> list[str]:
    lines = []
    for resource in load_order(names):
        expand = resource.expand_for(api_version)
        pairs = list(resource.list_params.items()) + [("expand[]", e) for e in expand]
        query = urlencode(pairs) or "-"
        embedded = ",".join(
            f"{'.'.join(child.envelope_path)}|{child.list_path}" for child in resource.children
        )
        per_customer = "1" if resource.per_customer else "0"
        lines.append(
            "\t".join((resource.name, resource.list_path, query, per_customer, embedded or "-"))
        )
    return lines


def settings_lines() -> list[str]:
    settings = load_settings()
    rate, endpoint_rate = budget_rates()
    values = {
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "STRIPE_API_VERSION": settings.stripe_api_version,
        "STRIPE_ACCOUNT": settings.stripe_account,
        "JSON_DIR": str(settings.json_dir),
        # the key as messages show it: the one masking, app.core.config's
        "STRIPE_KEY_MASKED": mask_key(settings.stripe_secret_key),
        # the budget's rates, requests/s in all and per endpoint (app.client.budget), and the
        # gaps in µs between two requests that the fetch's token files keep (0: none)
        "FETCH_RATE": f"{rate:g}",
        "FETCH_ENDPOINT_RATE": f"{endpoint_rate:g}",
        "BUDGET_GAP_US": str(int(1_000_000 / rate) if rate > 0 else 0),
        "ENDPOINT_GAP_US": str(int(1_000_000 / endpoint_rate) if endpoint_rate > 0 else 0),
        # the retry rules of every path (app.client.stripe_api)
        "RETRIES_DEFAULT": str(MAX_RATE_LIMIT_RETRIES),
        "RETRY_AFTER_MAX_S": str(RETRY_AFTER_MAX_SECONDS),
    }
    lines = [f"{key}={shlex.quote(value)}" for key, value in values.items()]
    return [*lines, f"BACKOFF_MS=({' '.join(str(ms) for ms in backoff_ceilings_ms())})"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help="resources (comma- or space-separated); all if none"
    )
    parser.add_argument(
        "--mask",
        action="store_true",
        help="print standard input with every secret masked (the fetchers' messages)",
    )
    parser.add_argument(
        "--shell",
        action="store_true",
        help="print settings and resource lines as shell assignments",
    )
    add_debug_option(parser)
    args = parser.parse_args(argv)
    if args.mask:
        load_settings()  # the configured key and passwords are masked whatever their shape
        sys.stdout.write(mask_secrets(sys.stdin.read()))
        return 0
    try:
        names = [n for arg in args.names for n in arg.replace(",", " ").split()]
        lines = resource_lines(names or None, load_settings().stripe_api_version)
        if args.shell:
            lines = settings_lines() + [f"RESOURCE_LINES={shlex.quote(chr(10).join(lines))}"]
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_command(main)
