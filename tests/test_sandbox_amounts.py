"""Amounts are checked as Stripe checks them: at most eight digits of the smallest currency unit
(`amount_too_large`, 400) for an amount, `unit_amount × quantity` and an invoice's lines added
up; `unit_amount_decimal` is a plain finite decimal; card numbers are ASCII digits. Whatever is
refused leaves nothing stored that would later break a list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from app.sandbox.resources.common import MAX_AMOUNT
from app.sandbox.server import SandboxHandle

TOO_MUCH = str(MAX_AMOUNT + 1)


@pytest.fixture()
def api(sandbox: SandboxHandle) -> Iterator[Callable[..., requests.Response]]:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sk_test_amounts"

    def call(method: str, path: str, **data: str) -> requests.Response:
        return session.request(method, sandbox.url + path, data=data or None)

    yield call
    session.close()


def _error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return dict(response.json()["error"])


def _lists_still_answer(api: Any) -> None:
    for resource in ("prices", "products", "subscriptions", "invoices", "payment_intents"):
        assert api("GET", f"/v1/{resource}?limit=100").status_code == 200, resource


def _recurring_price(api: Any, unit_amount: str = "1000") -> dict[str, Any]:
    response = api(
        "POST",
        "/v1/prices",
        currency="usd",
        unit_amount=unit_amount,
        **{"product_data[name]": "Plan", "recurring[interval]": "month"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _customer_with_card(api: Any) -> dict[str, Any]:
    cus = api("POST", "/v1/customers", email="big@example.com", payment_method="pm_card_visa")
    customer = dict(cus.json())
    pm = api("GET", f"/v1/customers/{customer['id']}/payment_methods").json()["data"][0]
    api(
        "POST",
        f"/v1/customers/{customer['id']}",
        **{"invoice_settings[default_payment_method]": pm["id"]},
    )
    return customer


def test_the_largest_amount_is_eight_digits(api: Any) -> None:
    assert _recurring_price(api, str(MAX_AMOUNT))["unit_amount"] == MAX_AMOUNT
    error = _error(
        api(
            "POST",
            "/v1/prices",
            currency="usd",
            unit_amount=TOO_MUCH,
            **{"product_data[name]": "Too much"},
        )
    )
    assert error["code"] == "amount_too_large" and error["param"] == "unit_amount"
    for path in ("/v1/payment_intents", "/v1/charges"):
        error = _error(api("POST", path, currency="usd", amount=TOO_MUCH, source="tok_visa"))
        assert error["code"] == "amount_too_large" and error["param"] == "amount", path
    ok = api("POST", "/v1/payment_intents", currency="usd", amount=str(MAX_AMOUNT))
    assert ok.status_code == 200, ok.text
    _lists_still_answer(api)


@pytest.mark.parametrize(
    ("decimal", "code"),
    [
        ("inf", "parameter_invalid_decimal"),
        ("nan", "parameter_invalid_decimal"),
        ("1e30", "parameter_invalid_decimal"),
        ("-5", "parameter_invalid_decimal"),
        ("1.0000000000001", "parameter_invalid_decimal"),
        ("1" + "0" * 30, "amount_too_large"),
        (TOO_MUCH, "amount_too_large"),
        ("99999999.9", "amount_too_large"),
    ],
)
def test_unit_amount_decimal_must_be_a_finite_decimal_within_the_max(
    api: Any, decimal: str, code: str
) -> None:
    error = _error(
        api(
            "POST",
            "/v1/prices",
            currency="usd",
            unit_amount_decimal=decimal,
            **{"product_data[name]": "Decimal"},
        )
    )
    assert error["code"] == code and error["param"] == "unit_amount_decimal"
    _lists_still_answer(api)


def test_a_fractional_unit_amount_decimal_rounds_to_whole_units(api: Any) -> None:
    response = api(
        "POST",
        "/v1/prices",
        currency="usd",
        unit_amount_decimal="1250.5",
        **{"product_data[name]": "Decimal"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["unit_amount"] == 1250


def test_unit_amount_times_quantity_is_checked_on_subscriptions(api: Any) -> None:
    customer = _customer_with_card(api)
    price = _recurring_price(api, "1000000")
    too_many = _error(
        api(
            "POST",
            "/v1/subscriptions",
            customer=customer["id"],
            **{"items[0][price]": price["id"], "items[0][quantity]": "100"},
        )
    )
    assert too_many["code"] == "amount_too_large"
    assert too_many["param"] == "items[0][quantity]"
    huge = _error(
        api(
            "POST",
            "/v1/subscriptions",
            customer=customer["id"],
            **{"items[0][price]": price["id"], "items[0][quantity]": str(2**62)},
        )
    )
    assert huge["code"] == "amount_too_large"
    # two items each within the max whose invoice would not be
    other = _recurring_price(api, "60000000")
    summed = _error(
        api(
            "POST",
            "/v1/subscriptions",
            customer=customer["id"],
            **{"items[0][price]": other["id"], "items[1][price]": other["id"]},
        )
    )
    assert summed["code"] == "amount_too_large" and summed["param"] == "items"
    assert api("GET", "/v1/subscriptions?status=all").json()["data"] == []

    sub = api(
        "POST",
        "/v1/subscriptions",
        customer=customer["id"],
        **{"items[0][price]": price["id"], "items[0][quantity]": "2"},
    ).json()
    item = sub["items"]["data"][0]
    refused = _error(
        api(
            "POST",
            f"/v1/subscriptions/{sub['id']}",
            **{"items[0][id]": item["id"], "items[0][quantity]": "1000"},
        )
    )
    assert refused["code"] == "amount_too_large"
    after = api("GET", f"/v1/subscriptions/{sub['id']}").json()
    assert after["items"]["data"][0]["quantity"] == 2
    _lists_still_answer(api)


def test_a_refused_item_update_changes_nothing(api: Any) -> None:
    customer = _customer_with_card(api)
    price = _recurring_price(api)
    sub = api(
        "POST", "/v1/subscriptions", customer=customer["id"], **{"items[0][price]": price["id"]}
    ).json()
    item = sub["items"]["data"][0]
    error = _error(
        api(
            "POST",
            f"/v1/subscriptions/{sub['id']}",
            **{"items[0][id]": item["id"], "items[0][deleted]": "true"},
        )
    )
    assert "at least one item" in error["message"]
    listed = api("GET", f"/v1/subscription_items?subscription={sub['id']}").json()["data"]
    assert [i["id"] for i in listed] == [item["id"]]


def test_invoice_items_and_invoice_totals_are_checked(api: Any) -> None:
    customer = _customer_with_card(api)
    one_time = api(
        "POST",
        "/v1/prices",
        currency="usd",
        unit_amount="50000000",
        **{"product_data[name]": "Setup"},
    ).json()
    error = _error(
        api("POST", "/v1/invoiceitems", customer=customer["id"], price=one_time["id"], quantity="3")
    )
    assert error["code"] == "amount_too_large" and error["param"] == "quantity"
    error = _error(
        api("POST", "/v1/invoiceitems", customer=customer["id"], amount=TOO_MUCH, currency="usd")
    )
    assert error["code"] == "amount_too_large" and error["param"] == "amount"
    first = api("POST", "/v1/invoiceitems", customer=customer["id"], price=one_time["id"])
    assert first.status_code == 200, first.text
    # pending items become one invoice: their sum is checked too
    error = _error(api("POST", "/v1/invoiceitems", customer=customer["id"], price=one_time["id"]))
    assert error["code"] == "amount_too_large"
    invoice = api("POST", "/v1/invoices", customer=customer["id"]).json()
    assert invoice["total"] == 50_000_000
    error = _error(
        api(
            "POST",
            "/v1/invoiceitems",
            customer=customer["id"],
            price=one_time["id"],
            invoice=invoice["id"],
        )
    )
    assert error["code"] == "amount_too_large"
    assert api("GET", f"/v1/invoices/{invoice['id']}").json()["total"] == 50_000_000
    _lists_still_answer(api)


def test_capture_cannot_exceed_the_authorized_amount(api: Any) -> None:
    pi = api(
        "POST",
        "/v1/payment_intents",
        currency="usd",
        amount="1000",
        payment_method="pm_card_visa",
        capture_method="manual",
        confirm="true",
    ).json()
    error = _error(api("POST", f"/v1/payment_intents/{pi['id']}/capture", amount_to_capture="1001"))
    assert error["code"] == "amount_too_large"


@pytest.mark.parametrize(
    "number", ["424242424242424²", "４２４２４２４２４２４２４２４２", "4242 4242 4242 424٢"]
)
def test_card_numbers_are_ascii_digits(api: Any, number: str) -> None:
    response = api(
        "POST",
        "/v1/tokens",
        **{"card[number]": number, "card[exp_month]": "1", "card[exp_year]": "2031"},
    )
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "incorrect_number"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"recurring[interval]": "month", "recurring[interval_count]": str(2**62)}, "recurring[interval_count]"),
        ({"recurring[interval]": "year", "recurring[interval_count]": "4"}, "recurring[interval_count]"),
        ({"recurring[interval]": "day", "recurring[trial_period_days]": str(2**62)}, "recurring[trial_period_days]"),
    ],
)  # fmt: skip
def test_billing_intervals_and_trials_are_bounded(
    api: Any, params: dict[str, str], param: str
) -> None:
    error = _error(
        api(
            "POST",
            "/v1/prices",
            currency="usd",
            unit_amount="100",
            **{"product_data[name]": "Interval"},
            **params,
        )
    )
    assert error["param"] == param
    customer = _customer_with_card(api)
    price = _recurring_price(api)
    error = _error(
        api(
            "POST",
            "/v1/subscriptions",
            customer=customer["id"],
            trial_period_days=str(2**62),
            **{"items[0][price]": price["id"]},
        )
    )
    assert error["param"] == "trial_period_days"
    _lists_still_answer(api)
