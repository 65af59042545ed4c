"""Units under the HTTP layer: form decoding and the table's page arithmetic."""

from __future__ import annotations

import pytest

from app.sandbox.errors import InvalidRequestError
from app.sandbox.params import decode_form, merged_metadata
from app.sandbox.store import Table


def test_decode_form_builds_nested_dicts_and_lists() -> None:
    params = decode_form(
        "items[0][price]=p1&items[0][quantity]=2&items[1][price]=p2&expand[]=a&expand[]=b"
        "&metadata[k]=v&invoice_settings[default_payment_method]=pm_1&created[gte]=5&email=a%2Bb%40x.io"
    )
    assert params == {
        "items": [{"price": "p1", "quantity": "2"}, {"price": "p2"}],
        "expand": ["a", "b"],
        "metadata": {"k": "v"},
        "invoice_settings": {"default_payment_method": "pm_1"},
        "created": {"gte": "5"},
        "email": "a+b@x.io",
    }


def test_decode_form_refuses_a_scalar_mixed_with_a_hash() -> None:
    with pytest.raises(InvalidRequestError):
        decode_form("metadata=x&metadata[k]=v")


def test_metadata_merges_deletes_and_clears() -> None:
    current = {"a": "1", "b": "2"}
    assert merged_metadata(current, decode_form("metadata[b]=&metadata[c]=3")) == {
        "a": "1",
        "c": "3",
    }
    assert merged_metadata(current, decode_form("metadata=")) == {}
    assert merged_metadata(current, {}) is None


def _table(created: list[int]) -> Table:
    table = Table("thing")
    # Insert out of order, with ties in `created`: the order must still be exact.
    for seq, (index, stamp) in enumerate(sorted(enumerate(created), key=lambda p: -p[0])):
        table.insert({"id": f"t{index}", "created": stamp}, seq=1000 - seq if index % 2 else seq)
    return table


def test_pages_cover_ties_exactly_once_in_both_directions() -> None:
    table = _table([5, 5, 5, 3, 3, 9, 1, 5, 9, 2])
    newest_first, _ = table.page(limit=100)
    assert [o["created"] for o in newest_first] == sorted(
        [5, 5, 5, 3, 3, 9, 1, 5, 9, 2], reverse=True
    )
    seen: list[str] = []
    cursor = None
    while True:
        page, more = table.page(limit=3, starting_after=cursor)
        seen += [o["id"] for o in page]
        if not more:
            break
        cursor = page[-1]["id"]
    assert seen == [o["id"] for o in newest_first]
    back, more = table.page(limit=4, ending_before=seen[-1])
    assert [o["id"] for o in back] == seen[-5:-1] and more is True


def test_created_bounds_and_predicates() -> None:
    table = _table([1, 2, 3, 4, 5, 6])
    page, more = table.page(limit=10, created={"gt": 2, "lte": 5})
    assert [o["created"] for o in page] == [5, 4, 3] and more is False
    page, more = table.page(limit=1, predicate=lambda o: o["created"] % 2 == 0)
    assert [o["created"] for o in page] == [6] and more is True
    with pytest.raises(InvalidRequestError) as missing:
        table.page(limit=1, starting_after="nope")
    assert missing.value.param == "starting_after"


def test_delete_keeps_the_order_consistent() -> None:
    table = _table([1, 2, 3])
    table.delete("t1")
    assert [o["id"] for o in table.page(limit=10)[0]] == ["t2", "t0"]
