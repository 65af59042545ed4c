"""The commands: argument parsing, progress and summaries, exit codes. Each is a thin layer
over a library call below it; `scripts/*.py` and the Makefile call these."""
