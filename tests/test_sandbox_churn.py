"""The churn driver: every kind of mutation a live account sees, each announced by events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from app.sandbox.__main__ import main
from app.sandbox.churn import ChurnError, require_loopback, run_churn
from app.sandbox.server import SandboxHandle

KINDS = {
    "customer_email": {"customer.updated"},
    "customer_metadata": {"customer.updated"},
    "customer_create": {"customer.created", "payment_method.attached"},
    "customer_default_card": {"customer.updated"},
    "card_attach": {"payment_method.attached"},
    "card_detach": {"payment_method.detached"},
    "subscription_create": {"customer.subscription.created", "invoice.created",
                            "payment_intent.created", "charge.succeeded", "invoice.paid"},
    "subscription_quantity": {"customer.subscription.updated"},
    "subscription_cancel": {"customer.subscription.deleted"},
    "invoice_item_create": {"invoiceitem.created"},
    "invoice_create": {"invoice.created"},
    "invoice_finalize": {"invoice.finalized"},
    "invoice_pay": {"invoice.paid", "payment_intent.created", "charge.succeeded"},
    "invoice_void": {"invoice.voided"},
    "product_create": {"product.created", "price.created"},
    "product_archive": {"product.updated"},
    "price_deactivate": {"price.updated"},
    "customer_delete": {"customer.deleted"},
}  # fmt: skip


def _all_events(sandbox: SandboxHandle) -> list[dict[str, Any]]:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sk_test_x"
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = session.get(sandbox.url + "/v1/events", params=params).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        params["starting_after"] = page["data"][-1]["id"]


@pytest.mark.slow
def test_churn_makes_every_kind_of_mutation_and_each_records_events(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.seed(customers=20, seed=5)
    log = tmp_path / "mutations.jsonl"
    report = run_churn(sandbox.url, rate=150, seconds=2.0, seed=1, log_path=log)
    assert not report.errors, report.summary()
    assert set(report.mutations) == set(KINDS), report.summary()
    assert 150 <= report.total <= 2.0 * 150 + 1  # bounded by the rate
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert len(lines) == report.total
    assert Counter(line["kind"] for line in lines) == report.mutations
    events_by_request: dict[str, set[str]] = {}
    for event in _all_events(sandbox):
        events_by_request.setdefault(event["request"]["id"], set()).add(event["type"])
    for line in lines:
        assert line["at"] > 1e9 and line["id"] and line["object"]
        caused = events_by_request.get(line["request_id"], set())
        assert caused & KINDS[line["kind"]], (line, caused)


@pytest.mark.slow
def test_churn_on_an_empty_sandbox_builds_what_it_changes(sandbox: SandboxHandle) -> None:
    # what it does, not how fast (a busy machine churns fewer): every change made, of many kinds
    report = run_churn(sandbox.url, rate=200, seconds=1.0, seed=2)
    assert not report.errors and report.total > 20 and len(report.mutations) >= 5
    assert "churn:" in report.summary() and "errors 0" in report.summary()


@pytest.mark.parametrize(
    "url", ["http://example.com:12111", "https://127.0.0.1:12111", "http://10.0.0.1", "nonsense"]
)
def test_churn_drives_only_a_local_sandbox(url: str) -> None:
    with pytest.raises(ChurnError):
        require_loopback(url)
    assert require_loopback("http://127.0.0.1:12111/") == "http://127.0.0.1:12111"
    assert require_loopback("http://[::1]:5") == "http://[::1]:5"


def test_churn_command_prints_a_summary(
    sandbox: SandboxHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["churn", "--url", sandbox.url, "--rate", "100", "--seconds", "0.3"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("churn: ") and "errors 0" in out
    assert main(["churn", "--url", "http://example.com"]) == 2


def test_a_quantity_change_is_an_event_and_leaves_earlier_events_alone(
    sandbox: SandboxHandle,
) -> None:
    """Found by the churn: items were shared between the subscription and the item table, so an
    update changed them in place, recorded no event, and rewrote the creation event."""
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sk_test_x"
    url = sandbox.url
    cus = session.post(url + "/v1/customers", data={"payment_method": "pm_card_visa"}).json()
    pm = session.get(url + f"/v1/customers/{cus['id']}/payment_methods").json()["data"][0]
    session.post(
        url + f"/v1/customers/{cus['id']}",
        data={"invoice_settings[default_payment_method]": pm["id"]},
    )
    price = session.post(
        url + "/v1/prices",
        data={"currency": "usd", "unit_amount": "500", "recurring[interval]": "month",
              "product_data[name]": "Seats"},
    ).json()  # fmt: skip
    sub = session.post(
        url + "/v1/subscriptions", data={"customer": cus["id"], "items[0][price]": price["id"]}
    ).json()
    item = sub["items"]["data"][0]["id"]
    session.post(
        url + f"/v1/subscriptions/{sub['id']}",
        data={"items[0][id]": item, "items[0][quantity]": "4"},
    )
    events = {
        e["type"]: e
        for e in session.get(url + "/v1/events", params={"type": "customer.subscription.*"}).json()[
            "data"
        ]
    }
    updated = events["customer.subscription.updated"]
    assert updated["data"]["object"]["items"]["data"][0]["quantity"] == 4
    assert updated["data"]["previous_attributes"]["items"]["data"][0]["quantity"] == 1
    created = events["customer.subscription.created"]
    assert created["data"]["object"]["items"]["data"][0]["quantity"] == 1
