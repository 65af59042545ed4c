#!/usr/bin/env python3
"""Ingest payment_intents (see --help)."""

from app.commands.cli import run_command
from app.commands.ingest import main

if __name__ == "__main__":
    run_command(lambda: main(resources=["payment_intents"]))
