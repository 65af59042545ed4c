"""Stripe exports on disk: a list envelope, a plain array or JSON Lines, in any layout.

Every object is decoded strictly (app.core.strict_json) and yielded one at a time, so memory
stays flat whatever the input size.
"""

from __future__ import annotations

import logging
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from app.core import strict_json
from app.core.errors import InputFileError
from app.core.strict_json import (
    KEPT_TEXT_BYTES,
    Oversized,
    array_elements,
    checked,
    decode_object,
    too_large,
)

log = logging.getLogger(__name__)


def read_json_objects(
    path: Path, *, opened: Callable[[IO[bytes]], None] | None = None
) -> Iterator[Any]:
    """Yield the objects of a Stripe export: a list envelope, a plain array, or JSON Lines.

    Every object is decoded strictly (app.core.strict_json): one that cannot be stored exactly is
    yielded as an `Unreadable` with its reason and text, and the loop sets it aside. A file that
    is not a Stripe export at all raises InputFileError naming the file before anything is
    yielded; one whose JSON breaks off raises it after the objects before the break.

    `opened(handle)` is shown the open file (progress measures the position read).
    """
    _check_regular_file(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputFileError(path, f"cannot be opened: {exc.strerror or exc}") from exc
    with handle:
        if opened is not None:
            opened(handle)
        first = _first_byte(handle)
        if first is None:
            raise InputFileError(path, "the file is empty; expected Stripe JSON")
        if first == b"[":
            yield from _one_per_line_or_split(handle, path, envelope=False)
            return
        if first != b"{":
            raise InputFileError(path, f"not JSON: starts with {first!r}; expected '{{' or '['")
        line = handle.readline(strict_json.MAX_OBJECT_BYTES + 1)
        try:
            head = orjson.loads(line)
        except orjson.JSONDecodeError:
            head = None  # an indented envelope or array, or a first line that is not whole
        if (isinstance(head, dict) and not _is_envelope(head)) or (
            head is None
            and not strict_json.opens_a_list(line)
            and _looks_like_json_lines(handle, line)
        ):
            handle.seek(0)
            yield from _json_lines(handle, path)
            return
        handle.seek(0)
        yield from _one_per_line_or_split(handle, path, envelope=True)


def _check_regular_file(path: Path) -> None:
    """Only regular files are read: a FIFO or a device would block or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(
            path, "file not found (run `make fetch`, or pass JSON_DIR=… / FILE=…)"
        ) from None
    except OSError as exc:
        raise InputFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise InputFileError(path, "is a directory; expected a JSON file")
    if not stat.S_ISREG(mode):
        raise InputFileError(
            path, "is not a regular file (a FIFO, socket or device); expected a JSON file"
        )


def _looks_like_json_lines(handle: IO[bytes], first_line: bytes) -> bool:
    """A first line that is one object which fails to decode, followed by a line that starts
    another object: JSON Lines whose first object is bad, not a pretty-printed envelope."""
    text = first_line.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return False
    for line in iter(lambda: handle.readline(1024), b""):
        if line.strip():
            return line.lstrip().startswith(b"{")
    return True


# the line that opens the array of objects: `[` for a plain array, `… "data": [` for an envelope
_OPENING = {False: re.compile(rb"^\s*\[\s*$"), True: re.compile(rb'"data"\s*:\s*\[\s*$')}
_HEADER_LINES = 50


def _one_per_line_or_split(handle: IO[bytes], path: Path, envelope: bool) -> Iterator[Any]:
    """Fast path for the layouts the fetchers write and Stripe exports use: one object per line
    inside the array, the comma between two objects at the end of a line or at the start of the
    next (the fetchers write `,{…}`). Anything else (pretty-printed, everything on one line, a
    missing or doubled comma…) goes to the array splitter, which names what is wrong, skipping
    the objects the fast path has already yielded."""
    yielded = 0
    header = b""
    for number in range(_HEADER_LINES + 1):
        line = handle.readline(strict_json.MAX_OBJECT_BYTES)
        header += line
        if not line or _OPENING[envelope].search(line.rstrip()) or number == _HEADER_LINES:
            break
    if _OPENING[envelope].search(header.rstrip()):
        comma = None  # before the first object: None; then whether a comma followed the last
        for line in iter(lambda: handle.readline(strict_json.MAX_OBJECT_BYTES + 2), b""):
            text = line.strip()
            if text.startswith(b"]") and comma is not True:
                _check_trailer(
                    header, text + handle.read(strict_json.MAX_OBJECT_BYTES), path, yielded
                )
                return
            if text.startswith(b","):
                if comma is not False:
                    break  # a comma with no object before it, or a second one
                text = text[1:].lstrip()
            elif comma is False:
                break  # two objects with no comma between them
            comma = text.endswith(b",")
            if comma:
                text = text[:-1].rstrip()
            if not (text.startswith(b"{") and text.endswith(b"}")):
                break  # not one object per line after all
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                break  # the splitter says why, naming the object
            if not isinstance(obj, dict):
                break
            yielded += 1
            yield checked(obj, text, yielded)
    handle.seek(0)
    for index, obj in enumerate(_split(handle, path, envelope)):
        if index >= yielded:
            yield obj


def _split(handle: IO[bytes], path: Path, envelope: bool) -> Iterator[Any]:
    for position, element in enumerate(array_elements(handle, path, envelope), start=1):
        if isinstance(element, Oversized):
            yield too_large(position, element.size, element.head)
        else:
            yield decode_object(element, position)


def _check_trailer(header: bytes, trailer: bytes, path: Path, count: int) -> None:
    """What surrounds the objects must itself be valid JSON, as a streaming parser would insist."""
    try:
        orjson.loads(header + trailer)
    except orjson.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON after {count} objects: {exc}") from exc


def _first_byte(handle: IO[bytes]) -> bytes | None:
    while True:
        char = handle.read(1)
        if not char:
            return None
        if not char.isspace():
            handle.seek(handle.tell() - 1)
            return char


def _is_envelope(obj: dict[str, Any]) -> bool:
    return obj.get("object") == "list" or ("data" in obj and "id" not in obj)


def _json_lines(handle: IO[bytes], path: Path) -> Iterator[Any]:
    for number, line in enumerate(
        iter(lambda: handle.readline(strict_json.MAX_OBJECT_BYTES + 2), b""), 1
    ):
        if len(line) > strict_json.MAX_OBJECT_BYTES and not line.endswith(b"\n"):
            size, head = len(line), line[:KEPT_TEXT_BYTES]
            while line and not line.endswith(b"\n"):  # the rest of the line, let go of
                line = handle.readline(_SKIP)
                size += len(line)
            yield too_large(number, size - line.endswith(b"\n"), head, "line")
            continue
        if line.strip():
            yield decode_object(line.strip(), number, "line")


_SKIP = 1 << 20
