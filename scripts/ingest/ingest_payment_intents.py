#!/usr/bin/env python3
"""Ingest payment_intents (see --help): the one ingest command, for the table this file is named after."""

from pathlib import Path

from app.commands.cli import run_command
from app.commands.ingest import main

if __name__ == "__main__":
    run_command(lambda: main(resources=[Path(__file__).stem.removeprefix("ingest_")]))
