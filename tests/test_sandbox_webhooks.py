"""Webhook endpoints and delivery: real HTTP from the sandbox to a small receiver in the test,
signed so that `stripe.Webhook.construct_event` accepts it; retries, give-ups, faults."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
import requests
import stripe

from app.sandbox.server import SandboxHandle
from app.sandbox.versions import DEFAULT_API_VERSION, NEWEST_API_VERSION
from app.sandbox.webhooks import USER_AGENT, WebhookConfig, signature_header
from tests.fetch_helpers import create_long_lists

FAST_RETRIES = {"webhook_retry_base": 0.02, "webhook_retry_max": 0.05}


@dataclass
class Delivery:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(orjson.loads(self.body))


@dataclass
class Receiver:
    """An endpoint that records deliveries and answers `fail_first` of them with a 500."""

    url: str = ""
    fail_first: int = 0
    always_fail: bool = False
    delay: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.attempts += 1
            if self.always_fail or self.attempts <= self.fail_first:
                return 500
            self.deliveries.append(Delivery(time.time(), headers, body))
            return 200

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.event for d in self.deliveries]


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.answer(dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture()
def api(sandbox: SandboxHandle) -> Callable[..., requests.Response]:
    return _client(sandbox)


def _client(sandbox: SandboxHandle) -> Callable[..., requests.Response]:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sk_test_webhooks"

    def call(method: str, path: str, data: Any = None) -> requests.Response:
        return session.request(method, sandbox.url + path, data=data)

    return call


def _endpoint(
    api: Callable[..., requests.Response], url: str, events: list[str] | None = None, **extra: str
) -> dict[str, Any]:
    data: list[tuple[str, str]] = [("url", url)]
    data += [("enabled_events[]", e) for e in events or ["*"]]
    data += list(extra.items())
    response = api("POST", "/v1/webhook_endpoints", data)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _wait(sandbox: SandboxHandle, timeout: float = 10.0) -> None:
    assert sandbox.wait_for_webhooks(timeout), "webhook deliveries did not finish"


# --- endpoints ---------------------------------------------------------------------------------


def test_endpoint_create_retrieve_update_list_delete(
    api: Callable[..., requests.Response], stripe_examples: dict[str, Any]
) -> None:
    created = _endpoint(
        api,
        "https://example.com/hooks",
        ["customer.created", "charge.succeeded"],
        description="mirror",
        **{"metadata[team]": "data"},
    )
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 20
    assert created["object"] == "webhook_endpoint" and created["status"] == "enabled"
    assert created["enabled_events"] == ["customer.created", "charge.succeeded"]
    assert created["id"].startswith("we_") and created["metadata"] == {"team": "data"}
    assert set(stripe_examples["webhook_endpoint"]) <= set(created)
    retrieved = api("GET", f"/v1/webhook_endpoints/{created['id']}").json()
    assert "secret" not in retrieved
    assert retrieved == {k: v for k, v in created.items() if k != "secret"}

    updated = api(
        "POST",
        f"/v1/webhook_endpoints/{created['id']}",
        {"url": "https://example.com/v2", "enabled_events[]": "*", "disabled": "true"},
    ).json()
    assert (updated["url"], updated["enabled_events"], updated["status"]) == (
        "https://example.com/v2",
        ["*"],
        "disabled",
    )
    enabled = api("POST", f"/v1/webhook_endpoints/{created['id']}", {"disabled": "false"})
    assert enabled.json()["status"] == "enabled"

    second = _endpoint(api, "http://127.0.0.1:9/other")
    page = api("GET", "/v1/webhook_endpoints?limit=1").json()
    assert page["object"] == "list" and page["url"] == "/v1/webhook_endpoints"
    assert [e["id"] for e in page["data"]] == [second["id"]] and page["has_more"] is True
    rest = api("GET", f"/v1/webhook_endpoints?limit=1&starting_after={second['id']}").json()
    assert [e["id"] for e in rest["data"]] == [created["id"]] and rest["has_more"] is False

    deleted = api("DELETE", f"/v1/webhook_endpoints/{created['id']}").json()
    assert deleted == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    assert api("GET", f"/v1/webhook_endpoints/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"enabled_events[]": "*"}, "url"),
        ({"url": "ftp://example.com/x", "enabled_events[]": "*"}, "url"),
        ({"url": "http://", "enabled_events[]": "*"}, "url"),
        ({"url": "http://[::1/x", "enabled_events[]": "*"}, "url"),
        ({"url": "http://example.com:99999/x", "enabled_events[]": "*"}, "url"),
        ({"url": "http://example.com:0/x", "enabled_events[]": "*"}, "url"),
        ({"url": "http://exa mple.com/x", "enabled_events[]": "*"}, "url"),
        ({"url": "https://example.com", "enabled_events[0][x]": "y"}, "enabled_events[0]"),
        ({"url": "https://example.com"}, "enabled_events"),
        ({"url": "https://example.com", "enabled_events[]": "not an event"}, "enabled_events[0]"),
        (
            {"url": "https://example.com", "enabled_events[]": "*", "api_version": "1999-01-01"},
            "api_version",
        ),
        (
            {"url": "https://example.com", "enabled_events[]": "*", "api_version": "2026-10-01"},
            "api_version",
        ),
    ],
)
def test_endpoint_parameters_are_checked(
    api: Callable[..., requests.Response], data: dict[str, str], param: str
) -> None:
    response = api("POST", "/v1/webhook_endpoints", data)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


# --- delivery ----------------------------------------------------------------------------------


def test_events_are_delivered_signed_as_stripe_signs_them(
    sandbox: SandboxHandle,
    api: Callable[..., requests.Response],
    receiver: Receiver,
) -> None:
    everything = _endpoint(api, receiver.url)
    customer = api("POST", "/v1/customers", {"email": "hook@example.com"})
    assert customer.status_code == 200
    _wait(sandbox)
    [delivery] = receiver.deliveries
    assert delivery.headers["Content-Type"] == "application/json; charset=utf-8"
    assert delivery.headers["User-Agent"] == USER_AGENT
    event = stripe.Webhook.construct_event(
        delivery.body.decode(), delivery.headers["Stripe-Signature"], everything["secret"]
    )
    assert event.type == "customer.created"
    assert event.data.object.id == customer.json()["id"]
    assert event.api_version == DEFAULT_API_VERSION
    assert event.request.id == customer.headers["Request-Id"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            delivery.body.decode(), delivery.headers["Stripe-Signature"], "whsec_wrong"
        )
    # the same event, listed: delivered, so nothing is pending
    listed = api("GET", f"/v1/events/{event.id}").json()
    assert listed["pending_webhooks"] == 0 and listed["api_version"] == DEFAULT_API_VERSION


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = signature_header("whsec_test", b'{"id": "evt_1"}', 1_700_000_000)
    expected = hmac.new(b"whsec_test", b'1700000000.{"id": "evt_1"}', "sha256").hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_events_carry_the_account_version_whatever_the_request_asked(
    sandbox: SandboxHandle, api: Callable[..., requests.Response], receiver: Receiver
) -> None:
    pinned = _endpoint(api, receiver.url, ["customer.created"], api_version="2024-06-20")
    response = requests.post(
        sandbox.url + "/v1/customers",
        headers={"Authorization": "Bearer sk_test_x", "Stripe-Version": "2026-01-28.clover"},
    )
    assert response.headers["Stripe-Version"] == "2026-01-28.clover"
    _wait(sandbox)
    listed = api("GET", "/v1/events?limit=1").json()["data"][0]
    assert listed["api_version"] == DEFAULT_API_VERSION
    [delivered] = receiver.deliveries
    # an endpoint with its own version gets the event rendered in that version
    assert delivered.event["api_version"] == pinned["api_version"] == "2024-06-20"


def test_an_endpoint_pinned_to_a_newer_version_gets_the_newest_shapes(
    sandbox: SandboxHandle, api: Callable[..., requests.Response], receiver: Receiver
) -> None:
    newer = "2026-11-18.endive"  # stripe-node 23.2.0's, newer than the sandbox
    pinned = _endpoint(api, receiver.url, ["customer.created"], api_version=newer)
    assert pinned["api_version"] == newer
    api("POST", "/v1/customers", {"email": "newer@example.com"})
    _wait(sandbox)
    [delivered] = receiver.deliveries
    # rendered in the newest version the sandbox knows, and labelled so
    assert delivered.event["api_version"] == NEWEST_API_VERSION
    assert delivered.event["data"]["object"]["email"] == "newer@example.com"


def test_only_enabled_endpoints_get_the_event_types_they_asked_for(
    sandbox: SandboxHandle, api: Callable[..., requests.Response], receiver: Receiver
) -> None:
    _endpoint(api, receiver.url, ["product.created"])
    disabled = _endpoint(api, receiver.url + "?disabled", ["*"])
    api("POST", f"/v1/webhook_endpoints/{disabled['id']}", {"disabled": "true"})
    product = api("POST", "/v1/products", {"name": "Hooked"}).json()
    api("POST", f"/v1/products/{product['id']}", {"name": "Renamed"})
    api("POST", "/v1/customers", {"email": "nobody@example.com"})
    _wait(sandbox)
    assert [e["type"] for e in receiver.events()] == ["product.created"]
    events = api("GET", "/v1/events").json()["data"]
    pending = {e["type"]: e["pending_webhooks"] for e in events}
    assert pending == {"product.created": 0, "product.updated": 0, "customer.created": 0}


def test_failed_deliveries_are_retried_with_backoff(
    sandbox_factory: Callable[..., SandboxHandle], receiver: Receiver
) -> None:
    sandbox = sandbox_factory(webhook_retry_base=0.05, webhook_retry_max=1.0)
    api = _client(sandbox)
    receiver.fail_first = 3
    _endpoint(api, receiver.url)
    started = time.monotonic()
    api("POST", "/v1/customers", {"email": "retry@example.com"})
    event = api("GET", "/v1/events?limit=1").json()["data"][0]
    assert event["pending_webhooks"] == 1
    _wait(sandbox)
    # 0.05 + 0.1 + 0.2 s of backoff before the fourth attempt succeeds
    assert time.monotonic() - started >= 0.35
    assert receiver.attempts == 4 and [e["id"] for e in receiver.events()] == [event["id"]]
    assert api("GET", f"/v1/events/{event['id']}").json()["pending_webhooks"] == 0
    stats = requests.get(sandbox.url + "/_sandbox/health").json()["webhooks"]
    assert stats["retried"] == 3 and stats["delivered"] == 1


def test_a_delivery_is_given_up_after_max_attempts(
    sandbox_factory: Callable[..., SandboxHandle], receiver: Receiver
) -> None:
    sandbox = sandbox_factory(webhook_max_attempts=3, **FAST_RETRIES)
    api = _client(sandbox)
    receiver.always_fail = True
    _endpoint(api, receiver.url)
    api("POST", "/v1/customers", {"email": "never@example.com"})
    _wait(sandbox)
    assert receiver.attempts == 3
    event = api("GET", "/v1/events?limit=1").json()["data"][0]
    assert event["pending_webhooks"] == 1


def test_an_unreachable_endpoint_is_retried_and_others_still_get_theirs(
    sandbox_factory: Callable[..., SandboxHandle], receiver: Receiver
) -> None:
    sandbox = sandbox_factory(webhook_max_attempts=2, **FAST_RETRIES)
    api = _client(sandbox)
    _endpoint(api, "http://127.0.0.1:9/refused")  # port 9 (discard): nothing listens
    _endpoint(api, receiver.url)
    api("POST", "/v1/customers", {"email": "half@example.com"})
    _wait(sandbox)
    assert len(receiver.deliveries) == 1
    stats = requests.get(sandbox.url + "/_sandbox/health").json()["webhooks"]
    assert stats["given_up"] == 1 and stats["delivered"] == 1
    assert api("GET", "/v1/events?limit=1").json()["data"][0]["pending_webhooks"] == 1


def test_delivery_never_blocks_the_api_request(
    sandbox: SandboxHandle, api: Callable[..., requests.Response], receiver: Receiver
) -> None:
    receiver.delay = 0.3
    _endpoint(api, receiver.url)
    started = time.monotonic()
    for n in range(2):
        assert api("POST", "/v1/customers", {"email": f"slow{n}@example.com"}).status_code == 200
    assert time.monotonic() - started < 0.25
    _wait(sandbox)
    assert len(receiver.deliveries) == 2


def test_deleting_an_endpoint_drops_its_queued_retries(
    sandbox_factory: Callable[..., SandboxHandle], receiver: Receiver
) -> None:
    sandbox = sandbox_factory(webhook_retry_base=0.3, webhook_retry_max=0.3)
    api = _client(sandbox)
    receiver.always_fail = True
    endpoint = _endpoint(api, receiver.url)
    api("POST", "/v1/customers", {"email": "dropped@example.com"})
    deadline = time.monotonic() + 5
    while receiver.attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    api("DELETE", f"/v1/webhook_endpoints/{endpoint['id']}")
    _wait(sandbox)
    assert receiver.attempts == 1
    assert requests.get(sandbox.url + "/_sandbox/health").json()["webhooks"]["dropped"] == 1


def test_shuffle_and_duplicates_are_reproducible_faults(
    sandbox_factory: Callable[..., SandboxHandle], receiver: Receiver
) -> None:
    sandbox = sandbox_factory(
        webhook_shuffle=True,
        webhook_shuffle_window=0.2,
        webhook_duplicate_rate=0.3,
        webhook_connections=1,
        fault_seed=7,
    )
    api = _client(sandbox)
    _endpoint(api, receiver.url, ["customer.created"])
    ids = [
        api("POST", "/v1/customers", {"email": f"s{n}@example.com"}).json()["id"] for n in range(30)
    ]
    _wait(sandbox)
    arrived = [e["data"]["object"]["id"] for e in receiver.events()]
    assert set(arrived) == set(ids)
    assert len(arrived) > len(ids)  # some came twice
    first_arrivals = list(dict.fromkeys(arrived))
    assert first_arrivals != ids  # and not in the order they happened
    stats = requests.get(sandbox.url + "/_sandbox/health").json()["webhooks"]
    assert stats["duplicated"] == len(arrived) - len(ids)
    # the same seed draws the same duplicates
    again = sandbox_factory(
        webhook_shuffle=True,
        webhook_shuffle_window=0.2,
        webhook_duplicate_rate=0.3,
        webhook_connections=1,
        fault_seed=7,
    )
    _endpoint(_client(again), receiver.url + "?again", ["customer.created"])
    for n in range(30):
        _client(again)("POST", "/v1/customers", {"email": f"t{n}@example.com"})
    assert again.wait_for_webhooks(10)
    assert (
        requests.get(again.url + "/_sandbox/health").json()["webhooks"]["duplicated"]
        == (stats["duplicated"])
    )


def test_seeded_objects_are_announced_and_delivered_quickly(
    sandbox: SandboxHandle, api: Callable[..., requests.Response], receiver: Receiver
) -> None:
    _endpoint(api, receiver.url)
    report = sandbox.seed(customers=60, seed=3)
    assert report["events"] > 300
    started = time.monotonic()
    _wait(sandbox, timeout=20)
    elapsed = time.monotonic() - started
    assert len(receiver.deliveries) == report["events"]
    assert report["events"] / elapsed > 100  # events/s: the sandbox keeps up with a live account
    types = {e["type"] for e in receiver.events()}
    assert {"customer.created", "price.created", "customer.subscription.created",
            "invoice.created", "payment_intent.created", "payment_method.attached"} <= types  # fmt: skip
    first = receiver.events()[0]
    assert first["data"]["object"]["created"] == first["created"]


def test_webhook_options_are_checked() -> None:
    with pytest.raises(ValueError):
        WebhookConfig(retry_base=0)
    with pytest.raises(ValueError):
        WebhookConfig(duplicate_rate=1.5)
    assert WebhookConfig(retry_base=1, retry_max=60).retry_delay(10) == 60
    assert WebhookConfig(retry_base=0.2).retry_delay(3) == pytest.approx(0.8)


def test_deliveries_embed_first_pages_in_the_endpoints_version(
    sandbox: SandboxHandle, api: Callable[..., requests.Response], receiver: Receiver
) -> None:
    _endpoint(api, receiver.url, ["invoice.created"])
    _endpoint(api, receiver.url, ["invoice.created"], api_version="2024-06-20")
    made = create_long_lists(sandbox.url, invoice_lines=12, items=1)
    _wait(sandbox)
    delivered = {
        e["api_version"]: e["data"]["object"]
        for e in receiver.events()
        if e["data"]["object"]["id"] == made["invoice"]
    }
    assert set(delivered) == {DEFAULT_API_VERSION, "2024-06-20"}
    for invoice in delivered.values():
        assert len(invoice["lines"]["data"]) == 10 and invoice["lines"]["has_more"] is True
        assert "payments" not in invoice
    old_line = delivered["2024-06-20"]["lines"]["data"][0]
    assert old_line["type"] == "invoiceitem" and "parent" not in old_line
    assert delivered["2024-06-20"]["paid"] is False and "parent" not in delivered["2024-06-20"]
    assert "paid" not in delivered[DEFAULT_API_VERSION]
