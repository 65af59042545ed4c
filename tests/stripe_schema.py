"""Stripe's description of the pinned API version, read from the typed classes of the stripe
package that pyproject pins: a class per object (and per nested hash), each field annotated with
its type — `Optional[...]` when Stripe may send null, `Literal[...]` for enums,
`ExpandableField[X]` for an id that `expand[]` turns into an X, `ListObject[X]` for a list.

`problems(obj)` checks a sandbox object against it, through expanded and embedded objects: a
field the class does not declare, a declared field that is missing (Stripe sends every field,
null when there is no value, except those it may leave out: `may_be_absent()`), a null where the
field is not nullable (the type is not Optional, or Stripe's schema says so: `never_null()` — the
package types a field Stripe may leave out as Optional too, so "may be absent" and "may be null"
look the same in it), a value of the wrong type, and a string outside an enum. The package widens
every enum with `str` so that old SDKs survive new values; that `str` is not taken as a licence.
"""

from __future__ import annotations

import argparse
import decimal
import importlib
import json
import re
import sys
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ForwardRef, Literal, Union

import stripe
from stripe._list_object import ListObject
from stripe._object_classes import OBJECT_CLASSES
from stripe._stripe_object import StripeObject, UntypedStripeObject

# What the stripe package's classes cannot tell: the fields Stripe may leave out (includables
# such as `invoice.payments`, `deleted`, the hash of each other payment-method type), and which of
# the fields they type `Optional` Stripe never sends as null (`billing_mode.updated_at` is left
# out, never null). stripe-node's types for the same API version tell both: `field?:` may be
# absent, `… | null` may be null (OpenAPI's `nullable: true`). Written by
# `python -m tests.stripe_schema <stripe-node package folder>` for the classes the sandbox sends.
OPTIONAL_FIELDS_FILE = Path(__file__).resolve().parent / "data" / "stripe_optional_fields.json"
# The objects the sandbox sends, by the stripe package's class names.
SENT_CLASSES = (
    "Product", "Price", "Plan", "Customer", "PaymentMethod", "Subscription", "SubscriptionItem",
    "Invoice", "InvoiceLineItem", "InvoicePayment", "PaymentIntent", "Charge", "Refund", "Event",
    "Token", "Card", "InvoiceItem", "WebhookEndpoint",
)  # fmt: skip


@cache
def _node_table() -> dict[str, Any]:
    table: dict[str, Any] = json.loads(OPTIONAL_FIELDS_FILE.read_text())
    if table["api_version"] != stripe.api_version:
        raise RuntimeError(
            f"{OPTIONAL_FIELDS_FILE} is for {table['api_version']}, the stripe package speaks "
            f"{stripe.api_version}: regenerate it (python -m tests.stripe_schema --help)"
        )
    return table


@cache
def may_be_absent() -> dict[str, frozenset[str]]:
    """Class → the fields Stripe may leave out."""
    return {name: frozenset(names) for name, names in _node_table()["optional"].items()}


@cache
def never_null() -> dict[str, frozenset[str]]:
    """Class → the fields typed `Optional` that Stripe never sends as null."""
    return {name: frozenset(names) for name, names in _node_table()["never_null"].items()}


# Stripe sends `total_count` on the lists it embeds (subscription items, invoice lines), though
# its schemas declare only the four fields of a list.
LIST_FIELDS = {"object", "data", "has_more", "url"}
LIST_EXTRA = {"total_count"}


def object_class(object_name: str) -> type[StripeObject] | None:
    """The stripe package's class for an object's `object` value (`invoice` → Invoice)."""
    found = OBJECT_CLASSES.get(object_name)
    if found is None:
        return None
    module, name = found
    cls: type[StripeObject] = getattr(importlib.import_module(module), name)
    return cls


@cache
def _named(name: str) -> Any:
    """The class a forward reference names (`CardResource` is the package's alias of Card)."""
    for candidate in (name, name.removesuffix("Resource")):
        try:  # the top-level namespace first: `Product` is stripe.Product, not climate's
            return getattr(stripe, candidate)
        except AttributeError:
            pass
        for module, class_name in OBJECT_CLASSES.values():
            if class_name == candidate:
                return getattr(importlib.import_module(module), class_name)
    raise LookupError(f"the stripe package has no class {name}")


@cache
def fields(cls: type) -> dict[str, Any]:
    """The fields a class declares (its own and its bases'), without class constants."""
    declared: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (StripeObject, object, dict) or not issubclass(klass, StripeObject):
            continue
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if typing.get_origin(annotation) is typing.ClassVar or name.isupper():
                continue
            declared[name] = annotation
    return declared


def _qualname(cls: type) -> str:
    return cls.__qualname__


class Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")

    def object(self, obj: Any, cls: type, path: str) -> None:
        if not isinstance(obj, dict):
            self.add(path, f"expected a {_qualname(cls)} hash, got {type(obj).__name__}")
            return
        declared = fields(cls)
        absent_ok = may_be_absent().get(_qualname(cls), frozenset())
        not_null = never_null().get(_qualname(cls), frozenset())
        for key in obj:
            if key not in declared:
                self.add(f"{path}.{key}", f"unknown field of {_qualname(cls)}")
        for key, annotation in declared.items():
            if key in obj and obj[key] is None and key in not_null:
                leave_out = " (Stripe leaves it out)" if key in absent_ok else ""
                self.add(f"{path}.{key}", f"null, but the field is not nullable{leave_out}")
            elif key in obj:
                self.value(obj[key], annotation, f"{path}.{key}")
            elif key not in absent_ok:
                self.add(f"{path}.{key}", f"missing (required by {_qualname(cls)})")

    def value(self, value: Any, annotation: Any, path: str) -> None:
        if annotation is Any:
            return
        if isinstance(annotation, ForwardRef):
            annotation = _named(annotation.__forward_arg__)
        if isinstance(annotation, str):
            annotation = _named(annotation)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin in (Union, types.UnionType):
            self.union(value, args, path)
        elif origin is Literal:
            if value not in args:
                self.add(path, f"{value!r} is not one of {sorted(map(str, args))}")
        elif value is None:
            self.add(path, "null, but the field is not nullable")
        elif origin in (list, typing.List):  # noqa: UP006
            if not isinstance(value, list):
                self.add(path, f"expected a list, got {type(value).__name__}")
                return
            for index, item in enumerate(value):
                self.value(item, args[0], f"{path}[{index}]")
        elif origin in (dict, typing.Dict):  # noqa: UP006
            self.mapping(value, args[1] if len(args) == 2 else Any, path)
        elif origin is UntypedStripeObject or annotation is UntypedStripeObject:
            self.mapping(value, args[0] if args else Any, path)
        elif origin is ListObject or annotation is ListObject:
            self.list_object(value, args[0] if args else Any, path)
        elif isinstance(annotation, type) and issubclass(annotation, StripeObject):
            self.object(value, annotation, path)
        elif annotation is bool:
            if value is not True and value is not False:
                self.add(path, f"expected a boolean, got {value!r}")
        elif annotation is int:
            if type(value) is not int:
                self.add(path, f"expected an integer, got {value!r}")
        elif annotation is float:
            if type(value) not in (int, float):
                self.add(path, f"expected a number, got {value!r}")
        elif annotation is str or annotation is decimal.Decimal:  # decimals are sent as strings
            if not isinstance(value, str):
                self.add(path, f"expected a string, got {value!r}")
        elif isinstance(annotation, typing.TypeVar):
            return
        else:
            self.add(path, f"cannot check the type {annotation!r}")

    def mapping(self, value: Any, annotation: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.add(path, f"expected a hash, got {type(value).__name__}")
            return
        for key, item in value.items():
            self.value(item, annotation, f"{path}.{key}")

    def list_object(self, value: Any, item: Any, path: str) -> None:
        if not isinstance(value, dict) or value.get("object") != "list":
            self.add(path, "expected a list object")
            return
        for key in LIST_FIELDS - set(value):
            self.add(f"{path}.{key}", "missing (required of a list)")
        for key in set(value) - LIST_FIELDS - LIST_EXTRA:
            self.add(f"{path}.{key}", "unknown field of a list")
        if not isinstance(value.get("has_more"), bool) or not isinstance(value.get("url"), str):
            self.add(path, "has_more must be a boolean and url a string")
        for index, element in enumerate(value.get("data") or []):
            self.value(element, item, f"{path}.data[{index}]")

    def union(self, value: Any, args: tuple[Any, ...], path: str) -> None:
        if value is None:
            if type(None) not in args:
                self.add(path, "null, but the field is not nullable")
            return
        literals = [v for a in args if typing.get_origin(a) is Literal for v in typing.get_args(a)]
        others = [a for a in args if a is not type(None) and typing.get_origin(a) is not Literal]
        if literals:
            others = [a for a in others if a is not str]  # the SDK's forward-compatible `str`
            if value in literals:
                return
            if not others:
                self.add(path, f"{value!r} is not one of {sorted(map(str, literals))}")
                return
        if isinstance(value, dict):  # an expanded or polymorphic hash: one of the classes
            others = [a for a in others if a not in (str, int, float, bool)] or others
        attempts = []
        for alternative in others:
            trial = Checker()
            trial.value(value, alternative, path)
            if not trial.problems:
                return
            attempts.append(trial.problems)
        self.problems.extend(min(attempts, key=len))


def problems(obj: Any, path: str | None = None) -> list[str]:
    """What in `obj` (a Stripe object, event or list) differs from the pinned version's classes."""
    checker = Checker()
    _check_any(checker, obj, path or str(obj.get("object")))
    return checker.problems


def _check_any(checker: Checker, obj: Any, path: str) -> None:
    kind = obj.get("object")
    if kind == "list":
        for index, item in enumerate(obj["data"]):
            _check_any(checker, item, f"{path}.data[{index}]")
        return
    cls = object_class(kind)
    if cls is None:
        checker.add(path, f"no class for object {kind!r}")
        return
    checker.object(obj, cls, path)
    if kind == "event":  # the event's object is untyped in the class: check it as its own kind
        _check_any(checker, obj["data"]["object"], f"{path}.data.object")


def expandable_fields(cls: type) -> list[str]:
    """The top-level fields of a class that `expand[]` can turn into objects."""
    found = []
    for name, annotation in fields(cls).items():
        args = typing.get_args(annotation) if typing.get_origin(annotation) is Union else ()
        if str in args and any(isinstance(arg, ForwardRef) for arg in args):
            found.append(name)
    return found


def _classes_in(annotation: Any) -> list[type]:
    if isinstance(annotation, ForwardRef):
        return [_named(annotation.__forward_arg__)]
    if isinstance(annotation, type) and issubclass(annotation, StripeObject):
        return [annotation]
    return [found for arg in typing.get_args(annotation) for found in _classes_in(arg)]


def reachable_classes(roots: tuple[str, ...]) -> dict[str, type]:
    """The classes (and their nested hashes) reachable from `roots`, by qualified name."""
    seen: dict[str, type] = {}
    todo: list[type] = [_named(name) for name in roots]
    while todo:
        cls = todo.pop()
        if _qualname(cls) in seen:
            continue
        seen[_qualname(cls)] = cls
        for annotation in fields(cls).values():
            for found in _classes_in(annotation):
                # other top-level resources are reached only as the sandbox sends them
                nested = "." in _qualname(found) or _qualname(found) in roots
                if nested and _qualname(found) not in seen:
                    todo.append(found)
    return seen


def _is_optional(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (Union, types.UnionType) and type(None) in typing.get_args(annotation)


_BLOCK = re.compile(r"(?:export )?(?:declare )?(interface|namespace) (\w+)(?: extends [^{]+)? \{$")
_FIELD = re.compile(r"(\w+)(\??): (.*)$")


@dataclass(frozen=True)
class NodeField:
    optional: bool  # `field?:` — Stripe may leave it out
    nullable: bool  # `… | null;` — Stripe may send null


def node_fields(package: Path) -> dict[str, dict[str, NodeField]]:
    """`Interface.Path` → its fields, from stripe-node's resource type declarations."""
    found: dict[str, dict[str, NodeField]] = {}
    for path in sorted((package / "cjs" / "resources").glob("*.d.ts")):
        stack: list[tuple[str, str]] = []
        lines = path.read_text().splitlines()
        at = 0
        while at < len(lines):
            line = lines[at]
            text = line.strip()
            indent = len(line) - len(line.lstrip())
            block = _BLOCK.match(text)
            field = _FIELD.match(text)
            if block:
                stack.append((block.group(1), block.group(2)))
            elif text == "}" and stack and indent == 4 * (len(stack) - 1):
                stack.pop()
            elif stack and stack[-1][0] == "interface" and indent == 4 * len(stack) and field:
                declared = field.group(3)
                if not declared.endswith(";"):  # an inline `{ … }`: its last line says `| null`
                    at += 1
                    while not lines[at].startswith(" " * indent + "}"):
                        at += 1
                    declared = lines[at].strip()
                name = ".".join(part for _, part in stack)
                found.setdefault(name, {})[field.group(1)] = NodeField(
                    optional=field.group(2) == "?", nullable=declared.endswith("| null;")
                )
            at += 1
    return found


def main(argv: list[str] | None = None) -> int:
    """Regenerate OPTIONAL_FIELDS_FILE after a stripe upgrade, from stripe-node for the same API
    version: `npm pack stripe@<v> && tar xzf stripe-<v>.tgz`, then
    `.venv/bin/python -m tests.stripe_schema package`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("package", type=Path, help="stripe-node's unpacked package folder")
    args = parser.parse_args(argv)
    version_text = (args.package / "cjs" / "apiVersion.js").read_text()
    node_version = re.search(r"ApiVersion = '([^']+)'", version_text)
    if node_version is None or node_version.group(1) != stripe.api_version:
        print(
            f"error: stripe-node speaks {node_version and node_version.group(1)}, "
            f"the stripe package {stripe.api_version}",
            file=sys.stderr,
        )
        return 2
    declared = node_fields(args.package)
    classes = reachable_classes(SENT_CLASSES)
    # stripe-node names a few classes otherwise
    node_name = {"Event": "EventBase"}
    optional: dict[str, list[str]] = {}
    never_null: dict[str, list[str]] = {}
    for name, cls in sorted(classes.items()):
        node = declared.get(name) or declared.get(node_name.get(name, name)) or {}
        if names := sorted(field for field, found in node.items() if found.optional):
            optional[name] = names
        if names := sorted(
            field
            for field, annotation in fields(cls).items()
            if _is_optional(annotation) and field in node and not node[field].nullable
        ):
            never_null[name] = names
    OPTIONAL_FIELDS_FILE.parent.mkdir(exist_ok=True)
    table = {
        "api_version": stripe.api_version,
        "source": f"stripe-node {_node_package_version(args.package)} (python -m tests.stripe_schema)",
        "optional": optional,
        "never_null": never_null,
    }
    OPTIONAL_FIELDS_FILE.write_text(json.dumps(table, indent=1) + "\n")
    print(
        f"{OPTIONAL_FIELDS_FILE}: {len(optional)} of {len(classes)} classes have optional fields, "
        f"{sum(map(len, never_null.values()))} fields typed Optional that are never null"
    )
    return 0


def _node_package_version(package: Path) -> str:
    return str(json.loads((package / "package.json").read_text())["version"])


if __name__ == "__main__":
    sys.exit(main())
