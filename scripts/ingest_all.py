#!/usr/bin/env python3
"""Ingest every resource (or RESOURCES=…) in dependency order: products → … → charges."""

from app.cli import run_command
from app.ingest_command import main

if __name__ == "__main__":
    run_command(main)
