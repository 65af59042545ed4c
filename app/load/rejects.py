"""Objects set aside: one JSON Lines file per resource, each line saying where and why."""

from __future__ import annotations

import json
import reprlib
import threading
from pathlib import Path
from typing import IO, Any

import orjson


class RejectSink:
    """Writes `<dir>/<resource>.rejects.jsonl`; a run starts each resource's file afresh."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counts: dict[str, int] = {}
        self._files: dict[str, IO[bytes]] = {}
        self._lock = threading.Lock()  # the ingest's reader and writer threads both set aside

    def path_for(self, resource: str) -> Path:
        return self.directory / f"{resource}.rejects.jsonl"

    def start(self, resource: str) -> None:
        """Forget the rejects of an earlier run of this resource: they would mislead."""
        self.path_for(resource).unlink(missing_ok=True)

    def add(
        self,
        resource: str,
        source: str,
        index: int | None,
        object_id: str | None,
        reason: str,
        obj: Any,
    ) -> None:
        record = {
            "resource": resource,
            "file": source,
            "index": index,
            "id": object_id,
            "reason": reason,
            "object": obj,
        }
        line = _json_line(record)
        with self._lock:
            handle = self._files.get(resource)
            if handle is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                handle = self._files[resource] = self.path_for(resource).open("ab")
            handle.write(line)
            self.counts[resource] = self.counts.get(resource, 0) + 1

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __enter__(self) -> RejectSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json_line(record: dict[str, Any]) -> bytes:
    """The record as one line of JSON, every value exactly: what orjson cannot write (an integer
    beyond 64 bits, a lone surrogate) the standard library writes exactly (`\\ud800` escaped)."""
    try:
        return orjson.dumps(record) + b"\n"
    except TypeError:
        pass
    try:
        return json.dumps(record, ensure_ascii=True, default=repr).encode() + b"\n"
    except (RecursionError, ValueError):
        # never reached from a file (objects nested over strict_json.MAX_DEPTH keep their text)
        record = {**record, "object": reprlib.repr(record["object"])}
        return json.dumps(record, ensure_ascii=True, default=repr).encode() + b"\n"
