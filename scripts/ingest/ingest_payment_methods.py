#!/usr/bin/env python3
"""Ingest payment_methods (see --help)."""

from app.cli import run_command
from app.ingest_command import main

if __name__ == "__main__":
    run_command(lambda: main(resources=["payment_methods"]))
