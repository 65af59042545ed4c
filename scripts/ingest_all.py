#!/usr/bin/env python3
"""Ingest every resource (or RESOURCES=…) in dependency order: products → … → charges."""

import sys

from app.ingest_command import main

if __name__ == "__main__":
    sys.exit(main())
