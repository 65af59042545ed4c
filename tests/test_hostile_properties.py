"""Property tests: hostile objects, generated, against the invariants a mirror must keep.

- "Stored exactly or set aside with a reason": every object of every resource in the registry,
  with any value put anywhere (any unicode including lone surrogates and NUL, integers past 64
  bits, deep nesting, wrong types), ends either in its table with `raw` equal to the input, to
  the last digit, or in the rejects file with a reason; and check-db, reading the same file,
  names exactly the objects set aside and finds nothing else wrong.
- The array splitter cuts any JSON array, in any layout and at any read size, into exactly the
  elements a whole-document parser sees.

`HYPOTHESIS_PROFILE=slow` runs ten times as many examples, `fast` a tenth (tests/property_examples.py).
"""

import json
import tempfile
from decimal import Decimal
from pathlib import Path

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.check.reconcile import check
from app.core import strict_json
from app.load.ingest import ingest
from app.load.json_files import read_json_objects
from app.load.rejects import RejectSink
from app.registry import RESOURCES
from app.synthetic import sample_export
from tests.property_examples import examples

SAMPLE = sample_export(customers=2)
LAYOUTS = ("envelope_one_per_line", "envelope_indented", "array_compact", "json_lines")

# any code point, lone surrogates and NUL included
hostile_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=12)
scalars = (
    hostile_text
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


hostile_values = json_values | st.integers(min_value=1, max_value=150).map(nested)


@st.composite
def hostile_objects(draw):
    """An object of some registry resource with one value replaced or added somewhere."""
    resource = draw(st.sampled_from(RESOURCES))
    base = json.loads(json.dumps(draw(st.sampled_from(SAMPLE[resource.name]))))
    where = draw(st.sampled_from(["field", "metadata", "new"]))
    value = draw(hostile_values)
    if where == "field":
        base[draw(st.sampled_from(sorted(base)))] = value
    elif where == "metadata":
        base.setdefault("metadata", {})
        if isinstance(base["metadata"], dict):
            base["metadata"][draw(hostile_text)] = value
    else:
        base[draw(hostile_text)] = value
    return resource, base


def render(objects: list[object], layout: str) -> bytes:
    """Exact JSON text (the standard library writes big integers exactly and escapes lone
    surrogates) in one of the layouts people hand us."""
    texts = [json.dumps(o, ensure_ascii=True).encode() for o in objects]
    if layout == "envelope_one_per_line":
        return b'{"object": "list", "data": [\n' + b",\n".join(texts) + b"\n]}\n"
    if layout == "envelope_indented":
        return json.dumps({"object": "list", "data": objects}, indent=2).encode()
    if layout == "array_compact":
        return b"[" + b",".join(texts) + b"]"
    return b"\n".join(texts) + b"\n"


def exact(value: object) -> object:
    """A JSON value with every number as a Decimal, so 1.5e300 equals what jsonb gives back."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=hostile_objects(), layout=st.sampled_from(LAYOUTS))
@example(
    case=("customers", {"id": "cus_1", "object": "customer", "name": "\ud800"}), layout="json_lines"
)
@example(
    case=("customers", {"id": "cus_1", "object": "customer", "name": "a\x00"}),
    layout="array_compact",
)
@example(
    case=("customers", {"id": "cus_1", "object": "customer", "n": 2**64}),
    layout="envelope_indented",
)
@example(
    case=("customers", {"id": "cus_1", "object": "customer", "deleted": "false"}),
    layout="json_lines",
)
def test_every_object_is_stored_exactly_or_set_aside_with_a_reason(conn, case, layout):
    resource, obj = case
    if isinstance(resource, str):
        resource = next(r for r in RESOURCES if r.name == resource)
    savepoint = conn.begin_nested()
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / resource.file_name
            path.write_bytes(render([obj], layout))
            with RejectSink(Path(folder) / "rejects") as rejects:
                result = ingest(conn, resource, read_json_objects(path), rejects=rejects)
            stats = result.stats[resource.name]
            rejects_file = Path(folder) / "rejects" / f"{resource.name}.rejects.jsonl"
            records = (
                [orjson.loads(line) for line in rejects_file.read_bytes().splitlines()]
                if rejects_file.exists()
                else []
            )
            assert stats.read == 1
            assert len(records) == stats.rejected
            if records:
                assert stats.rejected == 1 and records[0]["reason"]
                assert stats.inserted == 0
            else:
                assert stats.inserted == 1, "neither stored nor set aside"
                raw = conn.execute(
                    text(f"SELECT raw::text FROM {resource.name} WHERE id = :id"), {"id": obj["id"]}
                ).scalar_one()
                assert exact(json.loads(raw)) == exact(obj), "stored, but altered"
            report = check(conn, [resource], lambda r: read_json_objects(path))
            parent = report.tables[0]
            assert parent.error is None
            assert parent.count("unreadable") == stats.rejected
            assert parent.count("missing") == parent.count("differs") == 0
    finally:
        savepoint.rollback()


@settings(max_examples=examples(200), deadline=None)
@given(
    elements=st.lists(json_values.filter(lambda v: _encodable(v)), max_size=6),
    layout=st.sampled_from(["compact", "indented", "envelope", "envelope_indented"]),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_the_array_splitter_sees_what_a_whole_document_parser_sees(elements, layout, chunk):
    if layout == "compact":
        data, envelope = orjson.dumps(elements), False
    elif layout == "indented":
        data, envelope = orjson.dumps(elements, option=orjson.OPT_INDENT_2), False
    else:
        option = orjson.OPT_INDENT_2 if layout == "envelope_indented" else 0
        data, envelope = (
            orjson.dumps({"url": "/x", "data": elements, "more": [1]}, option=option),
            True,
        )
    original, strict_json._CHUNK = strict_json._CHUNK, chunk
    try:
        import io

        found = list(strict_json.array_elements(io.BytesIO(data), Path("t.json"), envelope))
    finally:
        strict_json._CHUNK = original
    assert [orjson.loads(e) for e in found] == orjson.loads(orjson.dumps(elements))


def _encodable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


structure_text = st.text(st.sampled_from('ab{}[]"\\:,\n\u00e9\U0001f600'), max_size=6)
nested = st.recursive(
    structure_text | st.integers() | st.floats() | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(structure_text, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=examples(300, slow=1000), deadline=None)
@given(value=nested, wrap=st.integers(min_value=0, max_value=32), ascii_only=st.booleans())
def test_a_plain_answer_never_hides_a_deep_or_non_finite_object(value, wrap, ascii_only):
    # an API answer the quick text check calls plain needs no walk: it must never be wrong
    for _ in range(wrap):  # near the limit, where a bracket in a string could tip the count
        value = [value]
    text = json.dumps({"object": "list", "data": [value]}, ensure_ascii=ascii_only)
    if strict_json.plain_answer(text):
        assert _depth(value) <= strict_json.MAX_DEPTH // 2 - 2
        assert "NaN" not in text and "Infinity" not in text


def test_deep_answers_are_not_plain_and_a_sandbox_page_is():
    deep: object = "x"
    for _ in range(strict_json.MAX_DEPTH // 2):
        deep = {"a": [deep]} if len(str(deep)) % 2 else [deep]
    assert not strict_json.plain_answer(json.dumps({"data": [deep]}))
    assert not strict_json.plain_answer('{"data": [{"x": NaN}]}')
    # Stripe's objects stay under 20 levels: the check saves the walk for them
    assert strict_json.plain_answer(json.dumps({"object": "list", "data": SAMPLE["invoices"]}))


# Every layout a Stripe export comes in, for the same objects; the position each object is
# named by is its element number in all of them (JSON Lines: its line, one object a line).
EVERY_LAYOUT = (
    *LAYOUTS,
    "envelope_one_line",  # what curl saves with no splitter, or any minified export
    "envelope_one_line_newline",
    "array_one_per_line",
    "array_indented",
)


def render_any(objects: list[object], layout: str) -> bytes:
    texts = [json.dumps(o, ensure_ascii=True).encode() for o in objects]
    envelope_head = b'{"object":"list","url":"/v1/x","has_more":false,"data":['
    if layout in ("envelope_one_line", "envelope_one_line_newline"):
        end = b"\n" if layout.endswith("newline") else b""
        return envelope_head + b",".join(texts) + b"]}" + end
    if layout == "array_one_per_line":
        return b"[\n" + b",\n".join(texts) + b"\n]\n"
    if layout == "array_indented":
        return json.dumps(objects, indent=2).encode()
    return render(objects, layout)


def read_signature(path: Path) -> list[tuple[object, ...]]:
    """What the reader made of each object: the object, or its position and id when set aside."""
    found: list[tuple[object, ...]] = []
    for obj in read_json_objects(path):
        if isinstance(obj, strict_json.Unreadable):
            found.append(("set aside", obj.position, strict_json.id_in_text(obj.text)))
        else:
            found.append(("read", exact(obj)))
    return found


customer_objects = st.lists(
    st.sampled_from(SAMPLE["customers"]).map(lambda o: json.loads(json.dumps(o)))
    | hostile_objects().filter(lambda case: case[0].name == "customers").map(lambda c: c[1]),
    min_size=1,
    max_size=4,
)
# the issue-17 case: one bad object between good ones, the list saved on one line
ONE_BAD_AMONG_GOOD = [
    {"id": "cus_a", "object": "customer"},
    {"id": "cus_b", "object": "customer", "name": "\ud800"},
    {"id": "cus_c", "object": "customer", "balance": 2**70},
    {"id": "cus_d", "object": "customer"},
]


@settings(max_examples=examples(60), deadline=None)
@given(objects=customer_objects)
@example(objects=ONE_BAD_AMONG_GOOD)
def test_every_layout_reads_the_same_objects_and_sets_aside_the_same(objects):
    with tempfile.TemporaryDirectory() as folder:
        signatures = {}
        for layout in EVERY_LAYOUT:
            path = Path(folder) / f"{layout}.json"
            path.write_bytes(render_any(objects, layout))
            signatures[layout] = read_signature(path)
    first = signatures[EVERY_LAYOUT[0]]
    assert len(first) == len(objects)
    for layout, signature in signatures.items():
        assert signature == first, f"{layout} read differently from {EVERY_LAYOUT[0]}"


@settings(
    max_examples=examples(12, slow=200),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(objects=customer_objects)
@example(objects=ONE_BAD_AMONG_GOOD)
def test_every_layout_gives_the_same_rows_and_the_same_rejects(conn, objects):
    customers = next(r for r in RESOURCES if r.name == "customers")
    outcomes = {}
    for layout in EVERY_LAYOUT:
        savepoint = conn.begin_nested()
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / customers.file_name
                path.write_bytes(render_any(objects, layout))
                with RejectSink(Path(folder) / "rejects") as rejects:
                    result = ingest(conn, customers, read_json_objects(path), rejects=rejects)
                rejects_file = Path(folder) / "rejects" / "customers.rejects.jsonl"
                rejected = (
                    sorted(
                        str(orjson.loads(line).get("id"))
                        for line in rejects_file.read_bytes().splitlines()
                    )
                    if rejects_file.exists()
                    else []
                )
                rows = conn.execute(text("SELECT id, raw::text FROM customers ORDER BY id")).all()
                report = check(conn, [customers], lambda r, path=path: read_json_objects(path))
                stats = result.stats["customers"]
                outcomes[layout] = (
                    stats.read,
                    stats.rejected,
                    rejected,
                    [(row_id, exact(json.loads(raw))) for row_id, raw in rows],
                    report.tables[0].count("unreadable"),
                    report.tables[0].count("missing"),
                )
        finally:
            savepoint.rollback()
    first = outcomes[EVERY_LAYOUT[0]]
    assert first[0] == len(objects)
    for layout, outcome in outcomes.items():
        assert outcome == first, f"{layout} stored or set aside differently"
