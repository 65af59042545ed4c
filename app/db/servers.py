"""Start and stop the two PostgreSQL servers the project uses (dev on 5434, test on 5435).

Docker first, as the original README describes (`docker compose up -d`). Where no Docker engine
answers, the same ports are served by embedded PostgreSQL servers whose binaries come from the
`pgserver` wheel, with their data under `data/pg/`. PostgreSQL refuses to run as root, so as root
the servers run as an unprivileged system user (the one `pgserver` itself uses).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from app.config import PROJECT_ROOT
from app.errors import PipelineError

log = logging.getLogger(__name__)

SYSTEM_USER = "pgserver"
PASSWORD = "postgres"
DATA_ROOT = PROJECT_ROOT / "data" / "pg"


@dataclass(frozen=True)
class Server:
    name: str
    port: int

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.name

    @property
    def log_file(self) -> Path:
        return DATA_ROOT / f"{self.name}.log"


SERVERS = (Server("dev", 5434), Server("test", 5435))


class ServerError(PipelineError):
    pass


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def docker_engine_answers() -> bool:
    if os.environ.get("STRIPE_OLTP_NO_DOCKER") or not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _bin_dir() -> Path:
    # find the package without importing it: its __init__ pulls in modules we do not use
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the pgserver package is not installed: run `make install`")
    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise ServerError(f"the pgserver package has no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def _run_as() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs under: ours, or an unprivileged one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _make_reachable(path: Path, account: pwd.struct_passwd) -> None:
    """Let the unprivileged account traverse every parent folder and own the data root."""
    for parent in reversed(path.parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, account.pw_uid, account.pw_gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), account.pw_uid, account.pw_gid)


def _pg(args: list[str], account: pwd.struct_passwd | None) -> subprocess.CompletedProcess[str]:
    kwargs: dict = {}
    env = dict(os.environ)
    if account is not None:
        kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env["HOME"] = str(DATA_ROOT)
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=DATA_ROOT, **kwargs)


def _is_running(server: Server, bin_dir: Path, account: pwd.struct_passwd | None) -> bool:
    if not (server.data_dir / "PG_VERSION").exists():
        return False
    return (
        _pg([str(bin_dir / "pg_ctl"), "status", "-D", str(server.data_dir)], account).returncode
        == 0
    )


def embedded_up(servers: tuple[Server, ...] = SERVERS) -> list[str]:
    bin_dir = _bin_dir()
    account = _run_as()
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    if account is not None:
        _make_reachable(DATA_ROOT, account)
    lines = []
    for server in servers:
        if _is_running(server, bin_dir, account):
            lines.append(f"{server.name}: already running on 127.0.0.1:{server.port}")
            continue
        if port_open(server.port):
            raise ServerError(
                f"port {server.port} is taken by another program; stop it, or point "
                f"DATABASE_URL/TEST_DATABASE_URL at that server and skip `make db-up`"
            )
        if not (server.data_dir / "PG_VERSION").exists():
            _initdb(server, bin_dir, account)
        options = f"-p {server.port} -h 127.0.0.1 -k ''"
        if server.name == "test":
            # the test server holds nothing worth a crash-safe write; tests run much faster
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        result = _pg(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(server.data_dir),
                "-l",
                str(server.log_file),
                "-o",
                options,
            ],
            account,
        )
        if result.returncode != 0:
            raise ServerError(
                f"PostgreSQL ({server.name}) did not start: {result.stderr.strip() or result.stdout.strip()}"
                f" — see {server.log_file}"
            )
        lines.append(
            f"{server.name}: started on 127.0.0.1:{server.port} (data in {server.data_dir})"
        )
    return lines


def _initdb(server: Server, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
    if server.data_dir.exists():
        shutil.rmtree(server.data_dir)  # a half-made cluster from an interrupted initdb
    pwfile = DATA_ROOT / f".{server.name}.pw"
    pwfile.write_text(PASSWORD + "\n")
    if account is not None:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    try:
        result = _pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            account,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ServerError(f"initdb ({server.name}) failed: {result.stderr.strip()}")


def embedded_down(servers: tuple[Server, ...] = SERVERS) -> list[str]:
    if not DATA_ROOT.exists():
        return [f"{s.name}: not running" for s in servers]
    bin_dir = _bin_dir()
    account = _run_as()
    lines = []
    for server in servers:
        if not _is_running(server, bin_dir, account):
            lines.append(f"{server.name}: not running")
            continue
        result = _pg(
            [str(bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(server.data_dir)],
            account,
        )
        if result.returncode != 0:
            raise ServerError(f"PostgreSQL ({server.name}) did not stop: {result.stderr.strip()}")
        lines.append(f"{server.name}: stopped")
    return lines


def status() -> list[str]:
    lines = []
    for server in SERVERS:
        state = "answering" if port_open(server.port) else "down"
        lines.append(f"{server.name}: 127.0.0.1:{server.port} {state}")
    return lines


def up() -> list[str]:
    if docker_engine_answers():
        compose = PROJECT_ROOT / "docker-compose.yml"
        result = subprocess.run(
            ["docker", "compose", "-f", str(compose), "up", "-d", "--wait"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServerError(f"docker compose up failed: {result.stderr.strip()}")
        return ["docker compose: stripe_db_dev on 5434 and stripe_db_test on 5435 are up"]
    lines = embedded_up()
    _wait_for_ports([s.port for s in SERVERS])
    return lines


def down() -> list[str]:
    lines = []
    if docker_engine_answers():
        compose = PROJECT_ROOT / "docker-compose.yml"
        subprocess.run(["docker", "compose", "-f", str(compose), "down"], capture_output=True)
        lines.append("docker compose: stopped")
    return lines + embedded_down()


def _wait_for_ports(ports: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(port_open(p) for p in ports):
        if time.monotonic() > deadline:
            raise ServerError(f"PostgreSQL did not answer on ports {ports} within {timeout:.0f}s")
        time.sleep(0.1)
