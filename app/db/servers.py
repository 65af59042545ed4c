"""Start and stop the two PostgreSQL servers the project uses (dev on 5434, test on 5435).

Whatever PostgreSQL already answers at DATABASE_URL / TEST_DATABASE_URL with their credentials
is used as it is: another checkout's embedded servers, docker, a system server. For the others,
Docker first, as the original README describes (`docker compose up -d`). Where no Docker engine
answers, the URLs' ports are served by embedded PostgreSQL servers whose binaries come from the
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

import psycopg2

from app.core.config import PROJECT_ROOT, load_settings, parse_database_url
from app.core.errors import PipelineError, first_line

log = logging.getLogger(__name__)

SYSTEM_USER = "pgserver"
PASSWORD = "postgres"
DATA_ROOT = PROJECT_ROOT / "data" / "pg"


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    url: str = ""  # the configured URL this server is to answer
    host: str = "127.0.0.1"
    setting: str = "DATABASE_URL"

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.name

    @property
    def log_file(self) -> Path:
        return DATA_ROOT / f"{self.name}.log"


SERVERS = (Server("dev", 5434), Server("test", 5435))


class ServerError(PipelineError):
    pass


def configured_servers() -> tuple[Server, ...]:
    """dev and test as the settings name them: the port, host and credentials of their URLs."""
    settings = load_settings()
    found = []
    for server, setting, url in (
        (SERVERS[0], "DATABASE_URL", settings.database_url),
        (SERVERS[1], "TEST_DATABASE_URL", settings.test_database_url),
    ):
        if not url:
            continue
        parts = parse_database_url(url, setting)
        found.append(
            Server(
                server.name,
                parts.port or 5432,
                url=url,
                host=parts.host or "127.0.0.1",
                setting=setting,
            )
        )
    return tuple(found)


def probe(url: str) -> str | None:
    """None when a PostgreSQL answers at the URL and accepts its credentials; else why not.

    A missing database still counts as answering: `make init-db` creates it.
    """
    parts = parse_database_url(url)
    params = {
        "host": parts.host,
        "port": parts.port,
        "user": parts.user,
        "password": parts.password,
        "dbname": parts.database,
        **dict(parts.query),
    }
    try:
        conn = psycopg2.connect(
            connect_timeout=3, **{k: v for k, v in params.items() if v is not None}
        )
    except psycopg2.Error as exc:
        reason = first_line(exc)
        if "database" in reason and "does not exist" in reason:
            return None
        return " ".join(reason.replace("FATAL:", "").split())
    conn.close()
    return None


def address(server: Server) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"{host}:{server.port}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:  # refused, unreachable, or a host name that does not resolve
        return False


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


def embedded_up(servers: tuple[Server, ...]) -> list[str]:
    bin_dir = _bin_dir()
    account = _run_as()
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    if account is not None:
        _make_reachable(DATA_ROOT, account)
    lines = []
    for server in servers:
        if _is_running(server, bin_dir, account):
            running_on = _running_port(server)
            if running_on == server.port:
                lines.append(f"{server.name}: already running on 127.0.0.1:{server.port}")
                continue
            raise ServerError(
                f"{server.name}: the embedded server already runs on port {running_on}, but "
                f"{server.setting} names port {server.port}: `make db-down`, then `make db-up`"
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


def _running_port(server: Server) -> int | None:
    """The port in the cluster's postmaster.pid (its fourth line)."""
    try:
        return int((server.data_dir / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


def _initdb(server: Server, bin_dir: Path, account: pwd.struct_passwd | None) -> None:
    if server.data_dir.exists():
        shutil.rmtree(server.data_dir)  # a half-made cluster from an interrupted initdb
    # the superuser and password the URL names, so the new server accepts what is configured
    parts = parse_database_url(server.url, server.setting) if server.url else None
    user = (parts.user if parts else None) or "postgres"
    password = (parts.password if parts else None) or PASSWORD
    pwfile = DATA_ROOT / f".{server.name}.pw"
    pwfile.write_text(password + "\n")
    if account is not None:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    try:
        result = _pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(server.data_dir),
                "-U",
                user,
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
    for server in configured_servers():
        reason = probe(server.url)
        if reason is None:
            state = "answering"
        elif port_open(server.port, server.host):
            state = f"taken, but not answering with the configured credentials ({reason})"
        else:
            state = "down"
        lines.append(f"{server.name}: {address(server)} {state}")
    return lines


def up() -> list[str]:
    """Make dev and test answer at their URLs: use what already does, start the rest."""
    lines = []
    to_start = []
    for server in configured_servers():
        reason = probe(server.url)
        if reason is None:
            lines.append(
                f"{server.name}: PostgreSQL already answering at {address(server)} with the "
                f"credentials of {server.setting}: using it"
            )
        elif port_open(server.port, server.host):
            raise ServerError(
                f"{server.name}: {address(server)} is taken by something that does not answer "
                f"as PostgreSQL with the credentials of {server.setting} ({reason}). Stop the "
                f"program on port {server.port}, fix the user and password in {server.setting}, "
                f"or point {server.setting} at a free port (db-up then starts a server there)"
            )
        elif server.host not in LOCAL_HOSTS:
            raise ServerError(
                f"{server.name}: nothing answers at {address(server)} ({reason}); db-up starts "
                f"servers on this machine only: start that one, or point {server.setting} here"
            )
        else:
            to_start.append(server)
    if not to_start:
        return lines
    lines += _start(tuple(to_start))
    _wait_until_answering(to_start)
    return lines


def _start(servers: tuple[Server, ...]) -> list[str]:
    # docker-compose.yml publishes the default ports only
    default_ports = {s.name: s.port for s in SERVERS}
    if docker_engine_answers() and all(s.port == default_ports[s.name] for s in servers):
        compose = PROJECT_ROOT / "docker-compose.yml"
        result = subprocess.run(
            ["docker", "compose", "-f", str(compose), "up", "-d", "--wait"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServerError(f"docker compose up failed: {result.stderr.strip()}")
        return ["docker compose: stripe_db_dev on 5434 and stripe_db_test on 5435 are up"]
    return embedded_up(servers)


def down() -> list[str]:
    lines = []
    if docker_engine_answers():
        compose = PROJECT_ROOT / "docker-compose.yml"
        subprocess.run(["docker", "compose", "-f", str(compose), "down"], capture_output=True)
        lines.append("docker compose: stopped")
    return lines + embedded_down()


def _wait_until_answering(servers: list[Server], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for server in servers:
        while (reason := probe(server.url)) is not None:
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{server.name}: PostgreSQL does not answer at {address(server)} with the "
                    f"credentials of {server.setting} ({reason}); see {server.log_file}"
                )
            time.sleep(0.2)
