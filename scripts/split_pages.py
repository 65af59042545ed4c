#!/usr/bin/env python
"""The curl fetch's page splitter: one process for the whole fetch instead of a jq per page.

    split_pages.py REQUESTS_FIFO

scripts/fetch_lib.sh starts it and writes to REQUESTS_FIFO one request per line (each line
written at once, so requests of workers writing together never interleave), tab-separated:

    reply_fifo  response  objects_out  envelopes  needs_out
    reply_fifo  response  page_out  envelopes  needs_out  state_out  pages  objects  cursor

For each, it reads the list page in `response` and writes its objects one per line to
objects_out and, when needs_out is named, the embedded lists that have more to it
(app.client.list_pages), then the page's head line ("has_more count last_id", or "not-a-list" /
"not-json") to reply_fifo, which the worker that asked holds open. The second form saves a page
of a chain whole (fetch_lib.sh's save_page, which does the same with jq and mv when the splitter
is off): its needs, then its objects (page_out), then the chain's state line ("pages objects cursor has_more", counting this page), each written
beside and renamed over its final name, so a fetch killed at any point leaves either the page
or not, and a state that never counts a page that is not on disk. It saves nothing when the
page is not a list that can be paged on. It ends when every process of the fetch has closed the
FIFO, or at once, quietly, when the fetch has already ended before it started (a fetch that
fails fast removes the FIFO); Ctrl-C is the fetch's to handle.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.client.list_pages import ListPage, split_list_page  # noqa: E402


def replace(path: str, data: bytes) -> None:
    """`path` holds `data` whole or keeps what it held: written beside it, then renamed."""
    temporary = f"{path}.split"
    with open(temporary, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def save_page(page: ListPage, page_out: str, needs_out: str, state: list[str]) -> None:
    """A chain's page and its state: nothing unless the head says the chain can go on."""
    state_out, pages, objects, cursor = state
    fields = page.head.split(" ")
    has_more, count, last = (fields + ["", "", ""])[:3]
    if has_more not in ("true", "false") or (has_more == "true" and last == "-"):
        return
    if needs_out:
        replace(needs_out, "".join(f"{line}\n" for line in page.needs).encode())
    replace(page_out, page.lines)
    cursor = last if last != "-" else cursor
    line = f"{int(pages) + 1} {int(objects) + int(count)} {cursor} {has_more}\n"
    replace(state_out, line.encode())


def answer(fields: list[str]) -> None:
    reply, response, objects_out, envelopes, needs_out = fields[:5]
    try:
        page = split_list_page(Path(response).read_bytes(), [e for e in envelopes.split(",") if e])
        if len(fields) == 9:
            save_page(page, objects_out, needs_out, fields[5:])
        else:
            Path(objects_out).write_bytes(page.lines)
            if needs_out:
                Path(needs_out).write_text("".join(f"{line}\n" for line in page.needs))
        head = page.head
    except (OSError, ValueError) as exc:
        head = f"not-readable {getattr(exc, 'strerror', None) or exc}".replace("\n", " ")
    try:  # never blocks: a worker that went away left no reader
        fd = os.open(reply, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return
        raise
    try:
        with os.fdopen(fd, "w") as out:
            out.write(head + "\n")
    except BrokenPipeError:
        pass  # the worker stopped between our open and write: nobody waits for this answer


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the fetch's other pipes stay the fetch's: holding them would keep their readers waiting
    os.closerange(3, 1024)
    try:
        requests = open(sys.argv[1], encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return 0  # the fetch ended (and removed the FIFO) before this process started: no pages
    with requests:
        for line in requests:
            fields = line.rstrip("\n").split("\t")
            if len(fields) in (5, 9):
                answer(fields)
    return 0


if __name__ == "__main__":
    sys.exit(main())
