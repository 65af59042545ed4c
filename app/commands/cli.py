"""How every command ends: one exit-code contract, one line per failure, no tracebacks.

Exit codes, for every script (and the bash fetchers; the table is app/core/exit_codes.env, read by app/core/exit_codes.py):
  0    everything done (all stored, the database agrees, ...)
  1    the work was done but some objects were set aside (ingest, populate) or differences
       were found (check-db) — and nothing else
  2    a file, the database or the configuration failed, or an unexpected error
  130  interrupted (Ctrl-C)

An unexpected error prints one line on stderr; `--debug` or STRIPE_MIRROR_DEBUG=1 prints the
traceback too. Secrets are masked either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from app.core.config import mask_secrets
from app.core.errors import PipelineError, first_line
from app.core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK

DEBUG_FLAG = "--debug"
DEBUG_ENV = "STRIPE_MIRROR_DEBUG"


def log_to_stderr(*, quiet: bool) -> None:
    """The commands' log: messages alone on stderr; `-q` keeps warnings and errors only."""
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """Every command takes --debug, so its --help says so (run_command reads it)."""
    parser.add_argument(
        DEBUG_FLAG,
        action="store_true",
        help=f"print the traceback of an unexpected error (or set {DEBUG_ENV}=1)",
    )


def debug_requested(argv: list[str] | None = None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report_failure(exc: BaseException, *, debug: bool) -> int:
    """Say what went wrong on stderr, in one line unless asked for more; the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    if debug:
        sys.stderr.write(mask_secrets("".join(traceback.format_exception(exc))))
    if isinstance(exc, PipelineError):
        sys.stderr.write(f"error: {mask_secrets(str(exc))}\n")
    else:
        hint = "" if debug else f" (run with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)"
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {mask_secrets(first_line(exc))}{hint}\n"
        )
    return EXIT_FAILED


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's main and exit with the contract's code, whatever happens in it."""
    debug = debug_requested()
    try:
        code = main()
    except SystemExit as exc:
        # argparse exits 0 (--help) or 2 (usage); a message passed to sys.exit is a failure
        if exc.code is None or isinstance(exc.code, int):
            raise
        sys.stderr.write(f"error: {mask_secrets(str(exc.code))}\n")
        code = EXIT_FAILED
    except BrokenPipeError:
        # the reader went away (`| head`): nothing more can be said on stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_FAILED
    except BaseException as exc:  # noqa: BLE001 — the one place every failure ends up
        code = report_failure(exc, debug=debug)
    sys.exit(EXIT_OK if code is None else code)
