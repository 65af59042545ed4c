"""Loading resources in dependency order, from files or the API: what `make ingest-all` runs,
and what a full load of the live path (`sync_<resource>()`, a refresh) runs too."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from graphlib import TopologicalSorter
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson
import psycopg2
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.client.stripe_api import mirrored_account
from app.core.clock import stripe_now
from app.core.config import DEFAULT_ACCOUNT, Settings, mask_secrets
from app.core.errors import ConfigError, InputFileError, PipelineError, first_line
from app.core.progress import ProgressBoard, ProgressTask
from app.db.session import get_engine
from app.load.api_source import ApiListings, ListingStopped, read_api_objects
from app.load.fetch_watch import FetchStopped, RunningFetch
from app.load.ingest import IngestResult, ingest
from app.load.json_files import read_json_objects
from app.load.rejects import RejectSink
from app.registry import BY_NAME, RESOURCES, Resource
from app.schema import require_tables, unreachable

log = logging.getLogger(__name__)


def ingest_file(conn: Connection, resource: Resource, path: Path, **kwargs: Any) -> IngestResult:
    """One resource's JSON export into its table (a library call: tests, benchmarks)."""
    return ingest(conn, resource, read_json_objects(path), source_name=str(path), **kwargs)


# how often an ingest following a fetch looks for the files it waits for
FETCH_POLL_SECONDS = 0.5

# loads running at once (SOURCE=api): each holds WRITERS connections and PostgreSQL has a core
# per busy connection; more would only queue on the server
PARALLEL_LOADS = 3


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate at once malloc arenas of their own (up to eight per
    core), and memory freed in one arena is not reused by another: with a listing per resource,
    their request workers and the loads' threads, the process grew half as large again as what
    it holds (measured, 5,000 customers SOURCE=api: 532 MB peak, 419 MB with two arenas).
    Called before the threads start; elsewhere than glibc, nothing to do."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


_M_ARENA_MAX = -8  # glibc's malloc.h


def run(
    url: str,
    chosen: list[Resource],
    settings: Settings,
    *,
    source: str,
    json_dir: Path,
    single_file: Path | None,
    mode: str,
    rejects_dir: Path,
    results: list[IngestResult] | None = None,
    sweep: bool = False,
    board: ProgressBoard | None = None,
    on_whole_listing: Callable[[datetime, str], None] | None = None,
) -> list[IngestResult]:
    """Ingest `chosen`, a resource only once the resources it depends on are loaded; each
    resource's result joins `results` as it ends (kept in `chosen`'s order), so a caller
    interrupted half-way still knows what was done (the ones that broke or were stopped
    included).

    SOURCE=api lists every resource at once from the start (app.load.api_source.ApiListings: a listing
    whose load must wait for its parents goes on into a temporary file), so every endpoint
    keeps its share of the request budget busy, and loads up to PARALLEL_LOADS resources whose
    parents are done side by side. Files are loaded one at a time, parents first.

    With `sweep`, each input is a complete listing: rows it lacks are soft-deleted, and once
    every resource is loaded so, `on_whole_listing` is told the earliest listing's start (where
    `make sync` can go on from) and the account listed.

    A curl fetch still writing `json_dir` (app.load.fetch_watch) is followed: each file is loaded
    once the fetch has written it and pages no list any more, the others' loads going first
    (the payment methods, the longest to fetch, are no one's parent).

    `board` shows a task per resource as it loads (none: nothing drawn)."""
    results = [] if results is None else results
    fetch = RunningFetch.find(json_dir) if source == "json" and single_file is None else None
    if fetch is not None:
        # the fetch's requests are on the clock (a second of its budget unused is lost); the
        # load is not: it yields the CPU
        with contextlib.suppress(OSError):
            os.nice(10)
        log.info(
            "a fetch is writing %s (pid %d, `%s`): each file is loaded once it is written",
            json_dir,
            fetch.pid,
            fetch.command,
        )
    board = board or ProgressBoard(enabled=False)
    if source == "api":
        # the account the rows belong to, learned before any listing starts
        log.info("mirroring the account %s", mirrored_account(settings))
    listed: list[datetime | None] = []
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            require_tables(conn, chosen)
            # a file that names no account belongs to the mirror's, when it holds just one
            mirrors = only_account(conn) if source == "json" else None
            conn.rollback()
    except OperationalError as exc:
        raise unreachable(url, exc) from exc
    position = {r.name: i for i, r in enumerate(chosen)}
    stop = threading.Event()
    done: queue.SimpleQueue[_Ended] = queue.SimpleQueue()
    with contextlib.ExitStack() as stack:
        rejects = stack.enter_context(RejectSink(rejects_dir))
        listings = (
            stack.enter_context(ApiListings(chosen, settings, board=board))
            if source == "api"
            else None
        )

        def load(resource: Resource) -> None:
            result, state_at = IngestResult(resource.name), None
            crash: BaseException | None = None
            try:
                with engine.connect() as conn:
                    result, state_at = _load_one(
                        conn,
                        resource,
                        settings,
                        listings,
                        stop,
                        source=source,
                        json_dir=json_dir,
                        single_file=single_file,
                        mode=mode,
                        rejects=rejects,
                        sweep=sweep,
                        board=board,
                        mirrors=mirrors,
                    )
            except KeyboardInterrupt as exc:  # the run is being stopped: it stops too
                result.error = "interrupted"
                crash = exc
            except BaseException as exc:  # noqa: BLE001 — raised in the caller's thread
                result.error = mask_secrets(f"unexpected {type(exc).__name__}: {first_line(exc)}")
                crash = exc
            finally:
                if listings is not None:  # a load that failed stops its listing
                    listings.spools[resource.name].close()
                done.put(_Ended(resource, result, state_at, crash))

        sorter = TopologicalSorter(
            {r.name: {d for d in r.depends_on if d in position} for r in chosen}
        )
        sorter.prepare()
        ready: list[str] = []
        waiting: set[str] = set()  # said to wait for the fetch
        running = 0
        parallel = PARALLEL_LOADS if source == "api" else 1
        crash: BaseException | None = None
        try:
            while sorter.is_active() and crash is None:
                ready.extend(sorter.get_ready())
                ready.sort(key=position.__getitem__)  # among the ready, the registry's order
                while running < parallel and (name := _next(ready, fetch)) is not None:
                    ready.remove(name)
                    threading.Thread(
                        target=load, args=(BY_NAME[name],), name=f"load-{name}", daemon=True
                    ).start()
                    running += 1
                if running == 0:  # every resource ready to load waits for the fetch
                    for name in set(ready) - waiting:
                        log.info(
                            "%s: waiting for the fetch to write %s", name, BY_NAME[name].file_name
                        )
                    waiting.update(ready)
                    time.sleep(FETCH_POLL_SECONDS)
                    continue
                ended = done.get()
                running -= 1
                _keep(results, ended.result, position)
                listed.append(ended.state_at)
                crash = ended.crash
                sorter.done(ended.resource.name)
        except KeyboardInterrupt:
            stop.set()
            if listings is not None:
                listings.close()
            _wait_for(done, running, results, position)
            raise
        if crash is not None:
            stop.set()
            if listings is not None:
                listings.close()
            _wait_for(done, running, results, position)
            raise crash
    whole = {r.name for r in chosen} == set(BY_NAME) and not any(r.error for r in results)
    if sweep and whole and all(listed) and on_whole_listing is not None:
        account = (
            mirrored_account(settings)
            if source == "api"
            else json_account(json_dir, [r.name for r in chosen], settings, mirrors)
        )
        on_whole_listing(min(t for t in listed if t is not None), account)
    return results


def _load_one(
    conn: Any,
    resource: Resource,
    settings: Settings,
    listings: ApiListings | None,
    stop: threading.Event,
    *,
    source: str,
    json_dir: Path,
    single_file: Path | None,
    mode: str,
    rejects: RejectSink,
    sweep: bool,
    board: ProgressBoard,
    mirrors: str | None = None,
) -> tuple[IngestResult, datetime | None]:
    """One resource's load: its result (a failure of its own recorded in it, not raised) and
    the Stripe time of its listing's start. KeyboardInterrupt (the run was stopped) and
    unexpected errors are raised."""
    state_at = None
    try:
        rejects.start(resource.name)
        task = ProgressTask(f"ingest {resource.name}")
        objects, label, version, state_at, account = _source_of(
            resource,
            settings,
            source=source,
            json_dir=json_dir,
            single_file=single_file,
            task=task,
            listings=listings,
            mirrors=mirrors,
        )
        board.show(task)  # its total known: no first line without one
        if sweep and state_at is None:
            raise InputFileError(
                label,
                "--sweep needs the time the listing started, and this file has none "
                "(no started_at in its .meta.json): fetch it with `make fetch`",
            )
        result = ingest(
            conn,
            resource,
            _until(stop, objects),
            mode=mode,  # type: ignore[arg-type]
            api_version=version,
            rejects=rejects,
            source_name=label,
            progress=task,
            state_at=state_at,
            sweep=sweep,
            account=account,
        )
        board.finish(task)
    except InputFileError as exc:
        log.error("error: %s", exc)
        partial = exc.partial if isinstance(exc.partial, IngestResult) else None
        result = partial or IngestResult(resource.name)
        result.error = str(exc)
    except PipelineError as exc:
        log.error("error: %s: %s", resource.name, mask_secrets(str(exc)))
        result = IngestResult(resource.name, error=mask_secrets(str(exc)))
    except (SQLAlchemyError, psycopg2.Error) as exc:
        # not one bad object (those are set aside): the database failed the load
        reason = f"the database failed: {first_line(getattr(exc, 'orig', None) or exc)}"
        log.error("error: %s: %s", resource.name, mask_secrets(reason))
        result = IngestResult(resource.name, error=mask_secrets(reason))
    except ListingStopped:
        raise KeyboardInterrupt from None
    return result, state_at


def _until(stop: threading.Event, objects: Iterator[Any]) -> Iterator[Any]:
    """`objects`, until the run is stopped (Ctrl-C reaches the main thread only): then the
    load ends as an interrupted one, its batches in flight written whole."""
    for obj in objects:
        if stop.is_set():
            raise KeyboardInterrupt
        yield obj


def _keep(results: list[IngestResult], result: IngestResult, position: dict[str, int]) -> None:
    results.append(result)
    results.sort(key=lambda r: position.get(r.resource, len(position)))


class _Ended(NamedTuple):
    """What a load thread says when it ends."""

    resource: Resource
    result: IngestResult
    state_at: datetime | None
    # an unexpected error or KeyboardInterrupt, raised again in the run's thread
    crash: BaseException | None


def _next(ready: list[str], fetch: RunningFetch | None) -> str | None:
    """The first of the ready resources whose file can be read now: with a fetch writing the
    folder, once the fetch wrote it and pages no list any more (the two would compete for the
    CPU while the fetch's requests are on the clock; the payment methods, its long pole, go
    on alone long after)."""
    if fetch is None:
        return ready[0] if ready else None
    if fetch.paging_lists():
        return None
    stopped: FetchStopped | None = None
    for name in ready:
        try:
            if fetch.wrote(name):
                return name
        except FetchStopped as exc:  # never to be written: the others still load first
            stopped = stopped or exc
    if stopped is not None:
        raise stopped
    return None


def _wait_for(
    done: queue.SimpleQueue[_Ended],
    running: int,
    results: list[IngestResult],
    position: dict[str, int],
) -> None:
    """Let the loads still running end (they stop at their next object, their batches in flight
    written whole) and keep what each did."""
    for _ in range(running):
        result = done.get().result
        if result.error is None:
            result.error = "interrupted"
        _keep(results, result, position)


def _source_of(
    resource: Resource,
    settings: Settings,
    *,
    source: str,
    json_dir: Path,
    single_file: Path | None,
    task: ProgressTask | None = None,
    listings: ApiListings | None = None,
    mirrors: str | None = None,
) -> tuple[Iterator[Any], str, str, datetime | None, str]:
    """The resource's objects, what to call where they come from, their API version, the
    Stripe time of their state (when the listing started; None: unknown) and their account
    (`file_account` for a file).

    `task` learns how much there is to read: the object count the fetcher recorded in the
    file's .meta.json, else the file's size (and how far the reading is); an API list gives
    no total."""
    if source == "api":
        label = f"{settings.stripe_api_base} {resource.name}"
        if listings is not None:
            objects, started = listings.objects(resource), listings.started[resource.name]
        else:
            objects, started = read_api_objects(resource, settings), stripe_now()
        account = mirrored_account(settings)
        return objects, label, settings.stripe_api_version, started, account
    path = single_file or json_dir / resource.file_name
    meta = _meta_of(path)
    version = meta.get("stripe_version")
    opened = _measure(task, path, meta) if task is not None else None
    return (
        read_json_objects(path, opened=opened),
        str(path),
        version if isinstance(version, str) and version else settings.stripe_api_version,
        _time(meta.get("started_at")),
        file_account(meta, settings, mirrors),
    )


def file_account(meta: dict[str, Any], settings: Settings, mirrors: str | None = None) -> str:
    """The account a JSON export's objects belong to: the one its `.meta.json` records (the
    curl fetch records it), else STRIPE_ACCOUNT, else the one account the mirror holds
    (`mirrors`, see `only_account`: an old export of a mirror that `make init-db` gave its
    real account), else DEFAULT_ACCOUNT (an export made before files named their account,
    data/sample/, a hand-made file, into an empty mirror)."""
    recorded = meta.get("account")
    if isinstance(recorded, str) and recorded:
        return recorded
    return settings.stripe_account or mirrors or DEFAULT_ACCOUNT


def json_account(
    json_dir: Path, names: Iterable[str], settings: Settings, mirrors: str | None = None
) -> str:
    """The one account of these files in `json_dir` (`file_account` of each); files that name
    different accounts are refused (one account per run)."""
    found = {
        file_account(_meta_of(json_dir / BY_NAME[name].file_name), settings, mirrors)
        for name in names
    }
    if len(found) > 1:
        raise ConfigError(
            f"the files in {json_dir} belong to different accounts ({', '.join(sorted(found))}): "
            "one account per run"
        )
    return found.pop() if found else settings.stripe_account or mirrors or DEFAULT_ACCOUNT


def only_account(conn: Connection) -> str | None:
    """The mirror's account when it holds rows of exactly one, else None. Cheap: each table's
    first and last account in its key's order."""
    found: set[str] = set()
    for resource in RESOURCES:
        table = resource.table.name
        found.update(
            conn.execute(
                text(
                    f"(SELECT account_id FROM {table} ORDER BY account_id LIMIT 1) UNION "
                    f"(SELECT account_id FROM {table} ORDER BY account_id DESC LIMIT 1)"
                )
            ).scalars()
        )
        if len(found) > 1:
            return None
    return found.pop() if found else None


def _measure(
    task: ProgressTask, path: Path, meta: dict[str, Any]
) -> Callable[[IO[bytes]], None] | None:
    """Give `task` its total: the object count the fetcher recorded, or else the file's size
    in bytes, measured against the reader's position (the hook returned receives the open
    file)."""
    objects = meta.get("objects")
    if isinstance(objects, int) and not isinstance(objects, bool) and objects >= 0:
        task.set_total(objects)
        return None
    try:
        task.size = path.stat().st_size
    except OSError:
        return None

    def opened(handle: IO[bytes]) -> None:
        task.position = handle.tell

    return opened


def _meta_of(path: Path) -> dict[str, Any]:
    """What the fetcher recorded in `<resource>.meta.json` beside the file (version, start)."""
    meta = path.with_suffix(".meta.json")
    try:
        found = orjson.loads(meta.read_bytes()) if meta.is_file() else {}
    except (OSError, orjson.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _time(value: Any) -> datetime | None:
    """An ISO time such as `2026-11-26T10:02:11Z`, to the second; None when absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(microsecond=0) if parsed.tzinfo else None
