"""Bad input is stored exactly or set aside with its reason: never altered, never a crash or hang.

Each case names the one found by hand (issue 8); the property tests (test_hostile_properties.py)
generate the rest.
"""

import os
import threading

import orjson
import pytest
from sqlalchemy import text

from app.check.reconcile import check
from app.core import strict_json
from app.core.errors import InputFileError
from app.load.ingest import ingest
from app.load.json_files import read_json_objects
from app.load.rejects import RejectSink
from app.registry import BY_NAME
from app.synthetic import customer

CUSTOMERS = BY_NAME["customers"]
LAYOUTS = ("indented", "one_per_line", "json_lines", "compact")


def write(path, objects_text: list[bytes], layout: str) -> None:
    """Objects given as their exact JSON text, in one of the layouts people hand us."""
    if layout == "indented":  # pretty-printed as a list envelope: the streaming path
        body = b",\n".join(b"    {\n      " + t[1:-1] + b"\n    }" for t in objects_text)
        data = b'{\n  "object": "list",\n  "data": [\n' + body + b'\n  ],\n  "has_more": false\n}\n'
    elif layout == "one_per_line":  # what the fetchers write
        data = (
            b'{"object": "list", "data": [\n' + b",\n".join(objects_text) + b'\n], "url": "/x"}\n'
        )
    elif layout == "json_lines":
        data = b"\n".join(objects_text) + b"\n"
    else:
        data = b"[" + b",".join(objects_text) + b"]"
    path.write_bytes(data)


def load(conn, tmp_path, objects_text, layout="indented"):
    path = tmp_path / "customers.json"
    write(path, objects_text, layout)
    with RejectSink(tmp_path / "rejects") as rejects:
        result = ingest(conn, CUSTOMERS, read_json_objects(path), rejects=rejects)
    rejects_file = tmp_path / "rejects" / "customers.rejects.jsonl"
    records = (
        [orjson.loads(line) for line in rejects_file.read_bytes().splitlines()]
        if rejects_file.exists()
        else []
    )
    return result.stats["customers"], records


def stored_names(conn) -> dict[str, str]:
    return dict(conn.execute(text("SELECT id, raw->>'name' FROM customers")).all())


def with_name(number: int, name_json: bytes) -> bytes:
    """A customer's JSON text whose name is the given JSON string literal, written as is."""
    obj = customer(number)
    obj["name"] = "PLACEHOLDER"
    return orjson.dumps(obj).replace(b'"PLACEHOLDER"', name_json)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_lone_surrogate_is_set_aside_never_stored_as_a_question_mark(conn, tmp_path, layout):
    bad = with_name(2, b'"\\ud800Ada"')
    stats, records = load(
        conn, tmp_path, [orjson.dumps(customer(1)), bad, orjson.dumps(customer(3))], layout
    )
    assert (stats.inserted, stats.rejected) == (2, 1)
    assert "?Ada" not in stored_names(conn).values()
    assert records[0]["id"] == "cus_00000000000002"
    assert "surrogate" in records[0]["reason"]
    assert bad.decode()[1:-1] in records[0]["object"]  # the exact text, escape and all


@pytest.mark.parametrize("layout", LAYOUTS)
def test_invalid_utf8_is_set_aside(conn, tmp_path, layout):
    bad = with_name(2, b'"\xff\xfeAda"')
    stats, records = load(conn, tmp_path, [orjson.dumps(customer(1)), bad], layout)
    assert (stats.inserted, stats.rejected) == (1, 1)
    assert "UTF-8" in records[0]["reason"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_nul_is_set_aside_by_name_not_by_a_failed_batch(conn, tmp_path, layout):
    bad = with_name(2, b'"a\\u0000b"')
    stats, records = load(conn, tmp_path, [orjson.dumps(customer(1)), bad], layout)
    assert (stats.inserted, stats.rejected) == (1, 1)
    assert records[0]["id"] == "cus_00000000000002"
    assert "NUL" in records[0]["reason"]


def test_a_literal_backslash_u0000_in_text_is_not_a_nul_and_is_stored(conn, tmp_path):
    fine = with_name(2, b'"C:\\\\u0000dir"')  # the six characters \u0000, not a NUL
    stats, _ = load(conn, tmp_path, [fine], "one_per_line")
    assert (stats.inserted, stats.rejected) == (1, 0)
    assert stored_names(conn)["cus_00000000000002"] == "C:\\u0000dir"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_integer_beyond_64_bits_is_set_aside_and_kept_exactly(conn, tmp_path, layout):
    obj = customer(2)
    obj["metadata"] = {"n": "PLACEHOLDER"}
    bad = orjson.dumps(obj).replace(b'"PLACEHOLDER"', b"18446744073709551616")
    stats, records = load(conn, tmp_path, [orjson.dumps(customer(1)), bad], layout)
    assert (stats.inserted, stats.rejected) == (1, 1)
    assert "cannot be stored exactly" in records[0]["reason"]
    assert "18446744073709551616" in records[0]["object"]  # not 1.8446744073709552e+19


# beyond a double's precision, and below its smallest number (read as 0.0, short as it is)
@pytest.mark.parametrize("number", [b"0.10000000000000000001", b"1e-400"])
def test_a_decimal_no_double_holds_is_set_aside(conn, tmp_path, number):
    bad = with_name(2, b'"x"').replace(b'"balance":0', b'"balance":' + number)
    assert bad != with_name(2, b'"x"')
    stats, records = load(conn, tmp_path, [bad], "one_per_line")
    assert stats.rejected == 1 and "cannot be stored exactly" in records[0]["reason"]
    assert number.decode() in records[0]["reason"]


def test_numbers_that_survive_a_double_are_stored(conn, tmp_path):
    obj = customer(2)
    obj["metadata"] = {}
    obj["balance"] = 9223372036854775807  # the largest bigint
    text_ = orjson.dumps(obj).replace(b'"metadata":{}', b'"metadata":{},"rate":0.1,"big":1.5e300')
    stats, _ = load(conn, tmp_path, [text_], "indented")
    assert (stats.inserted, stats.rejected) == (1, 0)
    balance = conn.execute(text("SELECT balance FROM customers")).scalar_one()
    assert balance == 9223372036854775807


def test_a_digit_run_inside_a_string_is_not_taken_for_a_number(conn, tmp_path):
    fine = with_name(2, b'"order 123456789012345678901234567890"')
    stats, _ = load(conn, tmp_path, [fine], "one_per_line")
    assert (stats.inserted, stats.rejected) == (1, 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_metadata_nested_1000_deep_is_set_aside_with_the_limit(conn, tmp_path, layout):
    obj = customer(2)
    obj["metadata"] = {"k": "PLACEHOLDER"}
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    bad = orjson.dumps(obj).replace(b'"PLACEHOLDER"', deep)
    stats, records = load(conn, tmp_path, [orjson.dumps(customer(1)), bad], layout)
    assert (stats.inserted, stats.rejected) == (1, 1)
    assert f"deeper than {strict_json.MAX_DEPTH} levels" in records[0]["reason"]
    assert bad.decode()[1:-1] in records[0]["object"]


def test_an_array_nested_100000_deep_is_refused_quickly_in_ingest_and_check_db(conn, tmp_path):
    bad = b'{"id": "cus_deep", "object": "customer", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "customers.json"
    write(path, [orjson.dumps(customer(1)), bad], "indented")
    with RejectSink(tmp_path / "rejects") as rejects:
        result = ingest(conn, CUSTOMERS, read_json_objects(path), rejects=rejects)
    assert (result.stats["customers"].inserted, result.stats["customers"].rejected) == (1, 1)
    report = check(conn, [CUSTOMERS], lambda r: read_json_objects(path))
    customers = report.tables[0]
    assert customers.error is None
    assert customers.count("unreadable") == 1 and customers.failures == 1
    assert customers.findings["unreadable"].samples[0]["id"] == "cus_deep"


@pytest.mark.parametrize("layout", ("indented", "one_per_line", "json_lines", "compact"))
def test_an_object_over_the_size_limit_is_set_aside_and_the_rest_goes_on(
    conn, tmp_path, monkeypatch, layout
):
    monkeypatch.setattr(strict_json, "MAX_OBJECT_BYTES", 4096)
    monkeypatch.setattr(strict_json, "_CHUNK", 1000)  # the element spans several reads
    big = with_name(2, b'"' + b"x" * 20_000 + b'"')
    stats, records = load(
        conn, tmp_path, [orjson.dumps(customer(1)), big, orjson.dumps(customer(3))], layout
    )
    assert (stats.inserted, stats.rejected) == (2, 1)
    assert "over the 4,096-byte limit" in records[0]["reason"]


def test_a_fifo_is_refused_at_once_instead_of_hanging(tmp_path):
    fifo = tmp_path / "customers.json"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            list(read_json_objects(fifo))
        except InputFileError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():  # unblock the reader so the test run can end
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO hung")
    assert "not a regular file" in str(outcome[0])


def test_a_directory_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "customers.json").mkdir()
    with pytest.raises(InputFileError, match="is a directory"):
        list(read_json_objects(tmp_path / "customers.json"))


def test_check_db_reads_input_as_strictly_as_the_ingest(conn, tmp_path):
    objects = [
        orjson.dumps(customer(1)),
        with_name(2, b'"\\ud800Ada"'),
        with_name(3, b'"a\\u0000"'),
    ]
    stats, _ = load(conn, tmp_path, objects, "indented")
    assert (stats.inserted, stats.rejected) == (1, 2)
    report = check(conn, [CUSTOMERS], lambda r: read_json_objects(tmp_path / "customers.json"))
    customers = report.tables[0]
    assert customers.error is None
    assert customers.count("unreadable") == 2
    assert customers.failures == 2  # the two set aside, named; nothing else differs
    named = {s["id"] for s in customers.findings["unreadable"].samples}
    assert named == {"cus_00000000000002", "cus_00000000000003"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_infinity_from_the_api_is_set_aside_never_written_as_null(value):
    # Python's json reader (the stripe SDK's) accepts NaN and Infinity; orjson writes null
    problem = strict_json.api_object_problem({"id": "cus_1", "metadata": {}, "x": [{"y": value}]})
    assert problem is not None and "NaN or Infinity" in problem
    assert strict_json.api_object_problem({"id": "cus_1", "x": [{"y": 1.5, "z": -0.0}]}) is None


def test_an_api_object_nested_too_deeply_is_named():
    deep: dict = {"id": "cus_1"}
    inner = deep
    for _ in range(strict_json.MAX_DEPTH):
        inner["a"] = {}
        inner = inner["a"]
    problem = strict_json.api_object_problem(deep)
    assert problem is not None and "nested deeper than 64" in problem
