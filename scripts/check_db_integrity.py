#!/usr/bin/env python3
"""Check that the database mirrors Stripe, table by table and field by field (see --help)."""

from app.cli import run_command
from app.reconcile_command import main

if __name__ == "__main__":
    run_command(main)
