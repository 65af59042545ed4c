import os
import subprocess
import sys

import pytest

from app.config import (
    PROJECT_ROOT,
    load_settings,
    mask_key,
    mask_secrets,
    refuse_in_prod,
    refuse_live_key,
)
from app.errors import ConfigError, LiveKeyError, ProdGuardError

PYTHON = sys.executable


def test_dev_is_the_default_and_reads_env_dev(monkeypatch):
    if (PROJECT_ROOT / ".env.local").exists():
        pytest.skip(".env.local overrides .env.dev on this machine")
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


def test_any_key_is_masked_to_its_prefix_and_last_four():
    assert mask_key("sk_test_4eC39HqLyjWDarjtT1zdp7dc") == "sk_test_…p7dc"
    assert mask_key("whatever-secret-value") == "…alue"
    assert mask_key("sk_test_ab") == "sk_test_…"


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


def test_reset_script_refuses_under_prod_on_its_own():
    result = run(
        [PYTHON, "scripts/init_db.py", "--reset"],
        {"ENV": "PROD", "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/never"},
    )
    assert result.returncode != 0
    assert "refusing to reset the databases under ENV=PROD" in result.stderr


@pytest.mark.parametrize("target", ["reset-db", "test", "bench-ingest"])
def test_make_refuses_destructive_targets_under_prod(target):
    result = run(["make", target, "ENV=PROD"], {})
    assert result.returncode != 0
    assert "refused under ENV=PROD" in result.stderr
