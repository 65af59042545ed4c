"""Secrets never reach a message, and every database URL a user pastes works (issue 8).

Properties: whatever the password (any character, raw or percent-encoded) and whatever the
shape of a Stripe key, `mask_secrets` hides them and the URL reads back to the same parts;
a few passwords really log in, through every URL form.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from unittest import mock
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import OperationalError

from app.core import config
from app.core.config import mask_key, mask_secrets, parse_database_url
from app.db.session import sqlalchemy_url
from app.schema import create_database
from tests.property_examples import examples

SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")
FAST = settings(max_examples=examples(40), deadline=None)

# (no `_`: a user named like `u_sk_test_…` would rightly be masked as a key)
users = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
# any character a person can type or paste, `@ : / # % ?` and unicode included (no surrogates)
passwords = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24)
# a password as it may sit raw in a line of text: no whitespace, nothing that reads as an escape
raw_passwords = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="%"),
    min_size=1,
    max_size=24,
)
key_bodies = st.from_regex(r"[A-Za-z0-9]{10,40}", fullmatch=True)
key_prefixes = st.one_of(
    st.builds(
        "{}_{}_".format,
        st.sampled_from(["sk", "rk", "pk"]),
        st.sampled_from(["live", "test"]) | st.from_regex(r"[a-z]{2,8}", fullmatch=True),
    ),
    st.just("whsec_"),
)


@pytest.fixture(autouse=True)
def no_remembered_secrets() -> Iterator[None]:
    """The properties are about shapes: values remembered by earlier tests stay out of them."""
    with mock.patch.object(config, "_known_secrets", set()):
        yield


@FAST
@given(
    scheme=st.sampled_from(SCHEMES),
    user=users,
    password=passwords,
    prefix=key_prefixes,
    body=key_bodies,
)
def test_masked_text_holds_neither_the_password_nor_the_key(scheme, user, password, prefix, body):
    url = f"{scheme}://{user}:{quote(password, safe='')}@db.example:5432/mirror"
    key = prefix + body
    masked = mask_secrets(f"cannot reach {url}: refused; key {key} was used")
    assert masked == (
        f"cannot reach {scheme}://{user}:***@db.example:5432/mirror: refused; "
        f"key {mask_key(key)} was used"
    )
    shown = mask_key(key)
    assert body[:-4] not in shown and shown.startswith(prefix)


@FAST
@given(scheme=st.sampled_from(SCHEMES), user=users, password=raw_passwords)
@example(scheme="postgres", user="postgres", password="Pass@word")  # the issue's own
@example(scheme="postgresql", user="u", password="a://b:c@d/e#f?g")
def test_a_raw_password_is_masked_whole_even_with_at_signs(scheme, user, password):
    text = f"error: {scheme}://{user}:{password}@127.0.0.1:5434/stripe_db_dev refused"
    assert (
        mask_secrets(text) == f"error: {scheme}://{user}:***@127.0.0.1:5434/stripe_db_dev refused"
    )


@FAST
@given(scheme=st.sampled_from(SCHEMES), user=users, password=passwords, port=st.integers(1, 65535))
@example(scheme="postgres", user="u", password="@:/#%?@", port=5432)
@example(scheme="postgresql", user="u", password="%41 ü", port=1)
def test_every_url_form_reads_back_the_same_parts(scheme, user, password, port):
    url = f"{scheme}://{quote(user)}:{quote(password, safe='')}@db.example:{port}/mirror_db"
    parsed = sqlalchemy_url(url)
    assert (parsed.drivername, parsed.username, parsed.password) == (
        "postgresql+psycopg2",
        user,
        password,
    )
    assert (parsed.host, parsed.port, parsed.database) == ("db.example", port, "mirror_db")
    # what SQLAlchemy renders is read back the same: the round trip loses nothing
    again = parse_database_url(parsed.render_as_string(hide_password=False))
    assert (again.user, again.password, again.port) == (user, password, port)
    if "%" not in password:  # pasted raw, as people do: the last `@` before the host ends it
        raw = parse_database_url(f"{scheme}://{user}:{password}@db.example:{port}/mirror_db")
        assert (raw.user, raw.password, raw.host, raw.port) == (user, password, "db.example", port)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://postgres:Pass@word@127.0.0.1:5434/db", "postgres://postgres:***@127.0.0.1"),
        ("see postgresql://u:a%40b@h/db.", "see postgresql://u:***@h/db."),
        ("dsn host=h password='it s' user=u", "dsn host=h password=*** user=u"),
        ("STRIPE_SECRET_KEY=sk_tset_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_SECRET_KEY=sk_tset_…p7dc"),
        ("Invalid API Key provided: sk_tset_*ocal", "Invalid API Key provided: sk_tset_…"),
        ("whsec_abc123 and rk_live_" + "x" * 30, "whsec_… and rk_live_…xxxx"),
    ],
)
def test_secrets_of_any_shape_are_masked(url, expected):
    masked = mask_secrets(url)
    assert masked.startswith(expected), masked
    assert "word@" not in masked and "4eC39Hq" not in masked


def test_names_that_only_resemble_keys_are_left_alone():
    text = 'duplicate key value violates unique constraint "pk_invoice_payments" (pk_customers)'
    assert mask_secrets(text) == text


def test_the_configured_key_is_masked_whatever_its_shape():
    config.remember_secret("not-a-stripe-shape-1234567890")
    masked = mask_secrets("STRIPE_SECRET_KEY=not-a-stripe-shape-1234567890 refused")
    assert "not-a-stripe" not in masked and masked == "STRIPE_SECRET_KEY=…7890 refused"


# passwords that break naive parsers; all really log in below
HOSTILE_PASSWORDS = ["p@ss:w/rd#1?", "Pa@@ss", "with space", "ünï©ødé ✓", "q'uo\"te\\", "50%off%41"]


@pytest.fixture(scope="module")
def hostile_role(test_database_url: str) -> Iterator[tuple[str, str]]:
    """A role of our own on the test server, so its password can be anything."""
    create_database(test_database_url)
    admin = create_engine(
        sqlalchemy_url(test_database_url), isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
    )
    role = f"mirror_cfg_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        yield role, test_database_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _set_password(test_database_url: str, role: str, password: str) -> None:
    admin = create_engine(
        sqlalchemy_url(test_database_url), isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER ROLE "{role}" PASSWORD %s', (password,))
    finally:
        admin.dispose()


def _logs_in_as(url: str) -> str:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT current_user")).scalar())
    finally:
        engine.dispose()


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_hostile_passwords_log_in_through_every_url_form(hostile_role, password):
    role, test_url = hostile_role
    _set_password(test_url, role, password)
    server = parse_database_url(test_url)
    where = f"{server.host}:{server.port}/{server.database}"
    forms = [f"{scheme}://{role}:{quote(password, safe='')}@{where}" for scheme in SCHEMES]
    if "%" not in password:
        forms += [f"{scheme}://{role}:{password}@{where}" for scheme in SCHEMES]
    for url in forms:
        assert _logs_in_as(url) == role, mask_secrets(url)


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=16))
def test_any_password_logs_in_when_quoted(hostile_role, password):
    role, test_url = hostile_role
    _set_password(test_url, role, password)
    server = parse_database_url(test_url)
    url = f"postgres://{role}:{quote(password, safe='')}@{server.host}:{server.port}/postgres"
    assert _logs_in_as(url) == role


def test_a_wrong_password_is_refused_without_showing_it(hostile_role):
    role, test_url = hostile_role
    _set_password(test_url, role, "right-password")
    server = parse_database_url(test_url)
    url = f"postgres://{role}:wr0ng@pass@{server.host}:{server.port}/postgres"
    with pytest.raises(OperationalError) as caught:
        _logs_in_as(url)
    assert "password authentication failed" in str(caught.value)
    assert "wr0ng" not in mask_secrets(f"{url}: {caught.value}")


def test_the_bash_fetchers_mask_as_the_python_side_does(monkeypatch):
    # one masking: fetch_lib.sh asks app.core.config for it rather than keeping its own rules
    import os
    import subprocess
    from pathlib import Path

    from app.core.config import load_settings

    root = Path(__file__).resolve().parent.parent
    key = "not-a-stripe-shaped-key-1234567890"  # the configured key, whatever its shape
    text = f"refused {key}; also sk_live_{'x' * 24}abcd and postgresql://u:hunter22@db/x"
    script = 'source scripts/fetch_lib.sh; mask "$1"'
    env = {**os.environ, "STRIPE_SECRET_KEY": key}
    shown = subprocess.run(
        ["bash", "-c", script, "bash", text],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    monkeypatch.setenv("STRIPE_SECRET_KEY", key)
    load_settings()
    assert shown == mask_secrets(text)
    assert key not in shown and "hunter22" not in shown and "x" * 24 not in shown
