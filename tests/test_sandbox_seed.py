"""Seeding: deterministic, consistent across linked objects, and reachable through the API."""

from __future__ import annotations

from collections import Counter

import requests

from app.sandbox.seed import seed_store
from app.sandbox.server import SandboxHandle
from app.sandbox.store import Store


def test_same_seed_gives_the_same_graph() -> None:
    first, second, other = Store(), Store(), Store()
    seed_store(first, customers=300, seed=42)
    seed_store(second, customers=300, seed=42)
    seed_store(other, customers=300, seed=43)
    for name in ("customer", "subscription", "invoice", "charge"):
        assert first.tables[name].by_id == second.tables[name].by_id
    assert set(first.tables["customer"].by_id) != set(other.tables["customer"].by_id)


def test_seeding_twice_adds_without_clashing_ids() -> None:
    store = Store()
    seed_store(store, customers=100, seed=1)
    seed_store(store, customers=100, seed=1)
    assert len(store.tables["customer"]) == 200


def test_seeded_graph_is_consistent() -> None:
    store = Store()
    report = seed_store(store, customers=500, seed=9)
    tables = store.tables
    assert report["objects"] == sum(report["counts"].values()) + report["line_items"]
    statuses = {sub["status"] for sub in tables["subscription"].by_id.values()}
    assert {
        "active", "canceled", "past_due", "unpaid", "incomplete", "incomplete_expired", "trialing",
    } <= statuses  # fmt: skip
    for customer in tables["customer"].by_id.values():
        pm_id = customer["invoice_settings"]["default_payment_method"]
        if pm_id is not None:
            assert tables["payment_method"].by_id[pm_id]["customer"] == customer["id"]
    for sub in tables["subscription"].by_id.values():
        invoice = tables["invoice"].by_id[sub["latest_invoice"]]
        assert invoice["parent"]["subscription_details"]["subscription"] == sub["id"]
        assert invoice["customer"] == sub["customer"]
        for item in sub["items"]["data"]:
            assert tables["subscription_item"].by_id[item["id"]]["subscription"] == sub["id"]
    paid = [
        inv
        for inv in tables["invoice"].by_id.values()
        if inv["status"] == "paid" and inv["amount_paid"]
    ]
    assert paid
    for invoice in paid:
        payment = tables["invoice_payment"].by_id[
            min(tables["invoice_payment"].ids_where("invoice", invoice["id"]))
        ]
        assert payment["status"] == "paid"
        pi = tables["payment_intent"].by_id[payment["payment"]["payment_intent"]]
        charge = tables["charge"].by_id[pi["latest_charge"]]
        assert charge["amount"] == invoice["amount_paid"] == pi["amount_received"]
        assert charge["customer"] == pi["customer"] == invoice["customer"]
        assert charge["created"] >= invoice["created"]
        assert sum(line["amount"] for line in invoice["lines"]["data"]) == invoice["total"]
    unsettled: Counter[str] = Counter()
    for invoice in tables["invoice"].by_id.values():
        if invoice["status"] not in ("open", "uncollectible", "void"):
            continue
        assert invoice["amount_paid"] == 0
        payments = tables["invoice_payment"].ids_where("invoice", invoice["id"])
        if not payments:  # send_invoice: the customer has yet to pay
            assert invoice["collection_method"] == "send_invoice" and not invoice["attempted"]
            unsettled["sent"] += 1
            continue
        payment = tables["invoice_payment"].by_id[min(payments)]
        pi = tables["payment_intent"].by_id[payment["payment"]["payment_intent"]]
        if invoice["status"] == "void":
            assert (pi["status"], payment["status"]) == ("canceled", "canceled")
            unsettled["void"] += 1
        elif pi["status"] == "requires_action":
            assert pi["latest_charge"] is None and pi["next_action"] is not None
            unsettled["action"] += 1
        else:
            assert tables["charge"].by_id[pi["latest_charge"]]["status"] == "failed"
            unsettled[invoice["status"]] += 1
    assert set(unsettled) == {"sent", "void", "action", "open", "uncollectible"}, unsettled
    for sub in tables["subscription"].by_id.values():
        invoice = tables["invoice"].by_id[sub["latest_invoice"]]
        expected = {"unpaid": "uncollectible", "incomplete_expired": "void", "past_due": "open"}
        assert invoice["status"] == expected.get(sub["status"], invoice["status"])
    for refund in tables["refund"].by_id.values():
        charge = tables["charge"].by_id[refund["charge"]]
        assert (
            charge["amount_refunded"] == refund["amount"] and refund["created"] >= charge["created"]
        )
        assert charge["refunded"] == (refund["amount"] == charge["amount"])
    assert {"requires_capture", "canceled", "requires_payment_method"} <= {
        pi["status"] for pi in tables["payment_intent"].by_id.values()
    }
    assert "draft" in {inv["status"] for inv in tables["invoice"].by_id.values()}


def test_seed_endpoint_fills_the_running_sandbox(sandbox: SandboxHandle) -> None:
    report = requests.post(
        f"{sandbox.url}/_sandbox/seed", data={"customers": "150", "seed": "2"}
    ).json()
    assert report["counts"]["customer"] == 150 and report["objects"] > 150
    page = requests.get(
        f"{sandbox.url}/v1/customers",
        params={"limit": 100},
        headers={"Authorization": "Bearer sk_test_x"},
    ).json()
    assert len(page["data"]) == 100 and page["has_more"] is True
    health = requests.get(f"{sandbox.url}/_sandbox/health").json()
    assert health["counts"]["customer"] == 150
    requests.post(f"{sandbox.url}/_sandbox/reset")
    assert requests.get(f"{sandbox.url}/_sandbox/health").json()["counts"]["customer"] == 0


def test_seed_progress_is_told_while_and_after_it_runs(sandbox: SandboxHandle) -> None:
    from app.sandbox.seed import seed_store

    seen: list[tuple[str, int, int]] = []
    report = seed_store(
        Store(), customers=1_200, progress=lambda *step: seen.append(step)
    )  # fmt: skip
    customers = [done for step, done, total in seen if step == "customers"]
    events = [(done, total) for step, done, total in seen if step == "events"]
    assert customers == sorted(customers) and customers[0] == 0 and customers[-1] == 1_200
    assert len(customers) >= 3  # told along the way, not only at the end
    assert events[-1] == (report["events"], report["events"])
    # the running sandbox tells how far its last seed got
    requests.post(f"{sandbox.url}/_sandbox/seed", data={"customers": "30"})
    state = requests.get(f"{sandbox.url}/_sandbox/seed").json()
    assert state["running"] is False
    assert state["customers"] == {"done": 30, "total": 30}
    assert state["events"]["done"] == state["events"]["total"] > 30
