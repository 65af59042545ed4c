#!/usr/bin/env python3
"""Ingest every resource (or RESOURCES=…) in dependency order: products → … → charges."""

from app.commands.cli import run_command
from app.commands.ingest import main

if __name__ == "__main__":
    run_command(main)
