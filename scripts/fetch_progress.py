#!/usr/bin/env python
"""Draw the curl fetch's progress: scripts/fetch_stripe_data.sh starts this with a pipe on its
stdin and writes what it does there (app.core.progress.follow_feed tells the lines). On a terminal,
a bar per resource with its count, rate and ETA (payment methods: customers done of all), its
log lines above; in a pipe or a file, plain lines every PROGRESS_INTERVAL seconds (5). It ends
when the fetch closes the pipe; Ctrl-C is the fetch's to handle, not this drawer's.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.progress import ProgressBoard, follow_feed  # noqa: E402


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the fetch stops, then closes the pipe
    # the fetch's other pipes stay the fetch's: holding them would keep their readers waiting
    os.closerange(3, 1024)
    with ProgressBoard() as board:
        follow_feed(sys.stdin, board)
    return 0


if __name__ == "__main__":
    sys.exit(main())
