import os
import shutil
import subprocess
import sys

import pytest

from app.core import config
from app.core.config import (
    PROJECT_ROOT,
    load_settings,
    mask_key,
    mask_secrets,
    refuse_in_prod,
    refuse_live_key,
)
from app.core.errors import ConfigError, LiveKeyError, ProdGuardError
from app.db.session import sqlalchemy_url

PYTHON = sys.executable


def test_dev_is_the_default_and_reads_env_dev(monkeypatch, tmp_path):
    # the committed .env.dev alone: a .env.local on this machine would override it
    shutil.copy(PROJECT_ROOT / ".env.dev", tmp_path / ".env.dev")
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    monkeypatch.delenv("ENV", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.env == "DEV"
    assert settings.database_url.endswith(":5434/stripe_db_dev")


def test_environment_variables_override_the_files(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.internal:5432/mirror")
    assert load_settings().database_url == "postgresql://u:p@db.internal:5432/mirror"


def test_unknown_env_is_refused(monkeypatch):
    with pytest.raises(ConfigError, match="STAGING"):
        load_settings("STAGING")


def test_prod_guard_refuses_destructive_actions(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@prod:5432/stripe")
    settings = load_settings("PROD")
    with pytest.raises(ProdGuardError, match="ENV=PROD"):
        refuse_in_prod(settings, "reset the databases")
    refuse_in_prod(load_settings("DEV"), "reset the databases")  # DEV goes on


def test_live_keys_are_refused_and_masked():
    with pytest.raises(LiveKeyError) as caught:
        refuse_live_key("sk_live_" + "a1B2c3D4e5F6g7H8")
    assert "a1B2c3D4e5F6" not in str(caught.value)
    assert "g7H8" in str(caught.value)
    refuse_live_key("sk_test_abc")


def test_restricted_live_keys_are_refused_too():
    with pytest.raises(LiveKeyError) as caught:
        refuse_live_key("rk_live_" + "a1B2c3D4e5F6g7H8")
    assert "a1B2c3D4e5F6" not in str(caught.value) and "rk_live_…g7H8" in str(caught.value)
    refuse_live_key("rk_test_" + "a1B2c3D4e5F6g7H8")  # a restricted test key goes on


def test_any_key_is_masked_to_its_prefix_and_last_four():
    assert mask_key("sk_test_4eC39HqLyjWDarjtT1zdp7dc") == "sk_test_…p7dc"
    assert mask_key("whatever-secret-value") == "…alue"
    assert mask_key("sk_test_ab") == "sk_test_…"
    # a short or mistyped key shows nothing of itself, and underscores in it reveal nothing
    assert mask_key("sk_tset_local") == "sk_tset_…"
    assert mask_key("sk_test_local_sandbox") == "sk_test_…"


def test_a_configured_key_of_any_shape_is_masked_once_settings_are_loaded(monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "my stripe key, pasted wrong 0123456789")
    load_settings()
    masked = mask_secrets("STRIPE_SECRET_KEY=my stripe key, pasted wrong 0123456789 refused")
    assert "pasted wrong" not in masked and masked.endswith("…6789 refused")


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db.internal:5432/mirror",
        "postgresql://u:p@db.internal:5432/mirror",
        "postgresql+psycopg2://u:p@db.internal:5432/mirror",
        "  postgres://u:p@db.internal:5432/mirror\n",
    ],
)
def test_every_postgres_url_form_is_accepted(monkeypatch, url):
    monkeypatch.setenv("DATABASE_URL", url)
    parsed = sqlalchemy_url(load_settings().database_url)
    assert parsed.drivername == "postgresql+psycopg2"
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "u",
        "p",
        "db.internal",
        5432,
        "mirror",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:hunter2@h/db", "not a PostgreSQL URL"),
        ("hunter2", "not a URL"),
        ("postgresql://u:hunter2@h:port/db", "the port must be a number"),
    ],
)
def test_a_url_that_cannot_be_used_is_refused_without_its_password(monkeypatch, url, message):
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_raw_special_characters_in_a_password_are_read_as_written():
    parsed = sqlalchemy_url("postgres://postgres:Pa@ss:w/rd#?@127.0.0.1:5434/stripe_db_dev")
    assert (parsed.password, parsed.host, parsed.port, parsed.database) == (
        "Pa@ss:w/rd#?",
        "127.0.0.1",
        5434,
        "stripe_db_dev",
    )
    encoded = sqlalchemy_url(
        "postgresql://postgres:Pa%40ss%3Aw%2Frd@127.0.0.1:5434/x?sslmode=disable"
    )
    assert encoded.password == "Pa@ss:w/rd" and dict(encoded.query) == {"sslmode": "disable"}


def test_secrets_are_masked_in_text():
    text = "key sk_test_4eC39HqLyjWDarjtT1zdp7dc url postgresql://me:hunter2@db:5432/x"
    masked = mask_secrets(text)
    assert "4eC39HqLyjWDarjtT1zd" not in masked and "hunter2" not in masked
    assert "sk_test_…p7dc" in masked and "postgresql://me:***@db" in masked


def run(args, env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run(
        args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.e2e
def test_reset_script_refuses_under_prod_on_its_own():
    result = run(
        [PYTHON, "scripts/init_db.py", "--reset"],
        {"ENV": "PROD", "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/never"},
    )
    assert result.returncode != 0
    assert "refusing to reset the databases under ENV=PROD" in result.stderr


@pytest.mark.e2e
def test_init_db_of_an_unreachable_postgres_url_is_one_masked_line():
    result = run(
        [PYTHON, "scripts/init_db.py", "--only", "dev"],
        {"DATABASE_URL": "postgres://postgres:Se@cret@127.0.0.1:1/stripe_db_dev"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "postgres://postgres:***@127.0.0.1:1" in result.stderr and "cret" not in result.stderr
    assert "make db-up" in result.stderr


@pytest.mark.e2e
@pytest.mark.tools("make")
@pytest.mark.parametrize("target", ["reset-db", "test", "test-fast", "test-shared", "bench-ingest"])
def test_make_refuses_destructive_targets_under_prod(target):
    result = run(["make", target, "ENV=PROD"], {})
    assert result.returncode != 0
    assert "refused under ENV=PROD" in result.stderr
