#!/usr/bin/env python3
"""Ingest prices (see --help)."""

import sys

from app.ingest_command import main

if __name__ == "__main__":
    sys.exit(main(resources=["prices"]))
