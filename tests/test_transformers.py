from datetime import UTC, datetime

import pytest

from app.core.errors import TransformError
from app.registry import BY_NAME, RESOURCES
from app.synthetic import charge, customer, invoice, invoice_line, subscription
from app.transformers import (
    stripe_charge_to_model,
    stripe_customer_to_model,
    stripe_invoice_line_to_model,
    stripe_invoice_to_model,
    stripe_subscription_to_model,
)
from app.transformers.common import ref_id, timestamp

# the key of each resource's example in fixtures3.json
EXAMPLE_OF = {r.name: r.object_name for r in RESOURCES} | {
    "subscription_items": "subscription_item",
    "invoice_lines": "line_item",
}
TRANSFORMS = {r.name: r.transform for r in RESOURCES} | {
    c.name: c.transform for r in RESOURCES for c in r.children
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transformer_accepts_stripes_example_object(name, fixtures3):
    obj = fixtures3[EXAMPLE_OF[name]]
    row = TRANSFORMS[name](obj)
    assert row["id"] == obj["id"]
    assert row["raw"] is obj
    table = (
        BY_NAME[name].table
        if name in BY_NAME
        else next(c.table for r in RESOURCES for c in r.children if c.name == name)
    )
    unknown = set(row) - {c.name for c in table.columns}
    assert not unknown, f"row keys that are not columns of {table.name}: {unknown}"
    if obj.get("created") is not None:
        assert row["created"] == datetime.fromtimestamp(obj["created"], tz=UTC)


def test_ref_id_accepts_id_object_and_null():
    assert ref_id("cus_1") == "cus_1"
    assert ref_id({"id": "cus_1", "object": "customer"}) == "cus_1"
    assert ref_id(None) is None
    assert ref_id("") is None
    with pytest.raises(TypeError):
        ref_id(42)


def test_timestamp_is_aware_utc():
    assert timestamp(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert timestamp(None) is None
    with pytest.raises(TypeError):
        timestamp("yesterday")


def test_expanded_default_payment_method_gives_its_id():
    obj = customer(1, default_payment_method=None)
    obj["invoice_settings"]["default_payment_method"] = {"id": "pm_9", "object": "payment_method"}
    assert stripe_customer_to_model(obj)["default_payment_method_id"] == "pm_9"


def test_invoice_subscription_from_old_and_new_shapes():
    old = stripe_invoice_to_model(invoice(1, 1, 7, 1, 1000, legacy=True))
    new = stripe_invoice_to_model(invoice(1, 1, 7, 1, 1000, legacy=False))
    assert old["subscription_id"] == new["subscription_id"] == "sub_00000000000007"
    assert old["payment_intent_id"] == new["payment_intent_id"] == "pi_00000000000001"


def test_invoice_line_fields_from_old_and_new_shapes():
    old = stripe_invoice_line_to_model(invoice_line(1, 1, 7, 2, 1000, legacy=True))
    new = stripe_invoice_line_to_model(invoice_line(1, 1, 7, 2, 1000, legacy=False))
    for key in ("subscription_id", "subscription_item_id", "price_id", "proration"):
        assert old[key] == new[key], key
    assert new["price_id"] == "price_00000000000002"


def test_subscription_period_comes_from_items_after_basil():
    legacy = stripe_subscription_to_model(subscription(1, 1, 1, legacy=True))
    basil = stripe_subscription_to_model(subscription(1, 1, 1, legacy=False))
    assert "current_period_end" not in subscription(1, 1, 1)
    assert basil["current_period_end"] == legacy["current_period_end"] is not None


def test_charge_invoice_only_in_old_versions():
    assert (
        stripe_charge_to_model(charge(1, 1, 500, invoice_n=3))["invoice_id"] == "in_00000000000003"
    )
    assert stripe_charge_to_model(charge(1, 1, 500))["invoice_id"] is None


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"object": "charge", "amount": 1}, "no string `id`"),
        ({"id": "ch_1", "object": "customer"}, "expected 'charge'"),
        ({"id": "ch_1", "object": "charge", "amount": "12.50"}, "integer amount"),
        ({"id": "ch_1", "object": "charge", "customer": 12}, "expected an id"),
        ({"id": "ch_1", "object": "charge", "created": "today"}, "Unix timestamp"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_bad_charge_raises_transform_error_naming_it(obj, reason):
    with pytest.raises(TransformError) as caught:
        stripe_charge_to_model(obj)
    assert caught.value.resource == "charges"
    assert reason in caught.value.reason
    if isinstance(obj, dict) and "id" in obj:
        assert caught.value.object_id == "ch_1"


def test_deleted_object_becomes_a_flagged_row():
    row = stripe_customer_to_model({"id": "cus_1", "object": "customer", "deleted": True})
    assert row["deleted"] is True
    assert row["email"] is None


def test_subscription_period_is_its_first_items_when_items_differ():
    obj = subscription(1, 1, 1)
    first = obj["items"]["data"][0]
    second = {**first, "id": "si_second"}
    second["current_period_start"] = first["current_period_start"] + 86_400
    second["current_period_end"] = first["current_period_end"] + 86_400
    obj["items"]["data"].append(second)
    row = stripe_subscription_to_model(obj)
    assert row["current_period_start"] == timestamp(first["current_period_start"])
    assert row["current_period_end"] == timestamp(first["current_period_end"])


def _payment(intent: str, is_default: bool) -> dict:
    return {
        "id": f"inpay_{intent}",
        "object": "invoice_payment",
        "is_default": is_default,
        "payment": {"type": "payment_intent", "payment_intent": intent},
    }


def test_invoice_payment_intent_is_the_default_payments_not_the_first_listed():
    obj = invoice(1, 1, 1, 1, 1000)
    obj.pop("payment_intent", None)
    obj["payments"] = {
        "object": "list",
        "data": [_payment("pi_first", False), _payment("pi_default", True)],
        "has_more": False,
    }
    assert stripe_invoice_to_model(obj)["payment_intent_id"] == "pi_default"
    obj["payments"]["data"][1]["is_default"] = False
    assert stripe_invoice_to_model(obj)["payment_intent_id"] == "pi_first"


@pytest.mark.parametrize("value", [19.99, 2000.0, True, "2000"])
def test_amounts_are_integers_never_coerced(value):
    with pytest.raises(TransformError, match="integer amount"):
        stripe_charge_to_model({"id": "ch_1", "object": "charge", "amount": value})


@pytest.mark.parametrize("value", ["false", "true", 1, 0])
def test_deleted_flag_must_be_a_boolean(value):
    with pytest.raises(TransformError, match="`deleted` must be true or false"):
        stripe_customer_to_model({"id": "cus_1", "object": "customer", "deleted": value})
