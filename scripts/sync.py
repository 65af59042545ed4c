#!/usr/bin/env python3
"""Keep the mirror current from Stripe's events: one pass, or --follow (`make sync FOLLOW=1`)."""

from app.cli import run_command
from app.sync_command import main

if __name__ == "__main__":
    run_command(main)
