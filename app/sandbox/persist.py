"""Keep the sandbox's state in a file, so that it survives a stop, a restart or a killed process.

A snapshot is the whole state (both stores, the idempotency cache) pickled into one file, written
to a temporary name, fsynced and moved over the old one with `os.replace`: a reader sees the
previous snapshot or the new one, never half of one. Pickle is acceptable here because the only
writer of the file is the sandbox itself; the reader still refuses any class or function in it
(the state is plain dicts, lists and scalars), so a stray file cannot run code when loaded.

Pickling a seeded store of 100 000 customers (1.2 million objects, ~600 MB) takes seconds of
CPU and holds the GIL throughout, so the process would stop serving for that long. Instead the
snapshot is taken like Redis's BGSAVE: under every lock of the state the process forks (a pause
of ~0.1 s for a 3.5 GB heap), and the child, which sees the state frozen at that instant,
writes the file while the parent goes on serving. A background thread forks at most once per
interval, only when the state changed since the last snapshot and no child is still writing.
On a clean stop, and on reset, the state is written in-process instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import io
import logging
import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from app.sandbox.errors import SandboxError
from app.sandbox.store import Store

logger = logging.getLogger(__name__)

FORMAT = "app.sandbox state"
VERSION = 1
DEFAULT_INTERVAL = 1.0


class StateFileError(SandboxError):
    """The state file cannot be used: unreadable, from another format, or in use by another sandbox."""


class _BuiltinsOnly(pickle.Unpickler):
    """An unpickler that loads plain data only: a pickle naming any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not sandbox state")


def read_state(path: Path) -> dict[str, Any] | None:
    """The state saved in `path`, or None when there is no such file."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateFileError(f"cannot read the sandbox state file {path}: {error}") from error
    # Loading builds millions of small dicts with no cycles: the cyclic GC would only slow it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with handle:
            state = _BuiltinsOnly(io.BufferedReader(handle, 1 << 20)).load()
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError("not a sandbox state file")
        if state.get("version") != VERSION:
            raise ValueError(f"format version {state.get('version')!r}, expected {VERSION}")
        return state
    except Exception as error:  # unpickling raises many types on a damaged file
        raise StateFileError(
            f"cannot load the sandbox state from {path} ({type(error).__name__}: {error}). "
            "Move that file aside to keep it, or delete it to start with an empty sandbox; "
            "or start with --no-persist (or another --state-file)."
        ) from error
    finally:
        if gc_was_enabled:
            gc.enable()
        gc.freeze()


def write_state(
    path: Path, state: dict[str, Any], *, still_wanted: Callable[[], bool] | None = None
) -> bool:
    """Write atomically: a temporary file beside `path`, fsynced, then renamed over `path`.

    `still_wanted` is asked just before the rename; when it says no the file is left as it was.
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            pickle.dump(state, handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        if still_wanted is not None and not still_wanted():
            return False
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


class PersistedState(Protocol):
    """What the persister needs of the sandbox (server.py's `Sandbox`), without importing it."""

    # Bumped by every change of the state: a snapshot is taken when it moved.
    generation: int

    @property
    def store(self) -> Store: ...

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """Hold every lock of the state."""
        ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


class StatePersister:
    """Loads the sandbox's state from its file and keeps that file up to date."""

    def __init__(
        self, sandbox: PersistedState, path: Path, interval: float = DEFAULT_INTERVAL
    ) -> None:
        self.sandbox = sandbox
        self.path = path
        self.interval = interval
        self._saved_generation = 0
        self._child: tuple[int, int, float, float] | None = None  # pid, generation, start, pause
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file: IO[str] | None = None

    # -- start and stop ---------------------------------------------------------------------

    def load(self) -> None:
        """Take the file's lock (one sandbox per file) and load the saved state, if any."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_file = lock_path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "?"
            lock_file.close()
            raise StateFileError(
                f"another sandbox (pid {holder}) keeps its state in {self.path}; stop it, or "
                "give this one another --state-file or --no-persist"
            ) from error
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._lock_file = lock_file
        started = time.perf_counter()
        state = read_state(self.path)
        if state is None:
            logger.info("no saved state at %s: starting empty", self.path)
            return
        try:
            self.sandbox.restore(state)
        except (KeyError, TypeError, ValueError) as error:
            raise StateFileError(
                f"cannot load the sandbox state from {self.path} ({error}). Move that file aside "
                "to keep it, or delete it to start with an empty sandbox."
            ) from error
        counts = self.sandbox.store.counts()
        logger.info(
            "loaded %d objects from %s in %.2fs",
            sum(counts.values()),
            self.path,
            time.perf_counter() - started,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandbox-persist", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background thread and write whatever changed since the last snapshot."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._wait_for_child(block=True)
            if self.sandbox.generation != self._saved_generation:
                self._save_in_process()
        if self._lock_file is not None:
            self._lock_file.close()

    def save_now(self) -> None:
        """Write the current state before returning (used after reset: it must not come back)."""
        with self._lock:
            if self._child is not None:
                # Its snapshot predates this change and would land after ours: drop it.
                os.kill(self._child[0], 9)
                self._wait_for_child(block=True)
            self._save_in_process()

    @property
    def saved(self) -> bool:
        """Whether the file holds the current state."""
        return self._child is None and self.sandbox.generation == self._saved_generation

    # -- snapshots ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                with self._lock:
                    self._wait_for_child(block=False)
                    if self._child is None and self.sandbox.generation != self._saved_generation:
                        self._fork_snapshot()
            except Exception:  # keep snapshotting: one failure must not end persistence
                logger.exception("sandbox state snapshot failed")

    def _document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "saved_at": time.time(),
            **self.sandbox.state(),
        }

    def _save_in_process(self) -> None:
        started = time.perf_counter()
        with self.sandbox.frozen():
            generation = self.sandbox.generation
            write_state(self.path, self._document())
        self._saved_generation = generation
        logger.info("state saved to %s in %.2fs", self.path, time.perf_counter() - started)

    def _fork_snapshot(self) -> None:
        parent = os.getpid()
        started = time.perf_counter()
        with self.sandbox.frozen():
            generation = self.sandbox.generation
            pid = os.fork()
            if pid == 0:
                self._child_main(parent)  # never returns
        pause = time.perf_counter() - started
        self._child = (pid, generation, started, pause)

    def _child_main(self, parent: int) -> None:
        """In the forked child: write the frozen state and exit, touching nothing else."""
        code = 1
        try:
            gc.disable()
            # Let go of the listening socket and the file lock: a restarted sandbox must be
            # able to bind and lock while this child is still writing.
            os.closerange(3, 1 << 16)
            # An orphan's snapshot may be older than what a restarted sandbox has saved since.
            if write_state(
                self.path, self._document(), still_wanted=lambda: os.getppid() == parent
            ):
                code = 0
        except Exception:  # noqa: BLE001  (a child reports to the log; it must not raise)
            with contextlib.suppress(OSError):
                os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)

    def _wait_for_child(self, *, block: bool) -> None:
        if self._child is None:
            return
        pid, generation, started, pause = self._child
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done == 0:
            return
        self._child = None
        if os.waitstatus_to_exitcode(status) == 0:
            self._saved_generation = generation
            logger.info(
                "state saved to %s in %.2fs (serving paused %.3fs to fork)",
                self.path,
                time.perf_counter() - started,
                pause,
            )
        else:
            logger.error(
                "writing the state to %s failed (%s); see the log above",
                self.path,
                os.waitstatus_to_exitcode(status),
            )
            self.path.with_name(f"{self.path.name}.{pid}.tmp").unlink(missing_ok=True)
