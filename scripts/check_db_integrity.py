#!/usr/bin/env python3
"""Check that the database mirrors Stripe, table by table and field by field (see --help)."""

from app.commands.check_db import main
from app.commands.cli import run_command

if __name__ == "__main__":
    run_command(main)
