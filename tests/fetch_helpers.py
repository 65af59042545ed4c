"""Running the curl fetchers against a sandbox from tests, and reading what they wrote."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from app.config import PROJECT_ROOT
from app.resources import RESOURCES, Resource

FETCH = PROJECT_ROOT / "scripts" / "fetch_stripe_data.sh"
FETCH_PMS = PROJECT_ROOT / "scripts" / "fetch_payment_methods.sh"
TEST_KEY = "sk_test_fetch_tests_0001"


def fetch_env(url: str, json_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FETCH_", "STRIPE_"))}
    env.update(
        ENV="DEV",
        STRIPE_API_BASE=url,
        STRIPE_SECRET_KEY=TEST_KEY,
        JSON_DIR=str(json_dir),
        FETCH_RATE="0",
        RESOURCES="",
    )
    env.update(extra)
    return env


def run_fetch(
    url: str, json_dir: Path, *, script: Path = FETCH, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script)],
        env=fetch_env(url, json_dir, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def objects_in(json_dir: Path, name: str) -> list[dict[str, Any]]:
    envelope = json.loads((json_dir / f"{name}.json").read_text())
    assert envelope["object"] == "list" and envelope["has_more"] is False
    return envelope["data"]


def sandbox_ids(store: Any, resource: Resource) -> set[str]:
    """What the sandbox holds of a resource, as a fetch should list it."""
    objects = store.tables[resource.object_name].by_id.values()
    if resource.per_customer:  # listed per customer: only methods attached to one
        return {o["id"] for o in objects if o.get("customer")}
    return {o["id"] for o in objects}


def assert_files_match_sandbox(
    json_dir: Path, store: Any, resources: tuple[Resource, ...] = RESOURCES
) -> None:
    for resource in resources:
        ids = [o["id"] for o in objects_in(json_dir, resource.name)]
        assert len(ids) == len(set(ids)), f"{resource.name}: duplicated objects in the file"
        assert set(ids) == sandbox_ids(store, resource), resource.name
