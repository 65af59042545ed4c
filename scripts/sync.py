#!/usr/bin/env python3
"""Keep the mirror current from Stripe's events: one pass, or --follow (`make sync FOLLOW=1`)."""

from app.commands.cli import run_command
from app.commands.sync import main

if __name__ == "__main__":
    run_command(main)
