"""Progress a person can read: one line per task with count, total, rate and ETA.

Library code only counts: it takes a `ProgressCallback` (`progress(n)`: n more objects done)
and never draws. The command modules open a `ProgressBoard` and hand each long step a task
from it. On a terminal the board is a rich display, a bar per task; when stderr is a pipe or a
file it writes a plain line per running task every few seconds, and a last one when such a
task ends, so logs and CI output stay readable. A disabled board (`-q`) hands out tasks that only
count.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
)
from rich.progress import Task as RichTask
from rich.text import Text

ProgressCallback = Callable[[int], None]

PLAIN_INTERVAL = 5.0  # seconds between two plain lines of a running task (PROGRESS_INTERVAL)


class ProgressTask:
    """One step's counter, called from the thread doing the work: `task(n)` adds n objects.

    Counting is all a call does (an integer add), so the hot loops of the ingest may call it
    per object; the board reads the counters when it draws.
    """

    def __init__(
        self,
        name: str,
        *,
        total: int | None = None,
        unit: str = "objects",
        position: Callable[[], int] | None = None,
        size: int | None = None,
    ) -> None:
        self.name = name
        self.unit = unit
        self.total = total
        # a file read as it goes: `position()` bytes of `size` are read (the total is in bytes)
        self.position = position
        self.size = size
        self.count = 0
        self.started = time.monotonic()
        self.ended: float | None = None
        self.shown = False  # a plain line has been written for it
        self._read = 0.0  # how much of the file was read, at the last look

    def __call__(self, n: int = 1) -> None:
        self.count += n

    def set_total(self, total: int | None) -> None:
        self.total = total

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def fraction(self) -> float | None:
        """How much is done, 0 to 1; None when nothing says how much there is."""
        if self.total:
            return min(self.count / self.total, 1.0)
        if self.position is not None and self.size:
            try:
                self._read = min(self.position() / self.size, 1.0)
            except (OSError, ValueError):  # the file is closed: all of it was read
                self._read = 1.0
            return self._read
        return None

    def eta(self) -> float | None:
        done = self.fraction()
        if done is None or done <= 0 or self.ended is not None:
            return None
        return self.elapsed * (1 - done) / done

    def line(self) -> str:
        """`ingest customers: 12,345 of 20,000 objects (62%), 3,210/s, ETA 0:04`."""
        count = f"{self.count:,}"
        if self.ended is not None:
            return f"{self.name}: {count} {self.unit} in {self.elapsed:.1f}s ({self.rate:,.0f}/s)"
        done = self.fraction()
        if self.total:
            text = f"{self.name}: {count} of {self.total:,} {self.unit} ({done:.0%})"
        elif done is not None:
            text = f"{self.name}: {count} {self.unit} ({done:.0%} of {_size(self.size or 0)})"
        else:
            text = f"{self.name}: {count} {self.unit}"
        text += f", {self.rate:,.0f}/s"
        eta = self.eta()
        return text + (f", ETA {_clock(eta)}" if eta is not None else "")


class ProgressBoard:
    """Where the tasks of a command are drawn: `with ProgressBoard() as board: task = board.task(…)`.

    `enabled=False` (the commands' `-q`) draws nothing. `stream` is stderr unless given;
    `terminal` overrides the detection (tests); `interval`: seconds between plain lines
    (PROGRESS_INTERVAL, default 5).
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        stream: IO[str] | None = None,
        terminal: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval if interval is not None else _interval_from_env()
        self.console = Console(file=self.stream)
        is_terminal = self.console.is_terminal and not self.console.is_dumb_terminal
        self.terminal = is_terminal if terminal is None else terminal
        self.tasks: list[ProgressTask] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich: _Bars | None = None
        self._ids: dict[int, TaskID] = {}
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def task(
        self,
        name: str,
        *,
        total: int | None = None,
        unit: str = "objects",
        position: Callable[[], int] | None = None,
        size: int | None = None,
    ) -> ProgressTask:
        task = ProgressTask(name, total=total, unit=unit, position=position, size=size)
        return self.show(task)

    def show(self, task: ProgressTask) -> ProgressTask:
        """Draw a task made beforehand (once what it measures is known: its first line
        already has its total)."""
        if not self.enabled:
            return task
        with self._lock:
            self.tasks.append(task)
            if self._rich is not None:
                self._ids[id(task)] = self._rich.add_task(task.name, total=None, task=task)
        return task

    def finish(self, task: ProgressTask) -> None:
        """The task is done: its line shows the final count, time and rate."""
        if task.ended is not None:
            return
        task.ended = time.monotonic()
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.sync()
        elif task.shown:  # a task too short for a periodic line is told by the summary
            self._write(task.line())

    def __enter__(self) -> ProgressBoard:
        if not self.enabled:
            return self
        if self.terminal:
            self._rich = _Bars(self, console=self.console)
            self._rich.start()
            self._route_logging()
        else:
            self._thread = threading.Thread(target=self._plain, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        if self._rich is not None:
            self._rich.sync()
            self._rich.stop()
            for handler, stream in self._handlers:
                handler.setStream(stream)

    def _route_logging(self) -> None:
        """Log lines written while the bars are drawn go above them, not through them."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                self._handlers.append((handler, handler.stream))
                handler.setStream(_ConsoleLines(self.console))

    def _plain(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                running = [t for t in self.tasks if t.ended is None]
            for task in running:
                task.shown = True
                self._write(task.line())

    def note(self, line: str) -> None:
        """A line for the person, above the bars on a terminal (a log line of a process that
        cannot print there itself)."""
        if self._rich is not None:
            self.console.print(line, markup=False, highlight=False, emoji=False)
        else:
            self._write(line)

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe: the work goes on without its progress
            pass


def follow_feed(lines: Iterable[str], board: ProgressBoard) -> None:
    """Draw the progress another process reports, one tab-separated line at a time (the curl
    fetch does; short lines written at once to a pipe never interleave):

        count <TAB> task <TAB> n [<TAB> unit]    n more done (the task appears at its first)
        total <TAB> task <TAB> total <TAB> unit  how many there are, when something says
        done <TAB> task                          the task ended
        log <TAB> text                           a line for the person (any other line too)
    """
    tasks: dict[str, ProgressTask] = {}

    def task(name: str, unit: str = "objects") -> ProgressTask:
        if name not in tasks:
            tasks[name] = board.task(name, unit=unit)
        return tasks[name]

    for line in lines:
        kind, _, rest = line.rstrip("\n").partition("\t")
        fields = rest.split("\t")
        try:
            if kind == "count" and len(fields) >= 2:
                task(fields[0], *fields[2:3])(int(fields[1]))
            elif kind == "total" and len(fields) == 3:
                task(fields[0], fields[2]).set_total(int(fields[1]))
            elif kind == "done" and len(fields) == 1:
                board.finish(task(fields[0]))
            elif kind == "log":
                board.note(rest)
            elif line.strip():
                board.note(line.rstrip("\n"))
        except ValueError:  # not a number where one belongs: shown, not lost
            board.note(line.rstrip("\n"))
    for name in tasks:
        board.finish(tasks[name])


class _ConsoleLines:
    """A stream for a logging handler that prints each line above the live bars."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, text: str) -> None:
        text = text.rstrip("\n")
        if text:
            self.console.print(text, markup=False, highlight=False, emoji=False)

    def flush(self) -> None:
        pass


class _Count(ProgressColumn):
    def render(self, task: RichTask) -> Text:
        ours: ProgressTask = task.fields["task"]
        total = f" of {ours.total:,}" if ours.total else ""
        return Text(f"{ours.count:,}{total} {ours.unit}")


class _Rate(ProgressColumn):
    def render(self, task: RichTask) -> Text:
        ours: ProgressTask = task.fields["task"]
        return Text(f"{ours.rate:,.0f}/s")


class _Eta(ProgressColumn):
    def render(self, task: RichTask) -> Text:
        ours: ProgressTask = task.fields["task"]
        if ours.ended is not None:
            return Text(f"in {ours.elapsed:.1f}s")
        eta = ours.eta()
        return Text(f"ETA {_clock(eta)}" if eta is not None else "")


class _Bars(Progress):
    """rich's display, fed from our counters each time it draws."""

    def __init__(self, board: ProgressBoard, console: Console) -> None:
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            _Count(),
            _Rate(),
            _Eta(),
            console=console,
            refresh_per_second=4,
        )
        self.board = board

    def sync(self) -> None:
        for task in list(self.tasks):
            ours: ProgressTask = task.fields["task"]
            done = ours.fraction()
            if ours.ended is not None:
                self.update(task.id, total=1, completed=1)
            elif done is not None:
                self.update(task.id, total=1000, completed=int(done * 1000))

    def get_renderables(self) -> Iterable[Any]:
        self.sync()
        return super().get_renderables()


def _interval_from_env() -> float:
    try:
        seconds = float(os.environ.get("PROGRESS_INTERVAL", "") or PLAIN_INTERVAL)
    except ValueError:
        return PLAIN_INTERVAL
    return seconds if seconds > 0 else PLAIN_INTERVAL


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"


def counting(objects: Iterable[Any], progress: ProgressCallback | None) -> Iterable[Any]:
    """`objects`, counting each one as it passes (for loops that take no callback themselves)."""
    if progress is None:
        yield from objects
        return
    for obj in objects:
        progress(1)
        yield obj
