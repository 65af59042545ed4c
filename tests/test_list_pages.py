"""The curl fetch's page splitter: objects one per line, exactly as sent, and what paging on
needs — as jq gave it, without jq's rounding."""

from __future__ import annotations

import json
import subprocess

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.client.list_pages import split_list_page
from app.synthetic import sample_export
from tests.property_examples import examples

SAMPLE = sample_export(customers=3)


def page(data: list, has_more: bool = False, indent: bool = True) -> bytes:
    body = {"object": "list", "data": data, "has_more": has_more, "url": "/v1/x"}
    return json.dumps(body, indent=2 if indent else None).encode()


@pytest.mark.tools("jq")
@pytest.mark.parametrize("resource", sorted(SAMPLE))
def test_a_page_splits_as_jq_split_it(tmp_path, resource):
    body = page(SAMPLE[resource], has_more=True)
    (tmp_path / "page.json").write_bytes(body)
    jq = subprocess.run(
        ["jq", "-c", ".data[]", str(tmp_path / "page.json")], capture_output=True, check=True
    ).stdout
    split = split_list_page(body, [])
    assert split.lines == jq
    last = SAMPLE[resource][-1]["id"] if SAMPLE[resource] else "-"
    assert split.head == f"true {len(SAMPLE[resource])} {last}"


def test_numbers_and_text_json_cannot_round_trip_keep_the_text_stripe_sent():
    body = (
        b'{"object": "list", "has_more": false, "data": [\n'
        b'  {"id": "a", "n": 12345678901234567890123, "big": 9007199254740993},\n'
        b'  {"id": "b", "s": "\\ud800", "f": 1e400}\n]}'
    )
    split = split_list_page(body, [])
    assert split.head == "false 2 b"
    assert split.lines == (
        b'{"id": "a", "n": 12345678901234567890123, "big": 9007199254740993}\n'
        b'{"id": "b", "s": "\\ud800", "f": 1e400}\n'
    )


def test_embedded_lists_with_more_are_named():
    invoice = {
        "id": "in_1",
        "lines": {"object": "list", "has_more": True, "data": [{"id": "il_9"}]},
    }
    done = {"id": "in_2", "lines": {"object": "list", "has_more": False, "data": [{"id": "il_1"}]}}
    split = split_list_page(page([invoice, done]), ["lines"])
    assert split.needs == ["lines in_1 il_9"]


@pytest.mark.parametrize(
    "body, head",
    [(b"<html>", "not-json"), (b'{"error": {"message": "x"}}', "not-a-list"),
     (b'{"object": "list", "data": {}}', "not-a-list"),
     (b'{"object": "list", "data": [], "has_more": false}', "false 0 -")],
)  # fmt: skip
def test_what_is_not_a_list_page_says_so(body, head):
    assert split_list_page(body, []).head == head


values = st.recursive(
    st.text(max_size=5) | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.none(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=examples(200), deadline=None)
@given(objects=st.lists(st.dictionaries(st.text(max_size=3), values, max_size=4), max_size=4),
       indent=st.booleans())  # fmt: skip
def test_every_line_reads_back_as_the_object_sent(objects, indent):
    # exactly: Python's reader keeps every integer, and what it reads back from each line must
    # equal what it reads from the page (floats beyond a double aside: both read infinity)
    objects = [{"id": f"o{i}", **o} for i, o in enumerate(objects)]
    body = page(objects, indent=indent)
    split = split_list_page(body, [])
    lines = split.lines.split(b"\n")[:-1]  # bytes: U+0085 and U+2028 are not line ends here
    assert [json.loads(line) for line in lines] == json.loads(body)["data"]
    assert split.head.split()[1] == str(len(objects))


def test_a_large_page_splits_whole():
    body = orjson.dumps({"object": "list", "data": SAMPLE["invoices"] * 10, "has_more": False})
    assert split_list_page(body, ["lines"]).lines.count(b"\n") == len(SAMPLE["invoices"]) * 10
