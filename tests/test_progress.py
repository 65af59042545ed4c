"""Progress a person can read: plain lines in a pipe, bars on a terminal, nothing with -q."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.config import PROJECT_ROOT
from app.core.progress import ProgressBoard, follow_feed
from app.synthetic import customer

INGEST_ALL = PROJECT_ROOT / "scripts" / "ingest_all.py"
CHECK_DB = PROJECT_ROOT / "scripts" / "check_db_integrity.py"
ESCAPE = "\x1b["


@pytest.fixture()
def database_url(engine, test_database_url):
    """The commands commit: the test database, emptied afterwards."""
    yield test_database_url
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE customers CASCADE")


def write_customers(folder: Path, count: int, *, meta: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "customers.json"
    with path.open("w") as out:
        out.write('{"object": "list", "data": [\n')
        out.write(",\n".join(json.dumps(customer(i)) for i in range(count)))
        out.write('\n], "has_more": false}\n')
    if meta:
        body = {"resource": "customers", "stripe_version": "2026-10-28.endive", "objects": count}
        path.with_suffix(".meta.json").write_text(json.dumps(body))
    return path


def run(script: Path, *args: str, database_url: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "ENV": "DEV", "DATABASE_URL": database_url, **env}
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,  # stdout and stderr are pipes, not a terminal
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def test_plain_lines_give_count_total_rate_and_eta_then_the_end():
    stream = io.StringIO()
    with ProgressBoard(stream=stream, terminal=False, interval=0.05) as board:
        known = board.task("ingest customers", total=400)
        for _ in range(200):
            known(1)
        time.sleep(0.2)
        board.finish(known)
        unknown = board.task("ingest charges")
        unknown(150)
        time.sleep(0.2)
        board.finish(unknown)
    lines = stream.getvalue().splitlines()
    assert ESCAPE not in stream.getvalue()
    assert any(
        re.fullmatch(r"ingest customers: 200 of 400 objects \(50%\), [\d,]+/s, ETA 0:\d\d", ln)
        for ln in lines
    ), lines
    assert any(
        re.fullmatch(r"ingest customers: 200 objects in [\d.]+s \([\d,]+/s\)", ln) for ln in lines
    ), lines
    # a Stripe list gives no total: count and rate, no percentage, no ETA
    assert any(re.fullmatch(r"ingest charges: 150 objects, [\d,]+/s", ln) for ln in lines), lines
    assert re.fullmatch(r"ingest charges: 150 objects in [\d.]+s \([\d,]+/s\)", lines[-1])


def test_a_short_task_writes_no_line_and_a_disabled_board_nothing():
    stream = io.StringIO()
    with ProgressBoard(stream=stream, terminal=False, interval=5) as board:
        task = board.task("ingest products", total=3)
        task(3)
        board.finish(task)
    assert stream.getvalue() == ""  # the summary table says it
    with ProgressBoard(stream=stream, enabled=False, interval=0.01) as board:
        task = board.task("ingest customers")
        task(10)
        time.sleep(0.05)
        board.finish(task)
    assert stream.getvalue() == "" and task.count == 10


def test_a_file_without_a_recorded_count_is_measured_in_bytes_read(tmp_path):
    path = write_customers(tmp_path, 50, meta=False)
    stream = io.StringIO()
    with ProgressBoard(stream=stream, terminal=False, interval=0.05) as board:
        size = path.stat().st_size
        with path.open("rb") as handle:
            task = board.task("ingest customers", position=handle.tell, size=size)
            handle.read(size // 2)
            task(25)
            time.sleep(0.2)
            board.finish(task)
    assert re.search(
        r"ingest customers: 25 objects \(50% of [\d.]+ KB\), [\d,]+/s, ETA", stream.getvalue()
    )


def test_bars_on_a_terminal_and_log_lines_above_them():
    stream = io.StringIO()
    with ProgressBoard(stream=stream, terminal=True) as board:
        task = board.task("check invoices", total=10)
        task(10)
        board.finish(task)
    assert "check invoices" in stream.getvalue() and "10 of 10 objects" in stream.getvalue()


@pytest.mark.e2e
def test_ingest_into_a_pipe_prints_plain_progress_lines(database_url, tmp_path):
    write_customers(tmp_path / "counted", 3000, meta=True)
    write_customers(tmp_path / "sized", 3000, meta=False)
    for folder, shape in (
        ("counted", r"ingest customers: [\d,]+ of 3,000 objects \(\d+%\), [\d,]+/s"),
        ("sized", r"ingest customers: [\d,]+ objects \(\d+% of [\d.]+ [KM]B\), [\d,]+/s"),
    ):
        result = run(
            INGEST_ALL,
            "--resources",
            "customers",
            "--json-dir",
            str(tmp_path / folder),
            "--rejects-dir",
            str(tmp_path / "rejects"),
            database_url=database_url,
            PROGRESS_INTERVAL="0.001",
        )
        assert result.returncode == 0, result.stderr
        assert ESCAPE not in result.stderr + result.stdout
        assert re.search(shape, result.stderr), result.stderr
        assert re.search(r"ingest customers: 3,000 objects in [\d.]+s", result.stderr)
        assert "customers" in result.stdout and "3,000" in result.stdout  # the summary table


@pytest.mark.e2e
@pytest.mark.parametrize("script", [INGEST_ALL, CHECK_DB])
def test_quiet_silences_progress(script, database_url, tmp_path):
    write_customers(tmp_path, 3000, meta=True)
    result = run(
        script,
        "-q",
        "--resources",
        "customers",
        "--json-dir",
        str(tmp_path),
        *(["--rejects-dir", str(tmp_path / "rejects")] if script == INGEST_ALL else []),
        database_url=database_url,
        PROGRESS_INTERVAL="0.001",
    )
    assert result.returncode in (0, 1), result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout  # the summary or the report still shows


@pytest.mark.e2e
def test_check_db_into_a_pipe_prints_plain_progress_lines(database_url, tmp_path):
    write_customers(tmp_path, 3000, meta=True)
    result = run(
        CHECK_DB,
        "--resources",
        "customers",
        "--json-dir",
        str(tmp_path),
        database_url=database_url,
        PROGRESS_INTERVAL="0.001",
    )
    assert result.returncode in (0, 1), result.stderr  # the test database may lack them
    assert ESCAPE not in result.stderr
    assert re.search(r"check customers: [\d,]+ of 3,000 objects", result.stderr), result.stderr


@pytest.mark.e2e
def test_a_feed_from_another_process_is_drawn_and_its_log_lines_kept():
    # the curl fetch reports through scripts/fetch_progress.py; nothing it writes is lost
    feed = (
        "total\tfetch payment_methods\t200\tcustomers\n"
        "count\tfetch payment_methods\t50\n"
        "log\tcustomers:  100 objects  1 pages  0.20 s\n"
        "count\tfetch payment_methods\t25\n"
        "count\tfetch payment_methods\tmany\n"
        "an unexpected line\n"
    )
    drawer = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "fetch_progress.py")],
        input=feed, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PROGRESS_INTERVAL": "0.05"},
    )  # fmt: skip
    lines = drawer.stderr.splitlines()
    assert drawer.returncode == 0 and ESCAPE not in drawer.stderr
    assert "customers:  100 objects  1 pages  0.20 s" in lines
    assert "an unexpected line" in lines and "count\tfetch payment_methods\tmany" in lines


def test_a_fed_task_counts_up_to_its_total():
    out = io.StringIO()
    with ProgressBoard(stream=out, terminal=False, interval=0.05) as board:
        follow_feed(iter(["total\tpm\t4\tcustomers\n", "count\tpm\t3\n"]), board)
        running = board.tasks[0]
        assert (running.count, running.total, running.unit) == (3, 4, "customers")
        assert running.ended is not None  # the feed ended: so did its tasks
