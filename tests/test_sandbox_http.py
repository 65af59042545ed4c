"""The sandbox over raw HTTP: curl, pagination, expand, filters, errors, idempotency, headers."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import requests

from app.sandbox.server import SandboxHandle
from tests.fetch_helpers import create_long_lists

KEY = "sk_test_http"


def _api(sandbox: SandboxHandle) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    session.base_url = sandbox.url  # type: ignore[attr-defined]
    return session


def _get(session: requests.Session, path: str, **params: Any) -> requests.Response:
    return session.get(session.base_url + path, params=params)  # type: ignore[attr-defined]


def _post(
    session: requests.Session, path: str, data: Any = None, **kwargs: Any
) -> requests.Response:
    return session.post(session.base_url + path, data=data, **kwargs)  # type: ignore[attr-defined]


@pytest.fixture()
def api(sandbox: SandboxHandle) -> requests.Session:
    return _api(sandbox)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_creates_and_lists_with_basic_auth(sandbox: SandboxHandle) -> None:
    def curl(*args: str) -> dict[str, Any]:
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-u", f"{KEY}:", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(out.stdout))

    created = curl(
        f"{sandbox.url}/v1/customers", "-d", "email=curl@example.com", "-d", "metadata[source]=curl"
    )
    assert created["id"].startswith("cus_") and created["metadata"] == {"source": "curl"}
    listed = curl(
        "-G", f"{sandbox.url}/v1/customers", "-d", "limit=3", "-d", "email=curl@example.com"
    )
    assert [c["id"] for c in listed["data"]] == [created["id"]]
    deleted = curl("-X", "DELETE", f"{sandbox.url}/v1/customers/{created['id']}")
    assert deleted == {"id": created["id"], "object": "customer", "deleted": True}


def test_pagination_returns_every_object_once_both_ways(
    sandbox: SandboxHandle, api: requests.Session
) -> None:
    sandbox.seed(customers=230, seed=7)
    expected = _get(api, "/v1/customers", limit=100).json()
    assert (
        expected["object"] == "list" and expected["url"] == "/v1/customers" and expected["has_more"]
    )
    forward: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 17}
        if cursor:
            params["starting_after"] = cursor
        page = _get(api, "/v1/customers", **params).json()
        forward += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert len(forward) == len(set(forward)) == 230
    created = [
        (c["created"]) for c in (_get(api, f"/v1/customers/{i}").json() for i in forward[:50])
    ]
    assert created == sorted(created, reverse=True)
    backward: list[str] = []
    cursor = forward[-1]
    backward = [cursor]
    for _ in range(100):
        page = _get(api, "/v1/customers", limit=23, ending_before=cursor).json()
        backward = [c["id"] for c in page["data"]] + backward
        if not page["has_more"]:
            break
        cursor = page["data"][0]["id"]
    assert backward == forward


def test_pagination_of_filtered_lists_with_created_bounds(
    sandbox: SandboxHandle, api: requests.Session
) -> None:
    sandbox.seed(customers=300, seed=3)
    all_subs = []
    page = _get(api, "/v1/subscriptions", status="all", limit=100).json()
    while True:
        all_subs += page["data"]
        if not page["has_more"]:
            break
        page = _get(
            api, "/v1/subscriptions", status="all", limit=100, starting_after=page["data"][-1]["id"]
        ).json()
    assert all_subs and all(s["id"].startswith("sub_") for s in all_subs)
    default = _get(api, "/v1/subscriptions", limit=100).json()["data"]
    assert all(s["status"] != "canceled" for s in default)
    middle = sorted(s["created"] for s in all_subs)[len(all_subs) // 2]
    newer = _get(
        api, "/v1/subscriptions", status="all", limit=100, **{"created[gte]": middle}
    ).json()["data"]
    assert newer and all(s["created"] >= middle for s in newer)
    older = _get(
        api, "/v1/subscriptions", status="all", limit=100, **{"created[lt]": middle}
    ).json()["data"]
    assert older and all(s["created"] < middle for s in older)
    customer = all_subs[0]["customer"]
    invoices = _get(api, "/v1/invoices", customer=customer, limit=100).json()["data"]
    assert invoices and {i["customer"] for i in invoices} == {customer}


def test_embedded_lists_hold_their_first_page_and_page_on_at_their_url(
    sandbox: SandboxHandle, api: requests.Session
) -> None:
    made = create_long_lists(sandbox.url, invoice_lines=25, items=12)
    invoice = _get(api, f"/v1/invoices/{made['invoice']}").json()
    listed = _get(api, "/v1/invoices", limit=100).json()["data"]
    sub = _get(api, f"/v1/subscriptions/{made['subscription']}").json()
    for parent, field, total in ((invoice, "lines", 25), (sub, "items", 12)):
        embedded = parent[field]
        assert len(embedded["data"]) == 10 and embedded["has_more"] is True
        path, _, query = embedded["url"].partition("?")
        params = dict(p.split("=") for p in query.split("&") if p)
        rest = _get(api, path, **params, limit=100, starting_after=embedded["data"][-1]["id"])
        ids = [o["id"] for o in embedded["data"] + rest.json()["data"]]
        assert len(set(ids)) == total and rest.json()["has_more"] is False
    assert next(i for i in listed if i["id"] == made["invoice"])["lines"] == invoice["lines"]
    # the store keeps the whole list: the cut is only in what is sent
    assert len(sandbox.store.tables["invoice"].by_id[made["invoice"]]["lines"]["data"]) == 25


def test_expand_on_lists_and_objects(sandbox: SandboxHandle, api: requests.Session) -> None:
    sandbox.seed(customers=20, seed=1)
    page = _get(
        api,
        "/v1/customers",
        limit=20,
        **{"expand[]": ["data.invoice_settings.default_payment_method"]},
    ).json()
    expanded = [c["invoice_settings"]["default_payment_method"] for c in page["data"]]
    assert any(isinstance(pm, dict) for pm in expanded)
    for customer, pm in zip(page["data"], expanded, strict=True):
        if pm is not None:
            assert pm["object"] == "payment_method" and pm["customer"] == customer["id"]
    charges = _get(
        api,
        "/v1/charges",
        limit=5,
        **{"expand[0]": "data.customer", "expand[1]": "data.payment_intent"},
    ).json()
    for charge in charges["data"]:
        assert charge["customer"]["object"] == "customer"
        assert charge["payment_intent"]["latest_charge"] == charge["id"]
    pis = _get(api, "/v1/payment_intents", limit=3, **{"expand[]": "data.latest_charge"}).json()[
        "data"
    ]
    assert all(pi["latest_charge"]["amount"] == pi["amount"] for pi in pis)
    bad = _get(api, "/v1/customers", **{"expand[]": "data.nonexistent"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "expand"


def test_nested_form_params_on_query_and_body(api: requests.Session) -> None:
    product = _post(
        api, "/v1/products", {"name": "Nested", "metadata[a]": "1", "metadata[b]": "2"}
    ).json()
    price = _post(
        api,
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "usd",
            "unit_amount": "700",
            "recurring[interval]": "week",
        },
    ).json()
    customer = _post(api, "/v1/customers", {"payment_method": "pm_card_visa"}).json()
    pm = _get(api, f"/v1/customers/{customer['id']}/payment_methods").json()["data"][0]
    _post(
        api,
        f"/v1/customers/{customer['id']}",
        {"invoice_settings[default_payment_method]": pm["id"]},
    )
    sub = _post(
        api,
        "/v1/subscriptions?expand[]=latest_invoice",
        {
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "items[0][quantity]": "2",
            "metadata[k]": "v",
        },
    ).json()
    assert product["metadata"] == {"a": "1", "b": "2"}
    assert sub["items"]["data"][0]["quantity"] == 2 and sub["metadata"] == {"k": "v"}
    assert sub["latest_invoice"]["amount_paid"] == 1400


def test_error_bodies_and_status_codes(sandbox: SandboxHandle, api: requests.Session) -> None:
    unauthenticated = requests.get(f"{sandbox.url}/v1/customers")
    assert unauthenticated.status_code == 401
    assert set(unauthenticated.json()["error"]) >= {"type", "code", "message", "param"}
    wrong_key = requests.get(
        f"{sandbox.url}/v1/customers", headers={"Authorization": "Bearer pk_test_123"}
    )
    assert (
        wrong_key.status_code == 401
        and wrong_key.json()["error"]["type"] == "invalid_request_error"
    )
    missing = _get(api, "/v1/customers/cus_doesnotexist")
    assert missing.status_code == 404
    assert (missing.json()["error"]["code"], missing.json()["error"]["param"]) == (
        "resource_missing",
        "id",
    )
    assert _get(api, "/v1/nothing_here").status_code == 404
    for limit in (0, 101, "x"):
        bad = _get(api, "/v1/customers", limit=limit)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    missing_param = _post(api, "/v1/prices", {"currency": "usd", "unit_amount": "100"})
    assert missing_param.status_code == 400 and missing_param.json()["error"]["param"] == "product"
    declined = _post(
        api,
        "/v1/payment_intents",
        {
            "amount": "1000",
            "currency": "usd",
            "payment_method": "pm_card_chargeDeclined",
            "confirm": "true",
        },
    )
    error = declined.json()["error"]
    assert (
        declined.status_code == 402
        and error["type"] == "card_error"
        and error["code"] == "card_declined"
    )
    assert error["payment_intent"]["status"] == "requires_payment_method" and error[
        "charge"
    ].startswith("ch_")
    insufficient = _post(
        api,
        "/v1/charges",
        {"amount": "1000", "currency": "usd", "source": "tok_chargeDeclinedInsufficientFunds"},
    )
    assert (
        insufficient.status_code == 402
        and insufficient.json()["error"]["decline_code"] == "insufficient_funds"
    )


def test_live_keys_use_a_separate_live_store(sandbox: SandboxHandle, api: requests.Session) -> None:
    live = requests.post(
        f"{sandbox.url}/v1/customers",
        headers={"Authorization": "Bearer sk_live_abc"},
        data={"email": "l@x.io"},
    )
    assert live.status_code == 200 and live.json()["livemode"] is True
    assert _get(api, "/v1/customers").json()["data"] == []


def test_idempotency_replays_and_rejects_changed_params(api: requests.Session) -> None:
    headers = {"Idempotency-Key": "key-1"}
    first = _post(api, "/v1/customers", {"email": "once@example.com"}, headers=headers)
    again = _post(api, "/v1/customers", {"email": "once@example.com"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(_get(api, "/v1/customers").json()["data"]) == 1
    conflict = _post(api, "/v1/customers", {"email": "other@example.com"}, headers=headers)
    assert conflict.status_code == 400 and conflict.json()["error"]["type"] == "idempotency_error"
    other_key = _post(
        api, "/v1/customers", {"email": "once@example.com"}, headers={"Idempotency-Key": "key-2"}
    )
    assert other_key.json()["id"] != first.json()["id"]


def test_headers_request_id_and_stripe_version(api: requests.Session) -> None:
    plain = _get(api, "/v1/customers")
    versioned = api.get(
        api.base_url + "/v1/customers", headers={"Stripe-Version": "2025-03-31.basil"}
    )  # type: ignore[attr-defined]
    failed = _get(api, "/v1/customers/cus_missing")
    ids = {r.headers["Request-Id"] for r in (plain, versioned, failed)}
    assert len(ids) == 3 and all(i.startswith("req_") for i in ids)
    assert versioned.headers["Stripe-Version"] == "2025-03-31.basil"
    event_version = api.post(
        api.base_url + "/v1/customers",
        headers={"Stripe-Version": "2026-01-28.clover"},  # type: ignore[attr-defined]
    )
    assert event_version.headers["Stripe-Version"] == "2026-01-28.clover"
    event = _get(api, "/v1/events", type="customer.created").json()["data"][0]
    assert (
        event["api_version"] == "2026-01-28.clover"
        and event["request"]["id"] == event_version.headers["Request-Id"]
    )
