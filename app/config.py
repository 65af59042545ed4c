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

from dotenv import dotenv_values

from app.errors import ConfigError, LiveKeyError, ProdGuardError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("DEV", "PROD")

_SECRET_PATTERN = re.compile(r"\b((?:sk|rk|pk)_(?:live|test)_|whsec_)([A-Za-z0-9]+)")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def mask_secrets(text: str) -> str:
    """Hide Stripe keys and database passwords in text that may be printed or logged."""
    text = _SECRET_PATTERN.sub(lambda m: m.group(1) + "…" + m.group(2)[-4:], text)
    return _URL_PASSWORD.sub(r"\1***\3", text)


def mask_key(key: str) -> str:
    """Any API key as its prefix and last four characters (`sk_test_…p7dc`), whatever its form."""
    prefix = key[: key.rfind("_") + 1] if "_" in key else ""
    return f"{prefix}…{key[-4:]}" if len(key) - len(prefix) > 4 else f"{prefix}…"


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
    return Settings(
        env=env,
        database_url=database_url,
        test_database_url=get("TEST_DATABASE_URL"),
        stripe_secret_key=get("STRIPE_SECRET_KEY"),
        stripe_api_base=get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/"),
        stripe_api_version=get("STRIPE_API_VERSION", "2026-10-28.endive"),
        json_dir=PROJECT_ROOT / get("JSON_DIR", "data/imported_stripe_data"),
        rejects_dir=PROJECT_ROOT / get("REJECTS_DIR", "data/rejects"),
    )


_KEYS = (
    "DATABASE_URL",
    "TEST_DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_BASE",
    "STRIPE_API_VERSION",
    "JSON_DIR",
    "REJECTS_DIR",
)


def refuse_in_prod(settings: Settings, action: str) -> None:
    """Guard for populating and destructive commands; scripts call it before touching anything."""
    if settings.is_prod:
        raise ProdGuardError(f"refusing to {action} under ENV=PROD: it is allowed in DEV only")


def refuse_live_key(key: str) -> None:
    """Populating writes test objects: a live key is refused whatever ENV says."""
    if key.startswith(("sk_live_", "rk_live_")):
        raise LiveKeyError(
            f"refusing to use a live Stripe key ({mask_secrets(key)}): populate works in test mode only"
        )
