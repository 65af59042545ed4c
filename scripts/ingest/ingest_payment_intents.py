#!/usr/bin/env python3
"""Ingest payment_intents (see --help)."""

import sys

from app.ingest_command import main

if __name__ == "__main__":
    sys.exit(main(resources=["payment_intents"]))
