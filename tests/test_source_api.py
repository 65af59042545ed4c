"""The whole flow on the sandbox: populate → fetch (curl) → ingest, and SOURCE=api giving the same
rows as the JSON files."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from sqlalchemy import Connection, select

from app.commands.populate import load_fixtures, populate
from app.core.config import PROJECT_ROOT, load_settings
from app.core.errors import FetchError
from app.load.api_source import read_api_objects
from app.load.ingest import ingest
from app.load.json_files import read_json_objects
from app.registry import load_order
from tests.fetch_helpers import TEST_KEY, create_long_lists, run_fetch, sandbox_ids

# bookkeeping of the load itself, not data from Stripe
NOT_COMPARED = {"synced_at"}


@pytest.fixture()
def settings(sandbox, monkeypatch):
    monkeypatch.setenv("FETCH_RATE", "0")  # the sandbox here has no rate limit: go flat out
    return dataclasses.replace(
        load_settings("DEV"), stripe_api_base=sandbox.url, stripe_secret_key=TEST_KEY
    )


def snapshot(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    tables = {}
    for resource in load_order():
        for table in [resource.table, *(child.model.__table__ for child in resource.children)]:
            columns = [c for c in table.columns if c.name not in NOT_COMPARED]
            rows = conn.execute(select(*columns).order_by(*table.primary_key.columns)).mappings()
            tables[table.name] = [dict(row) for row in rows]
    return tables


def real_rows(conn: Connection, resource) -> set[str]:
    table = resource.table
    return set(conn.execute(select(table.c.id).where(table.c.is_placeholder.is_(False))).scalars())


@pytest.mark.e2e
@pytest.mark.tools("curl", "jq", "flock")
def test_populate_fetch_ingest_and_api_source_agree(sandbox, settings, conn, tmp_path):
    fixtures = load_fixtures(PROJECT_ROOT / "data" / "fixtures")
    assert populate(settings, fixtures).failed == 0
    assert populate(settings, fixtures).created() == 0  # populate twice: nothing duplicated
    # enough for lists of several pages: SOURCE=api splits them into created ranges
    sandbox.seed(customers=150)

    fetched = run_fetch(sandbox.url, tmp_path)
    assert fetched.returncode == 0, fetched.stderr

    json_load = conn.begin_nested()
    for resource in load_order():
        path = tmp_path / resource.file_name
        version = json.loads(path.with_suffix(".meta.json").read_text())["stripe_version"]
        result = ingest(conn, resource, read_json_objects(path), api_version=version)
        assert not result.error and result.rejected == 0, resource.name
    for resource in load_order():  # the database holds exactly what the sandbox holds
        assert real_rows(conn, resource) == sandbox_ids(sandbox.store, resource), resource.name
    from_json = snapshot(conn)
    json_load.rollback()

    api_load = conn.begin_nested()
    for resource in load_order():
        result = ingest(
            conn,
            resource,
            read_api_objects(resource, settings),
            api_version=settings.stripe_api_version,
        )
        assert not result.error and result.rejected == 0, resource.name
    from_api = snapshot(conn)
    api_load.rollback()

    assert from_api.keys() == from_json.keys()
    for table, rows in from_json.items():
        assert rows, f"{table}: nothing loaded"
        assert from_api[table] == rows, table


@pytest.mark.e2e
@pytest.mark.tools("curl", "jq", "flock")
def test_lists_past_their_first_page_load_whole_from_files_and_api(
    sandbox, settings, conn, tmp_path
):
    made = create_long_lists(sandbox.url, invoice_lines=25, items=12)
    fetched = run_fetch(sandbox.url, tmp_path)
    assert fetched.returncode == 0, fetched.stderr

    def child_rows(table_name: str, column: str, parent: str) -> list[dict[str, Any]]:
        table = next(
            child.table
            for resource in load_order()
            for child in resource.children
            if child.name == table_name
        )
        columns = [c for c in table.columns if c.name not in NOT_COMPARED]
        query = select(*columns).where(table.c[column] == parent).order_by(table.c.id)
        return [dict(row) for row in conn.execute(query).mappings()]

    loaded = {}
    for source in ("json", "api"):
        load = conn.begin_nested()
        for resource in load_order():
            objects = (
                read_json_objects(tmp_path / resource.file_name)
                if source == "json"
                else read_api_objects(resource, settings)
            )
            result = ingest(conn, resource, objects, api_version=settings.stripe_api_version)
            assert not result.error and result.rejected == 0, (source, resource.name)
        loaded[source] = (
            child_rows("invoice_lines", "invoice_id", made["invoice"]),
            child_rows("subscription_items", "subscription_id", made["subscription"]),
        )
        load.rollback()

    lines, items = loaded["json"]
    assert len(lines) == 25 and len(items) == 12
    assert loaded["api"] == loaded["json"]


@pytest.mark.slow
def test_api_source_retries_rate_limited_pages(sandbox_factory, settings, monkeypatch):
    limited = sandbox_factory(rate_limit=True, test_rate=5)
    limited.seed(customers=8)
    settings = dataclasses.replace(settings, stripe_api_base=limited.url)
    monkeypatch.setenv("FETCH_RATE", "0")  # no budget: the sandbox answers 429s, the pager waits
    from app.registry import BY_NAME

    methods = list(read_api_objects(BY_NAME["payment_methods"], settings))
    assert {m["id"] for m in methods} == sandbox_ids(limited.store, BY_NAME["payment_methods"])


def test_a_refused_key_is_a_clear_error_with_the_key_masked(settings):
    wrong = dataclasses.replace(settings, stripe_secret_key="sk_wrong_" + "k3yS3cr3tV4lue")
    with pytest.raises(FetchError) as caught:
        list(read_api_objects(load_order(["products"])[0], wrong))
    message = str(caught.value)
    assert "refused the key" in message and "STRIPE_SECRET_KEY" in message
    assert "k3yS3cr3tV4lue" not in message


@pytest.mark.slow
def test_an_unreachable_api_says_what_to_start(settings):
    nowhere = dataclasses.replace(settings, stripe_api_base="http://127.0.0.1:1")
    with pytest.raises(FetchError, match="cannot reach the Stripe API at http://127.0.0.1:1"):
        list(read_api_objects(load_order(["products"])[0], nowhere))


def test_a_connected_account_is_listed_not_the_platform(sandbox_factory, settings):
    # STRIPE_ACCOUNT names the account to mirror: every listing request carries it, as every
    # request of `make sync` does (a mirror of two accounts mixed would be wrong)
    served = sandbox_factory()
    served.seed(customers=3)
    seen: list[str | None] = []
    answer = served.sandbox.handle

    def recording(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        seen.append({k.lower(): v for k, v in headers.items()}.get("stripe-account"))
        return answer(method, target, headers, body)

    served.sandbox.handle = recording  # type: ignore[method-assign]
    connected = dataclasses.replace(
        settings, stripe_api_base=served.url, stripe_account="acct_1Connected"
    )
    from app.registry import BY_NAME

    assert list(read_api_objects(BY_NAME["payment_methods"], connected))
    assert seen and set(seen) == {"acct_1Connected"}


@pytest.mark.slow
def test_proxy_variables_are_honoured(settings, monkeypatch):
    # requests no longer reads the environment per request: the proxies are read once
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(FetchError, match="cannot reach the Stripe API"):
        list(read_api_objects(load_order(["products"])[0], settings))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert list(read_api_objects(load_order(["products"])[0], settings)) == []
