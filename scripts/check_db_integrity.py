#!/usr/bin/env python3
"""Check that the database mirrors Stripe, table by table and field by field (see --help)."""

import sys

from app.reconcile_command import main

if __name__ == "__main__":
    sys.exit(main())
