"""ARCHITECTURE.md stays true: every package it names exists, and the layers it draws are the
ones import-linter enforces (pyproject.toml), in the same order."""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "ARCHITECTURE.md").read_text()


def named_modules() -> set[str]:
    return set(re.findall(r"\bapp(?:\.[a-z_]+)+", PAGE))


def exists(name: str) -> bool:
    """A module or package, or a name defined in one (`app.live.events.drain`)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is not None:
            value: object = importlib.import_module(module)
            for attribute in parts[cut:]:
                if not hasattr(value, attribute):
                    return False
                value = getattr(value, attribute)
            return True
    return False


def test_every_package_the_page_names_exists():
    names = named_modules()
    assert {"app.core", "app.load", "app.live", "app.check", "app.commands"} <= names
    missing = [name for name in sorted(names) if not exists(name)]
    assert missing == [], f"ARCHITECTURE.md names what does not exist: {missing}"


def test_the_drawn_layers_are_the_enforced_ones():
    drawn = re.search(r"```\n(app\.commands.*?)\n\napp\.sandbox", PAGE, re.DOTALL)
    assert drawn, "the layer drawing is missing from ARCHITECTURE.md"
    layers = [re.split(r"\s{3,}", line)[0].strip() for line in drawn.group(1).splitlines()]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    enforced = next(c for c in contracts if c["type"] == "layers")["layers"]
    normalise = lambda layer: re.sub(r"\s+", " ", layer)  # noqa: E731
    assert [normalise(layer) for layer in layers] == [normalise(layer) for layer in enforced]


def test_the_registry_drives_the_per_table_entry_points():
    # a resource of the registry has its script (and so its `make ingest-<table>`) and its
    # sync_<resource>(); nothing lists a table the registry does not have
    from app.live import sync
    from app.registry import RESOURCES

    names = {r.name for r in RESOURCES}
    scripts = {p.stem.removeprefix("ingest_") for p in (ROOT / "scripts" / "ingest").glob("*.py")}
    assert scripts == names
    for name in names:
        function = getattr(sync, f"sync_{name}")
        assert function.__name__ == f"sync_{name}" and name in function.__doc__
