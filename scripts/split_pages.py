#!/usr/bin/env python
"""The curl fetch's page splitter: one process for the whole fetch instead of a jq per page.

    split_pages.py REQUESTS_FIFO

scripts/fetch_lib.sh starts it and writes to REQUESTS_FIFO one request per line (each line
written at once, so requests of workers writing together never interleave):

    reply_fifo <TAB> response <TAB> objects_out <TAB> envelopes <TAB> needs_out

For each, it writes the page's objects one per line to objects_out and, when needs_out is
named, the embedded lists that have more to it (app.list_pages), then the page's head line
("has_more count last_id", or "not-a-list" / "not-json") to reply_fifo, which the worker that
asked holds open. It ends when every process of the fetch has closed the FIFO; Ctrl-C is the
fetch's to handle.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.list_pages import split_list_page  # noqa: E402


def answer(request: str) -> None:
    reply, response, objects_out, envelopes, needs_out = request.split("\t")
    try:
        page = split_list_page(Path(response).read_bytes(), [e for e in envelopes.split(",") if e])
        Path(objects_out).write_bytes(page.lines)
        if needs_out:
            Path(needs_out).write_text("".join(f"{line}\n" for line in page.needs))
        head = page.head
    except OSError as exc:
        head = f"not-readable {exc.strerror or exc}".replace("\n", " ")
    try:  # never blocks: a worker that went away left no reader
        fd = os.open(reply, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return
        raise
    with os.fdopen(fd, "w") as out:
        out.write(head + "\n")


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the fetch's other pipes stay the fetch's: holding them would keep their readers waiting
    os.closerange(3, 1024)
    with open(sys.argv[1], encoding="utf-8", errors="surrogateescape") as requests:
        for line in requests:
            fields = line.rstrip("\n")
            if fields.count("\t") == 4:
                answer(fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())
