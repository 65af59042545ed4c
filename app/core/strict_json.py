"""Decode Stripe objects so that what is stored is exactly what the input said, or nothing.

Every object of every input layout is parsed by one parser (orjson), which refuses invalid UTF-8
and lone surrogates instead of replacing them. What it would silently change is caught here: an
integer beyond 64 bits or a decimal beyond double precision (orjson reads both as an inexact
float). Objects nested deeper than MAX_DEPTH or larger than MAX_OBJECT_BYTES are refused before
anything deeper in the pipeline has to hold them. A refused object becomes an `Unreadable`, with
its source text, which the ingest sets aside with the reason; the rest of the input goes on.

`array_elements` cuts a JSON array (plain, or the `data` array of a Stripe list envelope) into
the source text of its elements while reading, whatever the layout (pretty-printed, all on one
line), holding at most one element in memory.
"""

from __future__ import annotations

import json
import re
import reprlib
import uuid
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

import orjson

from app.core.errors import InputFileError

# Stripe's objects are under 20 levels deep even with expand[] (its limit is 4 levels of
# expansion); 64 leaves room and stays far below the serializers' own limits (orjson writes
# 254 levels, Python's json about 1,000), so a refused object can always be written to the
# rejects file.
MAX_DEPTH = 64
# Stripe's largest objects (an invoice with expanded lines) are a few hundred KB
MAX_OBJECT_BYTES = 16 * 1024 * 1024
# the source text kept with an object refused for its size
KEPT_TEXT_BYTES = 64 * 1024

_INT_RANGE = (-(2**63), 2**64)  # the integers orjson reads exactly
_CHUNK = 1 << 20


class Unreadable:
    """An object of the input that cannot be stored exactly: set aside, the rest goes on.

    `position` is the line number (JSON Lines, one object per line) or the element number in
    the array (other layouts), counted from 1; `text` is the object's source text.
    """

    def __init__(self, position: int, reason: str, text: str) -> None:
        self.position = position
        self.reason = reason
        self.text = text

    def __repr__(self) -> str:
        return f"Unreadable({self.position}, {self.reason!r})"


_ID = re.compile(r'"id"\s*:\s*"([^"\\]{1,255})"')


def id_in_text(text: str) -> str | None:
    """The object's id, read from its text (the first `"id"`: Stripe puts it first)."""
    found = _ID.search(text[:4096])
    return found.group(1) if found else None


def source_text(text: bytes) -> str:
    """The source text as a string for the rejects file: exact where it is UTF-8."""
    return text.decode("utf-8", errors="backslashreplace")


def decode_object(text: bytes, position: int, where: str = "object") -> Any:
    """Parse one object's source text; an `Unreadable` saying why when it cannot be stored
    exactly."""
    if len(text) > MAX_OBJECT_BYTES:
        return too_large(position, len(text), text[:KEPT_TEXT_BYTES], where)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Unreadable(
            position, f"{where} {position} is not valid JSON: {exc}", source_text(text)
        )
    return checked(obj, text, position, where)


def checked(obj: Any, text: bytes, position: int, where: str = "object") -> Any:
    """`obj`, parsed from `text`, or an `Unreadable` when the parse did not keep it exactly or it
    is nested too deeply."""
    problem = inexact_number(text) or too_deep(obj, text)
    if problem:
        return Unreadable(position, f"{where} {position}: {problem}", source_text(text))
    return obj


def too_large(position: int, size: int, head: bytes, where: str = "object") -> Unreadable:
    return Unreadable(
        position,
        f"{where} {position} is {size:,} bytes, over the {MAX_OBJECT_BYTES:,}-byte limit "
        f"(its first {len(head):,} bytes are kept here)",
        source_text(head),
    )


# shorter numbers survive a round trip through a double, so only a run of 16 or more characters
# that could make a number needs a closer look; found by mapping those characters to "0" and
# the rest to " " (translate and `in` run at memory speed, a regex search does not). Except one
# kind: a number with an exponent of -100 or less may be below what a double holds (1e-400 reads
# as 0.0), looked for only where the text has an "e-" at all.
_NUMBER_CHARS = bytes(ord("0") if chr(b) in "0123456789.eE+-" else ord(" ") for b in range(256))
_LONG_RUN = b"0" * 16
_TINY = re.compile(rb"[\d.][eE]-\d{3}")
# the closer look: strings skipped whole, so digits inside a string are never taken for a number
_STRING_OR_NUMBER = re.compile(rb'"(?:[^"\\]++|\\.)*+"|-?\d[\d.eE+-]*')


def inexact_number(text: bytes) -> str | None:
    """Why a number of this JSON text would not be stored exactly, or None."""
    if _LONG_RUN not in text.translate(_NUMBER_CHARS) and not _may_be_tiny(text):
        return None
    for match in _STRING_OR_NUMBER.finditer(text):
        token = match.group()
        if token[:1] == b'"' or not _worth_a_look(token):
            continue
        if not _exact(token):
            return (
                f"the number {token[:40].decode()} cannot be stored exactly "
                "(integers are kept to 64 bits, decimals to double precision)"
            )
    return None


def _may_be_tiny(text: bytes) -> bool:
    return (b"e-" in text or b"E-" in text) and _TINY.search(text) is not None


def _worth_a_look(token: bytes) -> bool:
    """Whether a number's text might not survive a double (see _LONG_RUN)."""
    return len(token) >= 16 or _may_be_tiny(token)


def _exact(token: bytes) -> bool:
    try:
        if re.fullmatch(rb"-?\d+", token):
            return _INT_RANGE[0] <= int(token) < _INT_RANGE[1]
        return Decimal(repr(float(token))) == Decimal(token.decode())
    except (ValueError, InvalidOperation):
        return True  # not a number after all (orjson accepted the text): nothing to alter


def too_deep(obj: Any, text: bytes | None = None) -> str | None:
    """Why an object is nested too deeply, or None. With its text, objects that cannot be that
    deep (fewer brackets than MAX_DEPTH) are not walked."""
    if text is not None and text.count(b"{") + text.count(b"[") <= MAX_DEPTH:
        return None
    if depth_exceeds(obj, MAX_DEPTH):
        return f"nested deeper than {MAX_DEPTH} levels (the limit; Stripe's objects stay under 20)"
    return None


def depth_exceeds(obj: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit`: iterative, so any depth is safe."""
    return _walk(obj, limit, finite=False) is not None


_INFINITIES = (float("inf"), float("-inf"))


class InexactNumber:
    """A decimal of an API answer that a double cannot hold (`loads_keeping_inexact`): its
    text, kept for the reason the object is set aside. Never stored: nothing can write it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"InexactNumber({self.text!r})"


def _float_or_inexact(token: str) -> float | InexactNumber:
    raw = token.encode()
    if not _worth_a_look(raw) or _exact(raw):
        return float(token)
    return InexactNumber(token)


def loads_keeping_inexact(text: str | bytes) -> Any:
    """Python's json reader, as the stripe SDK decodes (NaN, Infinity, integers of any size and
    lone surrogates taken), except that a decimal a double cannot hold becomes an
    InexactNumber instead of the nearest float, for `api_object_problem` to refuse."""
    return json.loads(text, parse_float=_float_or_inexact)


def api_object_problem(obj: Any) -> str | None:
    """Why an object decoded from an API answer cannot be stored exactly, or None: nested
    deeper than MAX_DEPTH, holding NaN or Infinity, which Python's json reader (the stripe
    SDK's) accepts though they are not JSON, and which orjson would write as `null`, or a
    decimal no double holds (an InexactNumber)."""
    problem = _walk(obj, MAX_DEPTH, finite=True)
    if problem == "deep":
        return f"nested deeper than {MAX_DEPTH} levels (the limit; Stripe's objects stay under 20)"
    if problem == "not finite":
        return "holds NaN or Infinity, which JSON has no number for"
    if isinstance(problem, InexactNumber):
        return (
            f"the number {problem.text[:40]} cannot be stored exactly "
            "(decimals are kept to double precision)"
        )
    return None


def api_object_text(obj: Any) -> str:
    """An API object set aside, as text for the rejects file or the inbox: NaN and Infinity as
    Python's json writes them, a decimal no double holds as it was sent."""
    inexact: list[str] = []
    marker = uuid.uuid4().hex  # no string of the object's can be taken for a number's place

    def default(value: Any) -> Any:
        if isinstance(value, InexactNumber):
            inexact.append(value.text)
            return f"{marker}:{len(inexact) - 1}"
        return repr(value)

    try:
        text = json.dumps(obj, ensure_ascii=True, default=default)
    except RecursionError:
        return reprlib.repr(obj)
    for n, token in enumerate(inexact):
        text = text.replace(f'"{marker}:{n}"', token, 1)
    return text


# every byte but the structure: what `plain_answer` keeps of a text, its brackets as parentheses
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'{}[]"')
_AS_PARENTHESES = bytes.maketrans(b"{}[]", b"()()")


def plain_answer(text: str | bytes, *, finite: bool = False) -> bool:
    """Whether no object in this API answer can be nested deeper than MAX_DEPTH // 2 or hold
    NaN or Infinity, told from its text at C speed (a third of the walk in `api_object_problem`):
    the brackets outside strings, innermost pairs dropped level by level. False means "not
    sure" (a string holding a bracket, say) and the caller walks each object. Half the limit,
    because an object's embedded lists are completed from answers of their own, nested one
    level of the object deeper. `text` was decoded as JSON already: its brackets match; with
    `finite`, by a strict reader (orjson), which refuses NaN and Infinity, so they are not
    looked for (a third of the check's time)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if not finite and (b"NaN" in raw or b"Infinity" in raw):
        return False
    if b"\\" in raw:  # escaped backslashes, then escaped quotes: left to right, as JSON reads
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = raw.translate(_AS_PARENTHESES, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        return False  # a string holds a bracket or a quote
    for _ in range(MAX_DEPTH // 2):
        if not brackets:
            return True
        brackets = brackets.replace(b"()", b"")  # one level: a pair it leaves behind stays
    return not brackets


def _walk(obj: Any, limit: int, *, finite: bool) -> str | InexactNumber | None:
    """One pass over every container: "deep", "not finite" or the first InexactNumber (with
    `finite`), or None."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if not isinstance(value, dict | list):
            continue
        if depth > limit:
            return "deep"
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, dict | list):
                push((child, depth + 1))
            elif finite and child.__class__ is float and (child != child or child in _INFINITIES):
                return "not finite"
            elif finite and child.__class__ is InexactNumber:
                return child
    return None


# strings whole (or a lone quote: a string that goes on past the buffer), and structure
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}:,]|"')
_BLANK = b" \t\r\n"


def opens_a_list(text: bytes) -> bool:
    """Whether `text` is (or begins) a Stripe list envelope: a top-level object whose `data` is
    an array, with `"object": "list"` or no `id` (as `sources` tells a decoded one). Read from
    the structure alone, so text that does not decode (an object in `data` cannot be stored,
    or the line is cut short) is still known for what it is."""
    depth, key, last, keys = 0, None, None, {}
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in (b"{", b"["):
            if depth == 0 and token != b"{":
                return False
            if depth == 1 and last == b":" and key is not None:
                keys[key] = token
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                break
        elif depth == 1 and token[:1] == b'"':
            if last == b":" and key is not None:
                keys[key] = token
            else:
                key = token
        elif depth == 1 and token == b",":
            key = None
        last = token
    return keys.get(b'"data"') == b"[" and (
        keys.get(b'"object"') == b'"list"' or b'"id"' not in keys
    )


class Oversized:
    """An element of an array larger than MAX_OBJECT_BYTES: its size and first bytes."""

    def __init__(self, size: int, head: bytes) -> None:
        self.size = size
        self.head = head


def array_elements(handle: IO[bytes], path: Path, envelope: bool) -> Iterator[bytes | Oversized]:
    """The source text of each element of a JSON array, in order, while reading `handle`.

    `envelope`: the array is the `data` of a top-level object (a Stripe list), else the
    top-level value. What lies outside the elements is checked here (the elements' own text is
    checked by the parser): a file whose structure breaks raises InputFileError naming the file,
    after the elements before the break.
    """
    scan = _ArrayScan(path, envelope)
    while True:
        chunk = handle.read(_CHUNK)
        yield from scan.feed(chunk)
        if not chunk:
            return


class _ArrayScan:
    """The state of `array_elements` between chunks of input."""

    def __init__(self, path: Path, envelope: bool) -> None:
        self.path = path
        self.envelope = envelope
        self.buf = b""
        self.pos = 0  # where scanning goes on in buf
        self.depth = 0
        self.array_depth = 0 if envelope else 1  # 0: the envelope's `data` not found yet
        self.state = "outside"  # in the array: "first", "value" (after a comma), "comma"
        self.start: int | None = None  # where the element being read starts in buf
        self.dropped = 0  # bytes of that element let go of (it is over the size limit)
        self.head = b""  # …and its first bytes
        self.gap = 0  # where the text before the next element or comma starts
        self.key: bytes | None = None  # the envelope's last key at depth 1
        self.string: bytes | None = None
        self.opened = False
        self.outside = bytearray()  # the envelope without its elements, checked at the end
        self.count = 0

    def broken(self, reason: str) -> InputFileError:
        where = f"after {self.count} objects" if self.count else "before the first object"
        return InputFileError(self.path, f"not valid JSON {where}: {reason}")

    def feed(self, chunk: bytes) -> Iterator[bytes | Oversized]:
        eof = not chunk
        self.buf += chunk
        while True:
            match = _TOKEN.search(self.buf, self.pos)
            if match is None or (match.group() == b'"' and not eof):
                break  # a string goes on past the buffer (or no token left): read on
            if match.group() == b'"':
                raise self.broken("a string never ends")
            yield from self._token(match.group(), match.start(), match.end())
        if eof:
            self._finish()
            return
        self._compact()

    def _token(self, token: bytes, begin: int, end: int) -> Iterator[bytes | Oversized]:
        self.pos = end
        in_array = self.state != "outside" and self.depth == self.array_depth
        if in_array and self.start is None:
            if token in (b",", b"]"):
                yield from self._between(token, begin, end)
                return
            if token in (b"}", b":"):
                raise self.broken(f"an unexpected {token.decode()} in the array")
            self._element_starts(begin)
            if token[:1] == b'"':  # a string element: whole already
                yield self._element_ends(end)
                return
        if token[:1] == b'"':
            if self.depth == 1 and self.envelope:
                self.string = token
        elif token == b":":
            if self.depth == 1 and self.envelope:
                self.key, self.string = self.string, None
        elif token in (b"{", b"["):
            self.depth += 1
            if self.depth == 1 and self.envelope and token != b"{":
                raise self.broken("expected a Stripe list object")
            if self.opened:
                return
            if self.depth == 2 and self.envelope and self.key == b'"data"':
                if token != b"[":
                    raise InputFileError(self.path, "a Stripe list envelope needs a `data` array")
                self._array_opens(end)
            elif self.depth == 1 and not self.envelope:
                self._array_opens(end)
        elif token in (b"}", b"]"):
            self.depth -= 1
            if self.depth < 0:
                raise self.broken(f"an unmatched {token.decode()}")
            if self.start is not None and self.depth == self.array_depth:
                yield self._element_ends(end)

    def _array_opens(self, end: int) -> None:
        self.opened = True
        self.array_depth = self.depth
        self.outside += self.buf[:end]
        self.state, self.gap = "first", end

    def _between(self, token: bytes, begin: int, end: int) -> Iterator[bytes | Oversized]:
        """A comma or the array's end, with no element open: a scalar element may stand before."""
        scalar = self.buf[self.gap : begin].strip(_BLANK)
        if scalar:
            if self.state == "comma":
                raise self.broken(f"a missing comma before {scalar[:20]!r}")
            self.count += 1
            yield scalar
        elif self.state == "value" or (self.state == "first" and token == b","):
            raise self.broken(f"a value missing before {token.decode()}")
        if token == b",":
            self.state, self.gap = "value", end
            return
        self.depth -= 1
        self.state = "outside"
        self.outside += self.buf[begin:end]
        self.gap = end

    def _element_starts(self, begin: int) -> None:
        before = self.buf[self.gap : begin].strip(_BLANK)
        if self.state == "comma" or before:
            raise self.broken(f"a missing comma before element {self.count + 1}")
        self.start, self.dropped, self.head = begin, 0, b""

    def _element_ends(self, end: int) -> bytes | Oversized:
        assert self.start is not None
        self.count += 1
        if self.dropped:
            found: bytes | Oversized = Oversized(self.dropped + end - self.start, self.head)
        else:
            found = self.buf[self.start : end]
        self.start, self.state, self.gap = None, "comma", end
        return found

    def _compact(self) -> None:
        """Let go of what is read; an element over the size limit keeps only its first bytes."""
        if self.start is not None:
            if len(self.buf) - self.start > MAX_OBJECT_BYTES:
                if not self.dropped:
                    self.head = self.buf[self.start : self.start + KEPT_TEXT_BYTES]
                self.dropped += self.pos - self.start
                self.start = self.pos
            keep = self.start
        elif self.state != "outside":
            keep = self.gap
            if self.pos - self.gap > MAX_OBJECT_BYTES:
                raise self.broken(
                    f"a value of over {MAX_OBJECT_BYTES:,} bytes that is not an object"
                )
        else:
            keep = self.pos if self.opened else 0
            if self.opened:
                self.outside += self.buf[self.gap : keep]
                self.gap = 0
            if len(self.buf) + len(self.outside) > MAX_OBJECT_BYTES:
                raise self.broken("the list envelope around `data` is too large")
        self.buf = self.buf[keep:]
        self.pos -= keep
        self.gap = max(self.gap - keep, 0)
        if self.start is not None:
            self.start -= keep

    def _finish(self) -> None:
        if self.state != "outside" or self.depth != 0:
            raise self.broken("the file ends inside the JSON")
        if not self.opened:
            raise InputFileError(
                self.path, "a JSON object without a `data` array: not a Stripe list export"
            )
        whole = bytes(self.outside) + self.buf[self.gap :]
        try:
            orjson.loads(whole)
        except orjson.JSONDecodeError as exc:
            raise self.broken(f"around the objects: {exc}") from exc
