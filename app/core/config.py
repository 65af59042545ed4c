"""Settings in one place: which environment, which databases, which Stripe.

ENV=DEV (default) reads `.env.dev`; ENV=PROD reads `.env.prod`. A git-ignored `.env.local`
overrides either on one machine. Variables already set in the process environment win over all
files, so `make ... DATABASE_URL=...` and CI settings behave as people expect.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from dotenv import dotenv_values

from app.core.errors import ConfigError, LiveKeyError, ProdGuardError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
ENVIRONMENTS = ("DEV", "PROD")

# A Stripe key or secret, whatever its mode: `sk_test_…`, `rk_live_…`, `whsec_…`, and the
# mistyped shapes people paste (`sk_tset_…`), without catching names such as `pk_customers`.
_KEY_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?:(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9_]+"
    r"|(?:sk|rk|pk)_[A-Za-z]{2,8}_[A-Za-z0-9]{10,}[A-Za-z0-9_]*"
    r"|(?:sk|rk|pk)_[A-Za-z]{2,8}_\*+[A-Za-z0-9]*"  # Stripe's own masking: sk_test_****p7dc
    r"|whsec_[A-Za-z0-9_]+)"
)
_KEY_PREFIX = re.compile(r"^(?:(?:sk|rk|pk)_[A-Za-z]{2,8}_|whsec_|(?:sk|rk|pk)_)")
# user:password@ in any URL; the password runs to the last `@` of the word, so a raw `@` in it
# is masked whole (over-masking a query that holds an `@` is the safe way to be wrong)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(\S*)(@)")
# libpq's keyword form: password=… (quoted or not)
_DSN_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# values masked wherever they appear verbatim, whatever their shape (the configured Stripe key)
_known_secrets: set[str] = set()
_MIN_KNOWN_SECRET = 6  # shorter values are not secrets, and masking them would garble text


def remember_secret(value: str) -> None:
    """Mask this value in every later message, whatever its shape (load_settings calls it)."""
    if len(value) >= _MIN_KNOWN_SECRET:
        _known_secrets.add(value)


def mask_secrets(text: str) -> str:
    """Hide Stripe keys and database passwords in text that may be printed, logged or saved.

    Masked: anything shaped like a Stripe key or secret, the password of any URL
    (`scheme://user:***@host`) or libpq keyword string (`password=***`), and the remembered
    secrets (the configured STRIPE_SECRET_KEY, whatever its shape) wherever they appear.
    """
    for secret in sorted(_known_secrets, key=len, reverse=True):  # longest first: no leftovers
        text = text.replace(secret, mask_key(secret))
    text = _KEY_PATTERN.sub(lambda m: mask_key(m.group(0)), text)
    text = _URL_PASSWORD.sub(r"\1***\3", text)
    return _DSN_PASSWORD.sub(r"\1***", text)


def mask_key(key: str) -> str:
    """Any API key as its prefix and last four characters (`sk_test_…p7dc`), whatever its form.

    The last four are shown only when at least twelve characters are hidden: of a short or
    mistyped key they would give away too much.
    """
    match = _KEY_PREFIX.match(key)
    prefix = match.group(0) if match else ""
    rest = key[len(prefix) :]
    return f"{prefix}…{rest[-4:]}" if len(rest) >= 16 else f"{prefix}…"


# The URL forms people paste: psql's, Heroku's and SQLAlchemy's. All of them run on psycopg2.
DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg")
# what follows the userinfo: host (or [ipv6]), port, database, query; none of them holds an `@`
_URL_TAIL = re.compile(
    r"(?P<host>\[[^\]/?#@\s]*\]|[^\[\]/?#@:\s]*)"
    r"(?::(?P<port>[^/?#@]*))?"
    r"(?:/(?P<database>[^?#@]*))?"
    r"(?:\?(?P<query>[^#@]*))?"
    r"\Z"
)
_URL_FORM = "postgresql://user:password@host:port/database"


@dataclass(frozen=True)
class DatabaseURL:
    """A database URL taken apart, every part decoded (`%40` → `@`)."""

    user: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...] = ()


def parse_database_url(url: str, name: str = "DATABASE_URL") -> DatabaseURL:
    """Read a PostgreSQL URL the way people paste it.

    `postgres://`, `postgresql://` and `postgresql+psycopg2://` are the same thing here. The
    password may be percent-encoded or raw: a raw `@` in it is fine, because the `@` that ends
    it is the last one before the host (what follows has no `@`), and a raw `:`, `/`, `#` or
    `?` is fine too. Only a raw `%` followed by two hex digits reads as an escape.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        # not echoed: a value that is not a URL may be anything, a bare password included
        raise ConfigError(f"{name} is not a URL: expected {_URL_FORM}")
    if scheme.lower() not in DATABASE_SCHEMES:
        raise ConfigError(
            f"{name} is not a PostgreSQL URL (scheme {scheme!r}): expected {_URL_FORM}"
        )
    userinfo: str | None = None
    tail = rest
    for at in reversed([i for i, char in enumerate(rest) if char == "@"]):
        if _URL_TAIL.match(rest, at + 1):
            userinfo, tail = rest[:at], rest[at + 1 :]
            break
    match = _URL_TAIL.match(tail)
    if match is None:
        raise ConfigError(
            f"{name} cannot be read as {_URL_FORM} (an `@` in a query value must be written %40)"
        )
    user = password = None
    if userinfo is not None:
        user_part, has_password, password_part = userinfo.partition(":")
        user = unquote(user_part) or None
        password = unquote(password_part) if has_password else None
    host = match["host"] or ""
    port = match["port"] or ""
    if port and not port.isdigit():
        raise ConfigError(f"{name}: the port must be a number, got {port!r}")
    return DatabaseURL(
        user=user,
        password=password,
        host=unquote(host.strip("[]")) or None,
        port=int(port) if port else None,
        database=unquote(match["database"] or "") or None,
        query=tuple(parse_qsl(match["query"] or "", keep_blank_values=True)),
    )


def _remember_url_password(url: str, name: str) -> None:
    """A database password becomes a verbatim secret unless it also names something else
    in the URL (the dev default `postgres:postgres` would otherwise mask every `postgres`)."""
    password = parse_database_url(url, name).password
    if password and len(password) >= 8 and url.count(password) <= 1:
        remember_secret(password)


# The account of rows and exports that recorded none: a mirror made before rows knew their
# account (the migration tags its rows so), and a JSON export whose .meta.json names no account
# (an old export, data/sample/) when STRIPE_ACCOUNT is not set. Not a Stripe id: Stripe's are
# `acct_` and 16 letters or digits.
DEFAULT_ACCOUNT = "acct_default"


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    test_database_url: str
    stripe_secret_key: str
    stripe_api_base: str
    stripe_api_version: str
    json_dir: Path
    rejects_dir: Path
    # the signing secret of the webhook endpoint (`whsec_…`), for `make webhook`
    stripe_webhook_secret: str = ""
    # a connected account to mirror (the Stripe-Account header); empty: the key's own account
    stripe_account: str = ""

    @property
    def is_prod(self) -> bool:
        return self.env == "PROD"


def _read_env_files(env: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in (f".env.{env.lower()}", ".env.local"):
        path = PROJECT_ROOT / name
        if path.exists():
            values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    return values


def load_settings(env: str | None = None) -> Settings:
    env = (env or os.environ.get("ENV") or "DEV").upper()
    if env not in ENVIRONMENTS:
        raise ConfigError(f"ENV={env!r} is not known; use one of {', '.join(ENVIRONMENTS)}")
    if (
        env == "PROD"
        and not (PROJECT_ROOT / ".env.prod").exists()
        and "DATABASE_URL" not in os.environ
    ):
        raise ConfigError(
            "ENV=PROD needs .env.prod (copy .env.prod.example and fill it in) or DATABASE_URL set"
        )
    values = _read_env_files(env)
    values.update({k: v for k, v in os.environ.items() if k in _KEYS})

    def get(key: str, default: str = "") -> str:
        return values.get(key, default)

    database_url = get("DATABASE_URL")
    if not database_url:
        raise ConfigError(f"DATABASE_URL is not set for ENV={env} (see .env.{env.lower()})")
    remember_secret(get("STRIPE_SECRET_KEY"))
    remember_secret(get("STRIPE_WEBHOOK_SECRET"))
    _remember_url_password(database_url, "DATABASE_URL")
    if get("TEST_DATABASE_URL"):
        _remember_url_password(get("TEST_DATABASE_URL"), "TEST_DATABASE_URL")
    return Settings(
        env=env,
        database_url=database_url,
        test_database_url=get("TEST_DATABASE_URL"),
        stripe_secret_key=get("STRIPE_SECRET_KEY"),
        stripe_api_base=get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/"),
        stripe_api_version=get("STRIPE_API_VERSION", "2026-10-28.endive"),
        json_dir=PROJECT_ROOT / get("JSON_DIR", "data/imported_stripe_data"),
        rejects_dir=PROJECT_ROOT / get("REJECTS_DIR", "data/rejects"),
        stripe_webhook_secret=get("STRIPE_WEBHOOK_SECRET"),
        stripe_account=get("STRIPE_ACCOUNT"),
    )


_KEYS = (
    "DATABASE_URL",
    "TEST_DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_API_VERSION",
    "JSON_DIR",
    "REJECTS_DIR",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_ACCOUNT",
)


def refuse_in_prod(settings: Settings, action: str) -> None:
    """Guard for populating and destructive commands; scripts call it before touching anything."""
    if settings.is_prod:
        raise ProdGuardError(f"refusing to {action} under ENV=PROD: it is allowed in DEV only")


def refuse_live_key(key: str) -> None:
    """Populating writes test objects: a live key is refused whatever ENV says."""
    if key.startswith(("sk_live_", "rk_live_")):
        raise LiveKeyError(
            f"refusing to use a live Stripe key ({mask_key(key)}): populate works in test mode only"
        )
