"""The line-by-line reading of Stripe exports: the layouts the fetchers and Stripe write are
read one line per object (the array splitter, ten times slower, is not used), and any other
arrangement of commas is read exactly as a whole-document parser reads it, or refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import InputFileError
from app.load import json_files as sources
from app.load.json_files import read_json_objects
from tests.property_examples import examples

FETCH_LIB = Path(__file__).resolve().parent.parent / "scripts" / "fetch_lib.sh"
OBJECTS = [{"id": f"cus_{i}", "object": "customer", "n": i} for i in range(3)]


def _no_splitter(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the array splitter was used")

    monkeypatch.setattr(sources, "_split", refuse)


@pytest.mark.e2e
def test_the_fetchers_own_files_are_read_line_by_line(tmp_path, monkeypatch):
    # the file exactly as fetch_lib.sh's write_list writes it: `,` at the start of each line
    lines = "".join(orjson.dumps(o).decode() + "\n" for o in OBJECTS)
    script = f'source "{FETCH_LIB}"; OUT_DIR="$1"; WORK_DIR="$1"; echo 2025-01-01T00:00:00Z >"$1/run.started"; write_list customers /v1/customers 1 3 0.1'
    subprocess.run(
        ["bash", "-c", script, "bash", str(tmp_path)], input=lines, text=True, check=True
    )
    _no_splitter(monkeypatch)
    assert list(read_json_objects(tmp_path / "customers.json")) == OBJECTS


@pytest.mark.parametrize("trailing", [False, True], ids=["comma_leads", "comma_trails"])
def test_one_object_per_line_never_reaches_the_splitter(tmp_path, monkeypatch, trailing):
    body = (",\n" if trailing else "\n,").join(orjson.dumps(o).decode() for o in OBJECTS)
    path = tmp_path / "customers.json"
    path.write_text(f'{{"object": "list", "data": [\n{body}\n], "has_more": false}}\n')
    _no_splitter(monkeypatch)
    assert list(read_json_objects(path)) == OBJECTS


@pytest.mark.parametrize(
    "separators, last",
    [
        (["", "\n"], ""),  # no comma between two objects
        (["", ",\n,"], ""),  # two commas
        (["", "\n,"], ","),  # a comma before the closing bracket
        ([",", "\n,"], ""),  # a comma before the first object
    ],
    ids=["missing", "doubled", "trailing", "leading"],
)
def test_a_misplaced_comma_is_refused_not_read_past(tmp_path, separators, last):
    objects = [orjson.dumps(o).decode() for o in OBJECTS[:2]]
    body = separators[0] + objects[0] + separators[1] + objects[1] + last
    path = tmp_path / "customers.json"
    path.write_text(f'{{"object": "list", "data": [\n{body}\n]}}\n')
    with pytest.raises(InputFileError, match="customers.json"):
        list(read_json_objects(path))


separator = st.sampled_from(["\n", ",\n", "\n,", ",\n,", " ,\n", "\n, ", ",", "\n\n,", ""])


@settings(max_examples=examples(300), deadline=None)
@given(
    count=st.integers(min_value=0, max_value=4),
    gaps=st.lists(separator, min_size=5, max_size=5),
    envelope=st.booleans(),
)
def test_any_commas_read_as_a_whole_document_parser_reads_them(
    tmp_path_factory, count, gaps, envelope
):
    objects = [orjson.dumps(o).decode() for o in (OBJECTS + OBJECTS)[:count]]
    body = gaps[0] + "".join(o + gaps[i + 1] for i, o in enumerate(objects))
    text = f'{{"object": "list", "data": [\n{body}\n]}}\n' if envelope else f"[\n{body}\n]\n"
    path = tmp_path_factory.mktemp("layout") / "customers.json"
    path.write_text(text)
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError:
        with pytest.raises(InputFileError):
            list(read_json_objects(path))
        return
    expected = whole["data"] if envelope else whole
    assert list(read_json_objects(path)) == expected
