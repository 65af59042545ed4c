"""The README and the Makefile tell the same story: every target `make help` lists is in the README."""

import re

from app.core.config import PROJECT_ROOT


def test_every_make_target_with_help_is_in_the_readme():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    targets = re.findall(r"^([a-z][a-z0-9-]*):[^\n]*## ", makefile, re.MULTILINE)
    assert len(targets) > 20
    # `make X`, or `X` in a group such as `make sandbox` / `sandbox-stop`
    mentioned = set(re.findall(r"make ([a-z][a-z0-9-]*)", readme))
    mentioned |= set(re.findall(r"`([a-z][a-z0-9-]*)(?: [A-Z]+=[^`]*)?`", readme))
    missing = [t for t in targets if t not in mentioned]
    assert not missing, f"make targets with help text the README never mentions: {missing}"
