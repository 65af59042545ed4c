"""The sandbox over raw HTTP: curl, pagination, expand, filters, errors, idempotency, headers,
and malformed requests (raw sockets, every read bounded so that a regression fails, not hangs)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from app.sandbox.params import MAX_DEPTH, MAX_PARAMS
from app.sandbox.server import MAX_BODY_BYTES, SandboxHandle
from app.sandbox.versions import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    NEWEST_API_VERSION,
    before_basil,
    embeds_charge_refunds,
    is_accepted,
    rendered_as,
)
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


@pytest.mark.tools("curl")
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
    pis = _get(api, "/v1/payment_intents", limit=30, **{"expand[]": "data.latest_charge"}).json()[
        "data"
    ]
    charged = [pi for pi in pis if pi["latest_charge"] is not None]  # some wait for a payment
    assert charged and all(pi["latest_charge"]["amount"] == pi["amount"] for pi in charged)
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
    # events are rendered in the account's default version, not the request's (as Stripe does)
    assert (
        event["api_version"] == DEFAULT_API_VERSION
        and event["request"]["id"] == event_version.headers["Request-Id"]
    )


@pytest.mark.parametrize("listing", ["plain", "filtered", "by_product", "embedded"])
def test_has_more_is_false_on_an_exactly_full_last_page(
    sandbox: SandboxHandle, api: requests.Session, listing: str
) -> None:
    """200 objects, pages of 100: the first page says has_more, the second (full) one does not;
    paging back from the second page's first object gives the first page, with nothing before."""
    path, params, total, limit = "/v1/customers", {}, 200, 100
    if listing == "plain":
        for n in range(total):
            _post(api, "/v1/customers", {"email": f"c{n}@example.com"}).raise_for_status()
    elif listing == "filtered":  # the predicate path; the inactive products beyond are not "more"
        for n in range(3):
            _post(api, "/v1/products", {"name": f"off {n}", "active": "false"}).raise_for_status()
        for n in range(total):
            _post(api, "/v1/products", {"name": f"on {n}"}).raise_for_status()
        path, params = "/v1/products", {"active": "true"}
    elif listing == "by_product":  # the candidates path
        product = _post(api, "/v1/products", {"name": "many prices"}).json()
        for n in range(total):
            _post(
                api,
                "/v1/prices",
                {"product": product["id"], "currency": "usd", "unit_amount": str(n)},
            ).raise_for_status()
        path, params = "/v1/prices", {"product": product["id"]}
    else:  # a list held inside an object: an invoice's lines
        made = create_long_lists(sandbox.url, invoice_lines=20, items=1)
        path, total, limit = f"/v1/invoices/{made['invoice']}/lines", 20, 10
    first = _get(api, path, limit=limit, **params).json()
    assert len(first["data"]) == limit and first["has_more"] is True
    last = _get(api, path, limit=limit, starting_after=first["data"][-1]["id"], **params).json()
    assert len(last["data"]) == limit and last["has_more"] is False
    assert len({o["id"] for o in first["data"] + last["data"]}) == total
    back = _get(api, path, limit=limit, ending_before=last["data"][0]["id"], **params).json()
    assert back["data"] == first["data"] and back["has_more"] is False


# --- malformed requests -------------------------------------------------------------------------

AUTH = f"Authorization: Bearer {KEY}\r\n".encode()


def _exchange(
    url: str, request: bytes, *, shut_write: bool = False, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; a server that never answers fails the test
    with socket.timeout after `timeout` seconds instead of hanging it."""
    split = urlsplit(url)
    with socket.create_connection((split.hostname, split.port), timeout=timeout) as conn:
        conn.sendall(request)
        if shut_write:
            conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(1 << 16):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _assert_stripe_error(status: int, body: bytes, expected_status: int) -> dict[str, Any]:
    assert status == expected_status, body
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["message"], error
    return dict(error)


def _post_raw(headers: str, body: bytes = b"email=a%40example.com") -> bytes:
    return (
        b"POST /v1/customers HTTP/1.1\r\nHost: sandbox\r\n"
        + AUTH
        + headers.encode("latin-1")
        + b"\r\n"
        + body
    )


@pytest.mark.parametrize(
    "header",
    [
        "Content-Length: abc\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 1e3\r\n",
        "Content-Length: 0x10\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ],
)
def test_a_malformed_content_length_gets_a_400_and_a_closed_connection(
    sandbox: SandboxHandle, header: str
) -> None:
    status, headers, body = _exchange(sandbox.url, _post_raw(header))
    error = _assert_stripe_error(status, body, 400)
    assert "Content-Length" in error["message"] and headers["connection"] == "close"
    assert headers["request-id"].startswith("req_")


def test_a_body_over_the_limit_gets_a_413(sandbox: SandboxHandle) -> None:
    # announced and never sent
    status, _, body = _exchange(sandbox.url, _post_raw(f"Content-Length: {10**30}\r\n", b""))
    assert str(MAX_BODY_BYTES) in _assert_stripe_error(status, body, 413)["message"]
    # announced with Expect: 100-continue, as curl does for big bodies: refused before it is sent
    status, _, body = _exchange(
        sandbox.url,
        _post_raw(f"Content-Length: {2 * MAX_BODY_BYTES}\r\nExpect: 100-continue\r\n", b""),
    )
    _assert_stripe_error(status, body, 413)
    # actually sent: the client gets the answer, not a reset connection
    split = urlsplit(sandbox.url)
    conn = http.client.HTTPConnection(split.hostname or "", split.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/v1/customers",
            body=b"description=" + b"x" * MAX_BODY_BYTES,
            headers={"Authorization": f"Bearer {KEY}"},
        )
        response = conn.getresponse()
        _assert_stripe_error(response.status, response.read(), 413)
    finally:
        conn.close()
    assert not any(
        requests.get(f"{sandbox.url}/_sandbox/health", timeout=5).json()["counts"].values()
    )


def test_a_body_of_exactly_the_limit_is_read(api: requests.Session) -> None:
    filler = b"description=" + b"x" * (MAX_BODY_BYTES - len(b"description="))
    response = _post(api, "/v1/customers", filler, timeout=10)
    assert response.status_code == 200 and len(response.json()["description"]) > 1000


@pytest.fixture()
def impatient(sandbox_factory: Callable[..., SandboxHandle]) -> SandboxHandle:
    """A sandbox that gives up on a silent client after 0.5 s."""
    return sandbox_factory(read_timeout=0.5)


def test_a_truncated_body_times_out_and_frees_the_thread(impatient: SandboxHandle) -> None:
    started = time.monotonic()
    status, headers, body = _exchange(
        impatient.url, _post_raw("Content-Length: 100\r\n", b"email=a"), timeout=5
    )
    assert time.monotonic() - started < 4
    error = _assert_stripe_error(status, body, 408)
    assert "7 of the 100 bytes" in error["message"] and headers["connection"] == "close"
    # the client gives up itself: the sandbox answers at once
    status, _, body = _exchange(
        impatient.url, _post_raw("Content-Length: 100\r\n", b"email=a"), shut_write=True
    )
    assert "ended after 7 of the 100 bytes" in _assert_stripe_error(status, body, 400)["message"]
    assert requests.get(f"{impatient.url}/_sandbox/health", timeout=5).json()["ok"] is True


def test_a_silent_connection_is_closed_after_the_read_timeout(impatient: SandboxHandle) -> None:
    split = urlsplit(impatient.url)
    with socket.create_connection((split.hostname, split.port), timeout=5) as conn:
        started = time.monotonic()
        conn.sendall(b"GET /v1/customers HTTP/1.1\r\n")  # and nothing more
        assert conn.recv(1024) == b""
    assert time.monotonic() - started < 4


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/customers HTTP/9.9\r\n\r\n", 505),
        (_post_raw("Transfer-Encoding: chunked\r\n", b"5\r\nemail\r\n0\r\n\r\n"), 411),
        (b"GET /v1/customers HTTP/1.1\r\n" + b"X-Long: " + b"y" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_what_http_server_refuses_gets_stripes_error_shape(
    sandbox: SandboxHandle, request_bytes: bytes, status: int
) -> None:
    answer, headers, body = _exchange(sandbox.url, request_bytes)
    _assert_stripe_error(answer, body, status)
    assert headers["content-type"] == "application/json"


def test_unknown_methods_are_unrecognized_urls(api: requests.Session) -> None:
    response = api.patch(api.base_url + "/v1/customers", timeout=5)  # type: ignore[attr-defined]
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Unrecognized request URL (PATCH: /v1/customers)."


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ("metadata" + "[a]" * 5000 + "=x", "metadata"),  # was a RecursionError (500)
        ("metadata" + "[a]" * (MAX_DEPTH + 1) + "=x", "metadata"),
        ("email=%ED%A0%80", "email"),  # a lone surrogate, as UTF-8 bytes
        ("email=%FF", "email"),
        ("email=a%00b", "email"),
        ("email=%G1", "email"),
        ("metadata[a]b=x", "metadata[a]b"),
        ("metadata[a=x", "metadata[a"),
    ],
)
def test_malformed_form_params_get_a_400_naming_the_param(
    sandbox: SandboxHandle, data: str, param: str
) -> None:
    split = urlsplit(sandbox.url)
    for method, target, body in (
        ("POST", "/v1/customers", data.encode()),
        ("GET", "/v1/customers?" + data, None),  # http.client sends the query as it is
    ):
        conn = http.client.HTTPConnection(split.hostname or "", split.port, timeout=10)
        try:
            conn.request(method, target, body=body, headers={"Authorization": f"Bearer {KEY}"})
            response = conn.getresponse()
            error = _assert_stripe_error(response.status, response.read(), 400)
        finally:
            conn.close()
        assert error["param"] == param
    assert sandbox.store.counts()["customer"] == 0


def test_too_many_params_and_long_idempotency_keys_get_a_400(api: requests.Session) -> None:
    many = "&".join(f"metadata[k{n}]=v" for n in range(MAX_PARAMS + 1))
    response = _post(api, "/v1/customers", many)
    assert (
        "Too many parameters"
        in _assert_stripe_error(response.status_code, response.content, 400)["message"]
    )
    response = _post(
        api, "/v1/customers", {"email": "a@x.io"}, headers={"Idempotency-Key": "k" * 256}
    )
    assert (
        "Idempotency-Key"
        in _assert_stripe_error(response.status_code, response.content, 400)["message"]
    )
    assert _get(api, "/v1/customers").json()["data"] == []


@pytest.mark.parametrize(
    "version",
    ["1999-01-01", "2024-02-30", "2011-01-02", "latest", "2026-10-28.basil", "2099-01-01.zebra"],
)
def test_an_unknown_stripe_version_is_refused_like_stripe_does(
    api: requests.Session, version: str
) -> None:
    response = api.get(  # type: ignore[attr-defined]
        api.base_url + "/v1/customers", headers={"Stripe-Version": version}, timeout=5
    )
    error = _assert_stripe_error(response.status_code, response.content, 400)
    assert error["message"] == f"Invalid Stripe API version: {version}"
    assert "Stripe-Version" not in response.headers


@pytest.mark.parametrize(
    "version", ["2011-01-01", "2020-08-27", "2024-06-20", "2025-03-31.basil", API_VERSIONS[-1]]
)
def test_every_published_stripe_version_is_accepted(api: requests.Session, version: str) -> None:
    response = api.get(  # type: ignore[attr-defined]
        api.base_url + "/v1/customers", headers={"Stripe-Version": version}, timeout=5
    )
    assert response.status_code == 200 and response.headers["Stripe-Version"] == version
    beta = api.get(  # type: ignore[attr-defined]
        api.base_url + "/v1/customers",
        headers={"Stripe-Version": f"{version}; some_feature_beta=v1"},
        timeout=5,
    )
    assert beta.status_code == 200 and beta.headers["Stripe-Version"] == version


# What stripe-node 23.2.0 sends: a version released after the sandbox's list was written.
NEWER_VERSION = "2026-11-18.endive"


@pytest.mark.parametrize(
    "version", [NEWER_VERSION, "2026-11-18", f"{NEWER_VERSION}; some_feature_beta=v1"]
)
def test_a_client_newer_than_the_sandbox_gets_its_newest_shapes_and_is_told_so(
    sandbox: SandboxHandle, api: requests.Session, version: str
) -> None:
    sandbox.seed(customers=8, seed=3)
    for path in (
        "/v1/subscriptions?status=all",
        "/v1/invoices?expand[]=data.payments&expand[]=data.customer",
        "/v1/charges?expand[]=data.refunds",
        "/v1/events?limit=30",
    ):
        newest = api.get(  # type: ignore[attr-defined]
            api.base_url + path, headers={"Stripe-Version": NEWEST_API_VERSION}, timeout=30
        )
        newer = api.get(  # type: ignore[attr-defined]
            api.base_url + path, headers={"Stripe-Version": version}, timeout=30
        )
        assert newer.status_code == 200, newer.text
        assert newer.json() == newest.json() and newer.json()["data"], path
        assert newer.headers["Stripe-Version"] == NEWEST_API_VERSION
        assert newer.headers["Sandbox-Rendered-As"] == NEWEST_API_VERSION
        assert "Sandbox-Rendered-As" not in newest.headers
        if path.startswith("/v1/invoices"):  # basil's shapes, not the oldest's
            invoice = newer.json()["data"][0]
            assert "parent" in invoice and "paid" not in invoice and "payments" in invoice
    created = api.post(  # type: ignore[attr-defined]
        api.base_url + "/v1/customers", data={"email": "new@example.com"},
        headers={"Stripe-Version": version}, timeout=30,
    )  # fmt: skip
    assert created.status_code == 200 and created.json()["email"] == "new@example.com"


def test_a_newer_version_is_logged_once_not_per_request(
    sandbox_factory: Callable[..., SandboxHandle], caplog: pytest.LogCaptureFixture
) -> None:
    session = _api(sandbox_factory())
    with caplog.at_level(logging.WARNING, logger="app.sandbox.server"):
        for version in (NEWER_VERSION, NEWER_VERSION, "2026-11-18", NEWER_VERSION):
            assert _get_versioned(session, version).status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "app.sandbox.server"]
    assert len(logged) == 2, logged
    assert NEWER_VERSION in logged[0] and NEWEST_API_VERSION in logged[0]
    assert logged[1].startswith("Stripe-Version 2026-11-18 ")


def test_newer_versions_are_accepted_up_to_today_and_shaped_as_the_newest() -> None:
    assert not is_accepted(NEWER_VERSION, today=date(2026, 11, 17))
    assert is_accepted(NEWER_VERSION, today=date(2026, 11, 18))
    assert rendered_as(NEWER_VERSION) == rendered_as("2026-11-18") == NEWEST_API_VERSION
    assert rendered_as("2024-06-20") == "2024-06-20"
    # a version this sandbox accepted as newer, kept by an endpoint, read by a sandbox whose list
    # has since grown past it: the published one before it
    assert rendered_as("2025-04-15.basil") == "2025-03-31.basil"
    assert not before_basil(NEWER_VERSION) and not embeds_charge_refunds(NEWER_VERSION)
    # one version a day, in order: the dates alone place a version among them
    dates = [version[:10] for version in API_VERSIONS]
    assert dates == sorted(set(dates))


def _tomorrow() -> str:
    return (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    "version",
    [
        "2026-10-01",  # before the newest known, and never a version
        "2026-10-01.endive",
        "2026-10-28",  # the newest known date, not as Stripe published it
        "2026-11-31.endive",  # no such day
        "2026-11-18.Endive",
        "2026-11-18.",
        "2026-11-18.endive.x",
        "2026-11-18endive",
        "26-11-18",
        f"{NEWER_VERSION}; beta",
        "tomorrow",
        "tomorrow.endive",
    ],
)
def test_a_malformed_never_published_or_future_version_is_still_refused(
    api: requests.Session, version: str
) -> None:
    version = version.replace("tomorrow", _tomorrow())
    response = _get_versioned(api, version)
    error = _assert_stripe_error(response.status_code, response.content, 400)
    assert error["message"] == f"Invalid Stripe API version: {version}"
    assert "Stripe-Version" not in response.headers
    assert "Sandbox-Rendered-As" not in response.headers


def _get_versioned(session: requests.Session, version: str) -> requests.Response:
    return session.get(  # type: ignore[attr-defined]
        session.base_url + "/v1/customers", headers={"Stripe-Version": version}, timeout=5
    )
