"""Hostile input to the sandbox, with hypothesis: the form decoder and the HTTP endpoint answer
2xx or Stripe's 4xx error body, never a 500, never a hang, and never store what they cannot send.

Quick by default (`max_examples=50`); `HYPOTHESIS_PROFILE=slow` runs many more examples, `fast`
fewer (tests/property_examples.py). Every
failure hypothesis has found is kept below as an explicit `@example`.

The bodies use parameter names the routes read as strings, lists and filters (and random ones);
they leave out the amount arithmetic of prices, invoice items and subscriptions (`unit_amount`,
`unit_amount_decimal`, `quantity`, `amount`), whose range checks belong to the resources.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes, urlencode, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from app.sandbox.errors import InvalidRequestError
from app.sandbox.params import MAX_DEPTH, decode_form
from app.sandbox.server import SandboxHandle, run_in_thread
from app.sandbox.versions import API_VERSIONS
from tests.property_examples import examples

PROFILE = settings(
    max_examples=examples(50, slow=2000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEY = "sk_test_hostile"
ERROR_TYPES = {"invalid_request_error", "idempotency_error", "card_error"}

# --- strategies -----------------------------------------------------------------------------------

NAMES = [
    "email", "name", "description", "metadata", "expand", "limit", "starting_after",
    "ending_before", "created", "items", "active", "type", "customer", "product", "currency",
    "status", "invoice_settings", "recurring", "ids", "source", "payment_method",
]  # fmt: skip
# byte sequences that have broken parsers: a lone surrogate in UTF-8, NUL, bytes that are not
# UTF-8, half an escape, brackets and separators
NASTY = [
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\x00", b"\xff", b"\xc3", b"\xf4\x90\x80\x80", b"%", b"%G",
    b"%0", b"[", b"]", b"[]", b"&", b"=", b"+", b";", b"\xef\xbf\xbf", "²".encode(), "٣".encode(),
]  # fmt: skip
fragment = st.one_of(
    st.text(max_size=12).map(str.encode),
    st.sampled_from(NASTY),
    st.binary(max_size=6),
    st.integers(-(10**30), 10**30).map(lambda n: str(n).encode()),
    st.sampled_from(
        [b"1e400", b"NaN", b"inf", b"-0", b"1_000", b" 7 ", "１２".encode(), b"9" * 30]
    ),
)
token = st.lists(fragment, max_size=4).map(b"".join)
head = st.one_of(st.sampled_from(NAMES).map(str.encode), token)
key = st.builds(
    lambda name, parts: name + b"".join(b"[" + part + b"]" for part in parts),
    head,
    st.one_of(st.lists(token, max_size=4), st.lists(token, max_size=MAX_DEPTH + 3)),
)


def _escaped(raw: bytes) -> bytes:
    return quote_from_bytes(raw, safe="").encode()


# a pair escaped as a client would (the server sees exactly these bytes), or sent as it is
pair = st.one_of(
    st.tuples(key, token).map(lambda kv: _escaped(kv[0]) + b"=" + _escaped(kv[1])),
    st.tuples(key, token).map(lambda kv: kv[0] + b"=" + kv[1]),
    token,
)
form = st.one_of(st.lists(pair, max_size=12).map(b"&".join), st.binary(max_size=300))


def _leaves_are_strings(node: Any) -> bool:
    if isinstance(node, dict):
        return all(isinstance(k, str) and _leaves_are_strings(v) for k, v in node.items())
    if isinstance(node, list):
        return all(_leaves_are_strings(v) for v in node)
    return isinstance(node, str) and "\x00" not in node


def _assert_stripe_error(error: InvalidRequestError) -> None:
    body = orjson.loads(orjson.dumps(error.body()))  # it can be sent: no surrogates in it
    assert error.status == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"]


# --- the form decoder -----------------------------------------------------------------------------


@PROFILE
@given(form)
@example(b"metadata" + b"[a]" * 5000 + b"=x")  # was a RecursionError: a 500
@example(b"a[" + b"9" * 5000 + b"]=1&a[2]=x")  # an index past int()'s digit limit
@example("a[²]=1&a[٣]=2".encode())  # digits int() refuses or reads differently
@example(b"email=%ED%A0%80")  # a lone surrogate
@example(b"email=\xed\xa0\x80")
@example(b"email=a%00b")
@example(b"email=%G0&name=%")
@example(b"a[b=1&a]=2&[c]=3&=4")
@example(b"0")  # found by hypothesis: top-level names that are all indexes made a list, a 500
def test_decode_form_gives_string_params_or_a_400(body: bytes) -> None:
    try:
        params = decode_form(body)
    except InvalidRequestError as error:
        _assert_stripe_error(error)
        return
    assert _leaves_are_strings(params)
    orjson.dumps(params)  # encodable as a stored object would be


# names a Stripe client can send: no brackets, not an index, no NUL or surrogate
plain_key = st.text(min_size=1, max_size=10).filter(
    lambda k: not (set(k) & {"[", "]", "\x00"}) and not (k.isascii() and k.isdigit())
)
plain_value = st.text(max_size=20).filter(lambda v: "\x00" not in v)
nested = st.recursive(
    plain_value,
    lambda children: st.one_of(
        st.dictionaries(plain_key, children, min_size=1, max_size=3),
        st.lists(plain_value, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


@PROFILE
@given(st.dictionaries(plain_key, nested, max_size=5))
@example({"metadata": {"order": "1 + 1 = 2 & more", "ü": "🎉"}, "expand": ["data.customer"]})
def test_what_the_stripe_sdk_encodes_decodes_to_the_same_params(params: dict[str, Any]) -> None:
    assert decode_form(urlencode(list(_api_encode(params))).encode()) == params


# --- the HTTP endpoint ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_sandbox() -> Iterator[SandboxHandle]:
    handle = run_in_thread(0, read_timeout=5.0)
    yield handle
    handle.stop()


ROUTES = [
    ("POST", "/v1/customers"), ("GET", "/v1/customers"), ("POST", "/v1/products"),
    ("GET", "/v1/products"), ("GET", "/v1/prices"), ("GET", "/v1/events"),
    ("GET", "/v1/subscriptions"), ("GET", "/v1/invoices"), ("GET", "/v1/charges"),
    ("GET", "/v1/payment_intents"), ("GET", "/v1/customers/cus_missing"),
    ("DELETE", "/v1/customers/cus_missing"), ("PUT", "/v1/customers"), ("GET", "/v1/nothing"),
]  # fmt: skip
stripe_version = st.one_of(
    st.none(),
    st.sampled_from(API_VERSIONS),
    st.builds(
        lambda y, m, d, name: f"{y:04d}-{m:02d}-{d:02d}{name}",
        st.integers(0, 9999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(["", ".acacia", ".basil", ".clover", ".endive", ".zebra", "; x=v1"]),
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30).map(str.strip),
)


def _request(
    url: str, method: str, target: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname or "", split.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _assert_answer(status: int, body: bytes) -> None:
    assert status < 500, body
    answer = orjson.loads(body)
    if status >= 400:
        assert answer["error"]["type"] in ERROR_TYPES and answer["error"]["message"], answer
    else:
        assert isinstance(answer, dict)


@PROFILE
@given(
    route=st.sampled_from(ROUTES),
    query=st.one_of(st.none(), form),
    body=form,
    version=stripe_version,
)
@example(
    route=("POST", "/v1/customers"),
    query=None,
    body=b"metadata" + b"[a]" * 5000 + b"=x",
    version=None,
)
@example(route=("GET", "/v1/customers"), query=None, body=b"", version="1999-01-01")
@example(route=("GET", "/v1/customers"), query=b"limit=" + b"9" * 40, body=b"", version=None)
@example(route=("GET", "/v1/customers"), query=b"created[gte]=1e400", body=b"", version=None)
@example(route=("POST", "/v1/products"), query=None, body=b"name=\xed\xa0\x80", version=None)
@example(route=("POST", "/v1/customers"), query=None, body=b"0=", version=None)  # hypothesis
def test_the_endpoint_answers_2xx_or_a_stripe_4xx_and_stays_readable(
    hostile_sandbox: SandboxHandle,
    route: tuple[str, str],
    query: bytes | None,
    body: bytes,
    version: str | None,
) -> None:
    method, path = route
    # the query goes out as it is, with the bytes http.client cannot put in a request line escaped
    target = path
    if query is not None:
        target += "?" + quote_from_bytes(query, safe="%&=[]+;/?:@!$'()*,~")
    auth = {"Authorization": f"Bearer {KEY}"}
    headers = auth if version is None else {**auth, "Stripe-Version": version}
    _assert_answer(
        *_request(hostile_sandbox.url, method, target, body if method == "POST" else None, headers)
    )
    # whatever was stored can still be listed
    for listed in ("/v1/customers?limit=100", "/v1/products?limit=100", "/v1/events?limit=100"):
        status, answer = _request(hostile_sandbox.url, "GET", listed, None, auth)
        assert status == 200, answer


content_length = st.one_of(
    st.integers(-(10**6), 10**30).map(str),
    st.integers(0, 64).map(str),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=12),
    st.lists(st.integers(0, 64).map(str), min_size=2, max_size=3).map(", ".join),
)


@PROFILE
@given(length=content_length, body=st.binary(max_size=80), expect=st.booleans())
@example(length="abc", body=b"email=a", expect=False)
@example(length="-1", body=b"email=a", expect=False)
@example(length="100", body=b"email=a", expect=False)  # less than announced, then EOF
@example(length="3", body=b"email=a", expect=False)  # more than announced: the rest is garbage
@example(length=str(10**30), body=b"", expect=True)
@example(length="1", body=b"0", expect=False)  # found by hypothesis (`0` as a whole body)
def test_any_content_length_gets_an_answer_without_waiting(
    hostile_sandbox: SandboxHandle, length: str, body: bytes, expect: bool
) -> None:
    split = urlsplit(hostile_sandbox.url)
    request = (
        b"POST /v1/customers HTTP/1.1\r\nHost: sandbox\r\n"
        + f"Authorization: Bearer {KEY}\r\nContent-Length: {length}\r\n".encode("latin-1")
        + (b"Expect: 100-continue\r\n" if expect else b"")
        + b"\r\n"
        + body
    )
    # the client stops sending: every answer comes at once, not after the read timeout (5 s)
    with socket.create_connection((split.hostname, split.port), timeout=4) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(1 << 16):
            reply += chunk
    if reply.startswith(b"HTTP/1.1 100"):
        reply = reply.partition(b"\r\n\r\n")[2]
    head, _, rest = reply.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    _assert_answer(int(status_line.split()[1]), rest[: int(headers["content-length"])])
