# ruff: noqa: T201  (this is the CLI: its output is the point)
"""Command line of the local Stripe sandbox: start, stop, status, reset, seed, serve, churn.

    python -m app.sandbox start [--port 12111] [--rate-limit] [--fault-rate 0.05]
    python -m app.sandbox seed --customers 1000
    python -m app.sandbox churn --rate 50 --seconds 60 [--log mutations.jsonl]
    python -m app.sandbox status      # exit 0 when running, 3 when not
    python -m app.sandbox stop

Point the stripe SDK at it with `stripe.api_base = "http://127.0.0.1:12111"` and any
`sk_test_...` key. `start` keeps the state in data/sandbox/state.pickle (--state-file;
SANDBOX_STATE_DIR moves the directory): it survives stop, start and a killed process, and
`reset` empties both. --no-persist (or SANDBOX_PERSIST=0) keeps it in memory only, as `serve`
does unless given --state-file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from app.sandbox.errors import SandboxError, SandboxNotRunning
from app.sandbox.limits import FaultConfig
from app.sandbox.server import DEFAULT_HOST, DEFAULT_PORT, SandboxConfig, serve_forever
from app.sandbox.versions import API_VERSIONS, DEFAULT_API_VERSION
from app.sandbox.webhooks import WebhookConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# SANDBOX_STATE_DIR moves the pid and log files (tests use it to stay out of the user's way).
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR") or PROJECT_ROOT / "data" / "sandbox")
PID_FILE = STATE_DIR / "sandbox.pid"
LOG_FILE = STATE_DIR / "sandbox.log"
STATE_FILE = STATE_DIR / "state.pickle"
EXIT_NOT_RUNNING = 3
_WEBHOOK_OPTIONS = (
    "webhook_retry_base", "webhook_retry_max", "webhook_max_attempts", "webhook_timeout",
    "webhook_connections", "webhook_shuffle_window", "webhook_duplicate_rate",
)  # fmt: skip


def _url(args: argparse.Namespace) -> str:
    return f"http://{args.host}:{args.port}"


def _call(
    url: str, path: str, method: str = "GET", data: bytes | None = None, timeout: float = 2.0
) -> dict:
    request = urllib.request.Request(url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise SandboxError(
            f"{method} {path} answered {error.code}: {error.read().decode()}"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        raise SandboxNotRunning(f"no sandbox answers at {url} ({error})") from error


def _answers(url: str) -> bool:
    try:
        _call(url, "/_sandbox/health", timeout=0.5)
    except SandboxError:
        return False
    return True


def _read_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _api_version(value: str) -> str:
    if value not in API_VERSIONS:
        raise argparse.ArgumentTypeError(f"unknown Stripe API version {value!r}")
    return value


def _serve_args(args: argparse.Namespace) -> list[str]:
    options = ["--host", args.host, "--port", str(args.port), "--api-version", args.api_version]
    if args.rate_limit:
        options += [
            "--rate-limit",
            "--test-rate",
            str(args.test_rate),
            "--live-rate",
            str(args.live_rate),
        ]
    if args.endpoint_rate is not None:
        options += ["--endpoint-rate", str(args.endpoint_rate)]
    for name in ("fault_rate", "slow_rate", "slow_seconds", "drop_rate", "fault_seed",
                 *_WEBHOOK_OPTIONS):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            options += ["--" + name.replace("_", "-"), str(value)]
    if args.webhook_shuffle:
        options.append("--webhook-shuffle")
    if args.no_persist:
        options.append("--no-persist")
    else:
        options += ["--state-file", str((args.state_file or STATE_FILE).resolve())]
    return options


def _last_error(log: Path) -> str:
    """The last line the server wrote before dying at start: usually the reason."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def cmd_start(args: argparse.Namespace) -> int:
    url = _url(args)
    pid = _read_pid()
    if pid is not None and _answers(url):
        print(f"sandbox already running at {url} (pid {pid})")
        return 0
    if _answers(url):
        print(f"something already answers at {url} as a sandbox (not started from this project?)")
        return 0
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log_start = LOG_FILE.stat().st_size if LOG_FILE.exists() else 0
    with LOG_FILE.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.sandbox", "serve", *_serve_args(args)],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    # Another sandbox of this directory (on another port) keeps its pid file if this one fails.
    previous_pid = PID_FILE.read_text() if pid is not None else None
    PID_FILE.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if previous_pid:
                PID_FILE.write_text(previous_pid)
            else:
                PID_FILE.unlink(missing_ok=True)
            grown = LOG_FILE.stat().st_size > log_start
            reason = _last_error(LOG_FILE) if grown else ""
            print(
                f"sandbox exited at start (code {process.returncode}): {reason}\nsee {LOG_FILE}",
                file=sys.stderr,
            )
            return 1
        if _answers(url):
            print(url)
            return 0
        time.sleep(0.05)
    print(f"sandbox did not answer within {args.wait}s; see {LOG_FILE}", file=sys.stderr)
    return 1


def cmd_stop(args: argparse.Namespace) -> int:
    pid = _read_pid()
    if pid is None:
        PID_FILE.unlink(missing_ok=True)
        print("sandbox is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    # A clean stop writes the state file first: seconds for a store of 100 000 customers.
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and _read_pid() is not None:
        time.sleep(0.05)
    if _read_pid() is not None:
        os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    print(f"sandbox stopped (pid {pid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    url = _url(args)
    try:
        health = _call(url, "/_sandbox/health")
    except SandboxNotRunning:
        print(f"sandbox is not running at {url}")
        return EXIT_NOT_RUNNING
    counts = ", ".join(f"{name} {n}" for name, n in health["counts"].items() if n)
    print(f"sandbox running at {url} (pid {_read_pid() or '?'}): {counts or 'empty'}")
    if health.get("state_file"):
        saved = "saved" if health.get("state_saved") else "changes not yet saved"
        print(f"state kept in {health['state_file']} ({saved})")
    else:
        print("state kept in memory only")
    return 0


def _refuse_in_prod(action: str) -> int:
    """The sandbox is a DEV tool: emptying or filling it is refused under ENV=PROD, as in make."""
    from app.core.config import load_settings, refuse_in_prod
    from app.core.errors import PipelineError

    try:
        refuse_in_prod(load_settings(), action)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    if _refuse_in_prod("empty the sandbox"):
        return 1
    _call(_url(args), "/_sandbox/reset", method="POST", data=b"")
    print("sandbox state emptied")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    if _refuse_in_prod("seed the sandbox"):
        return 1
    data = f"customers={args.customers}&seed={args.seed}".encode()
    report = _seed_with_progress(_url(args), data, args.customers, quiet=args.quiet)
    counts = ", ".join(f"{name} {n}" for name, n in report["counts"].items())
    print(
        f"seeded {report['objects']} objects ({counts}, line items {report['line_items']}) "
        f"and {report.get('events', 0)} events "
        f"in {report['seconds']}s: {report['objects_per_second']} objects/s"
    )
    return 0


def _seed_with_progress(url: str, data: bytes, customers: int, *, quiet: bool) -> dict:
    """POST the seed and, while the sandbox works, draw how far it is (customers generated,
    then the events announcing them), asking it four times a second."""
    import threading

    from app.core.progress import ProgressBoard

    outcome: dict[str, Any] = {}

    def post() -> None:
        try:
            outcome["report"] = _call(url, "/_sandbox/seed", method="POST", data=data, timeout=3600)
        except BaseException as exc:  # noqa: BLE001 — raised in the command's thread
            outcome["error"] = exc

    worker = threading.Thread(target=post, name="seed", daemon=True)
    with ProgressBoard(enabled=not quiet) as board:
        tasks = {"customers": board.task("seed customers", total=customers, unit="customers")}
        worker.start()
        while True:
            running = worker.is_alive()
            try:
                state = _call(url, "/_sandbox/seed")
            except SandboxError:
                state = {}  # the answer to the POST says what went wrong, if anything did
            for step in ("customers", "events"):
                if not isinstance(state.get(step), dict):
                    continue
                if step not in tasks:  # its total is known once the customers are made
                    tasks[step] = board.task(f"seed {step}", total=state[step]["total"], unit=step)
                task = tasks[step]
                task(state[step]["done"] - task.count)
                if task.total is not None and task.count >= task.total:
                    board.finish(task)
            if not running:
                break
            worker.join(0.25)
        for task in tasks.values():
            board.finish(task)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["report"]


def _webhook_config(args: argparse.Namespace) -> WebhookConfig:
    """The webhook options given, over WebhookConfig's defaults; seeded by --fault-seed."""
    given = {
        name.removeprefix("webhook_"): getattr(args, name)
        for name in _WEBHOOK_OPTIONS
        if getattr(args, name) is not None
    }
    if "retry_base" in given and "retry_max" not in given:
        given["retry_max"] = max(WebhookConfig.retry_max, given["retry_base"])
    return WebhookConfig(**given, shuffle=args.webhook_shuffle, seed=args.fault_seed)


def cmd_churn(args: argparse.Namespace) -> int:
    from app.sandbox.churn import ChurnError, run_churn

    if _refuse_in_prod("churn the sandbox"):
        return 1
    try:
        report = run_churn(
            args.url or _url(args),
            rate=args.rate,
            seconds=args.seconds,
            seed=args.seed,
            log_path=args.log,
        )
    except ChurnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.errors else 0


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        webhooks = _webhook_config(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = SandboxConfig(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        test_rate=args.test_rate,
        live_rate=args.live_rate,
        endpoint_rate=args.endpoint_rate,
        faults=FaultConfig(
            error_rate=args.fault_rate or 0.0,
            slow_rate=args.slow_rate or 0.0,
            slow_seconds=args.slow_seconds or 1.0,
            drop_rate=args.drop_rate or 0.0,
            seed=args.fault_seed,
        ),
        state_file=None if args.no_persist else args.state_file,
        webhooks=webhooks,
        api_version=args.api_version,
    )
    # SIGTERM (from `stop`) becomes KeyboardInterrupt so the socket closes cleanly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        serve_forever(config)
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("sandbox stopping")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--host",
        default=os.environ.get("SANDBOX_HOST", DEFAULT_HOST),
        help="default 127.0.0.1 (env SANDBOX_HOST)",
    )
    common.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT)),
        help="default 12111 (env SANDBOX_PORT)",
    )
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--api-version",
        type=_api_version,
        default=os.environ.get("SANDBOX_API_VERSION", DEFAULT_API_VERSION),
        help="the account's default API version: answers without Stripe-Version use it and "
        f"events carry it (default {DEFAULT_API_VERSION}, env SANDBOX_API_VERSION)",
    )
    server.add_argument(
        "--rate-limit", action="store_true", help="answer 429 above Stripe's rates (off by default)"
    )
    server.add_argument(
        "--test-rate", type=float, default=25.0, help="requests/s with sk_test_ keys (default 25)"
    )
    server.add_argument(
        "--live-rate", type=float, default=100.0, help="requests/s with sk_live_ keys (default 100)"
    )
    server.add_argument(
        "--endpoint-rate",
        type=float,
        default=None,
        help="requests/s per endpoint (default: no per-endpoint limit)",
    )
    server.add_argument(
        "--fault-rate", type=float, default=None, help="share of requests answered 500, e.g. 0.05"
    )
    server.add_argument(
        "--slow-rate", type=float, default=None, help="share of requests delayed by --slow-seconds"
    )
    server.add_argument(
        "--slow-seconds", type=float, default=None, help="delay of slow responses (default 1.0)"
    )
    server.add_argument(
        "--drop-rate",
        type=float,
        default=None,
        help="share of connections closed without an answer",
    )
    server.add_argument(
        "--fault-seed",
        type=int,
        default=None,
        help="seed of the fault draw (and of webhook shuffles and duplicates), to replay a run",
    )
    hooks = WebhookConfig()
    server.add_argument(
        "--webhook-retry-base",
        type=float,
        default=None,
        help=f"seconds before a failed webhook delivery is retried, doubling each time "
        f"(default {hooks.retry_base})",
    )
    server.add_argument(
        "--webhook-retry-max",
        type=float,
        default=None,
        help=f"longest wait between two delivery attempts (default {hooks.retry_max})",
    )
    server.add_argument(
        "--webhook-max-attempts",
        type=int,
        default=None,
        help=f"delivery attempts before one is given up (default {hooks.max_attempts})",
    )
    server.add_argument(
        "--webhook-timeout",
        type=float,
        default=None,
        help=f"seconds an endpoint has to answer (default {hooks.timeout})",
    )
    server.add_argument(
        "--webhook-connections",
        type=int,
        default=None,
        help=f"concurrent deliveries per endpoint (default {hooks.connections})",
    )
    server.add_argument(
        "--webhook-shuffle",
        action="store_true",
        help="deliver out of order: hold each event a random time up to --webhook-shuffle-window",
    )
    server.add_argument(
        "--webhook-shuffle-window",
        type=float,
        default=None,
        help=f"seconds of the shuffle window (default {hooks.shuffle_window})",
    )
    server.add_argument(
        "--webhook-duplicate-rate",
        type=float,
        default=None,
        help="share of events delivered twice, e.g. 0.1 (seeded by --fault-seed)",
    )
    server.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help=f"where the state is kept across restarts (start: default {STATE_FILE}; "
        "serve: in memory unless given)",
    )
    server.add_argument(
        "--no-persist",
        action="store_true",
        default=os.environ.get("SANDBOX_PERSIST", "1").lower() in ("0", "false", "no", "off"),
        help="keep the state in memory only: lost on stop (env SANDBOX_PERSIST=0)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = sub.add_parser(
        "start", parents=[common, server], help="start in the background and print the URL"
    )
    start.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for it to answer (loading a big state file takes a while)",
    )
    start.set_defaults(func=cmd_start)
    sub.add_parser("serve", parents=[common, server], help="serve in the foreground").set_defaults(
        func=cmd_serve
    )
    stop = sub.add_parser(
        "stop", parents=[common], help="stop the background sandbox (its state is saved)"
    )
    stop.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to let it save its state before killing it",
    )
    stop.set_defaults(func=cmd_stop)
    sub.add_parser("status", parents=[common], help="exit 0 when running, 3 when not").set_defaults(
        func=cmd_status
    )
    sub.add_parser(
        "reset", parents=[common], help="empty the running sandbox and its state file"
    ).set_defaults(func=cmd_reset)
    seed = sub.add_parser(
        "seed", parents=[common], help="fill the running sandbox with a generated graph"
    )
    seed.add_argument(
        "--customers", type=int, required=True, help="number of customers to generate"
    )
    seed.add_argument(
        "-q", "--quiet", action="store_true", help="no progress display, only the closing line"
    )
    seed.add_argument(
        "--seed", type=int, default=0, help="generator seed (same seed, same objects)"
    )
    seed.set_defaults(func=cmd_seed)
    churn = sub.add_parser(
        "churn",
        parents=[common],
        help="change the running sandbox like a live account does, for a while",
        description="Mutate customers, cards, subscriptions, invoices, products and prices of "
        "a running sandbox through its HTTP API at a steady rate; print a summary at the end "
        "(exit 1 when some requests failed).",
    )
    churn.add_argument("--rate", type=float, default=50.0, help="mutations/s (default 50)")
    churn.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    churn.add_argument("--seed", type=int, default=None, help="seed of the choices, to replay")
    churn.add_argument(
        "--url", default=None, help="the sandbox's URL (loopback only; default from --host/--port)"
    )
    churn.add_argument(
        "--log",
        type=Path,
        default=None,
        help="write one JSON line per mutation: at, kind, object, id, request_id",
    )
    churn.set_defaults(func=cmd_churn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SandboxNotRunning as error:
        print(f"{error}; start it with: python -m app.sandbox start", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except SandboxError as error:
        print(str(error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
