"""A curl fetch still writing a JSON folder, as an ingest of that folder sees it.

scripts/fetch_lib.sh keeps, under `<json dir>/.partial/`, `run.lock` (the running fetch's
"pid start-ticks epoch-seconds command", emptied when it ends) and `completed` (a line per
resource whose file this run, or the interrupted run it resumed, has written: its name first;
removed once the whole run succeeded). From those an ingest started during the fetch knows which
files are this run's already, and can load each as soon as it is written instead of reading an
older one, or waiting for the slowest list (the payment methods, one request per customer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.errors import PipelineError


class FetchStopped(PipelineError):
    """The fetch ended without writing a file the ingest waits for."""


@dataclass(frozen=True)
class RunningFetch:
    """The fetch holding a JSON folder's lock while it writes there."""

    json_dir: Path
    pid: int
    start: str  # clock ticks since boot: with the pid it names one process
    command: str

    @classmethod
    def find(cls, json_dir: Path) -> RunningFetch | None:
        """The fetch writing `json_dir` now, or None."""
        try:
            line = (json_dir / ".partial" / "run.lock").read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        fields = line.split(" ", 3)
        if len(fields) < 3 or not fields[0].isdigit():
            return None
        fetch = cls(json_dir, int(fields[0]), fields[1], fields[3] if len(fields) > 3 else "")
        return fetch if fetch.running() else None

    def running(self) -> bool:
        """Whether the fetch still runs (a zombie does not; a reused pid is another process)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        fields = stat[stat.rfind(")") + 2 :].split()
        # after the command: state, then 18 fields, then the start time (proc(5), field 22)
        return len(fields) > 19 and fields[0] not in ("Z", "X") and self.start in ("-", fields[19])

    def paging_lists(self) -> bool:
        """Whether the fetch still pages a list (each has `.partial/<name>/list` until its file
        is written): the CPU-heavy part of a fetch, where every core is busy, before only its
        payment methods (a request per customer, light, but the longest) are left."""
        return self.running() and any((self.json_dir / ".partial").glob("*/list"))

    def wrote(self, name: str) -> bool:
        """Whether `<name>.json` in the folder is this run's: written, or all files final once
        the run succeeded. FetchStopped when the fetch ended and never will write it."""
        partial = self.json_dir / ".partial"
        if name in self._completed():
            return True
        if self.running():
            return False
        completed = self._completed()  # read again: the run may have ended just now
        if name in completed:
            return True
        if not (partial / "completed").exists():
            return True  # the whole run succeeded: every file it fetches is written
        try:
            why = (partial / "abort").read_text().strip() or "it was interrupted"
        except OSError:
            why = "it was interrupted"
        raise FetchStopped(
            f"{name}: the fetch writing {self.json_dir} stopped before writing {name}.json "
            f"({why}); run the fetch again (it resumes), then the ingest"
        )

    def _completed(self) -> set[str]:
        try:
            text = (self.json_dir / ".partial" / "completed").read_text()
        except (OSError, UnicodeDecodeError):
            return set()
        return {line.split(" ", 1)[0] for line in text.splitlines() if line.strip()}
