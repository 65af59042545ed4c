"""Stripe's form encoding: `items[0][price]=x&expand[]=y&metadata[k]=v` to nested dicts and lists.

Values stay strings, as on the wire; the `as_*` readers coerce them and raise Stripe's 400 with
the offending `param` when they cannot.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from app.sandbox.errors import InvalidRequestError

Params = dict[str, Any]

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def _split_key(key: str) -> list[str]:
    head, bracket, _ = key.partition("[")
    if not bracket:
        return [key]
    return [head, *_KEY_PART.findall(key[len(head) :])]


def _listify(node: Any) -> Any:
    # Containers are built as dicts; those whose keys are all indexes become lists, so that
    # `items[0][price]` and `expand[]` read the way Stripe means them.
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def decode_form(text: str) -> Params:
    """Decode a form-encoded body or query string into nested params."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = _split_key(key)
        node = root
        for depth, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if depth == len(parts) - 1:
                node[part] = value
                break
            child = node.get(part)
            if child is None or child == "":
                child = {}
                node[part] = child
            elif not isinstance(child, dict):
                raise InvalidRequestError(
                    f"Invalid value for {parts[0]}: mixes a scalar and a hash.", param=key
                )
            node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def as_str(params: Params, key: str, *, required: bool = False, prefix: str = "") -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise InvalidRequestError(
                f"Missing required param: {prefix}{key}.",
                code="parameter_missing",
                param=prefix + key,
            )
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"Invalid string: {prefix}{key}", code="parameter_invalid_string", param=prefix + key
        )
    return value


def as_int(
    params: Params,
    key: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    prefix: str = "",
) -> int | None:
    value = as_str(params, key, required=required, prefix=prefix)
    if value is None or value == "":
        if required:
            raise InvalidRequestError(
                f"Missing required param: {prefix}{key}.",
                code="parameter_missing",
                param=prefix + key,
            )
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid integer: {value}", code="parameter_invalid_integer", param=prefix + key
        ) from None
    if minimum is not None and number < minimum:
        raise InvalidRequestError(
            f"Invalid {prefix}{key}: must be at least {minimum}",
            code="parameter_invalid_integer",
            param=prefix + key,
        )
    return number


def as_bool(params: Params, key: str, *, prefix: str = "") -> bool | None:
    value = as_str(params, key, prefix=prefix)
    if value is None:
        return None
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise InvalidRequestError(
        f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=prefix + key
    )


def as_dict(params: Params, key: str, *, prefix: str = "") -> dict[str, Any] | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid object: {prefix}{key}", code="parameter_invalid_hash", param=prefix + key
        )
    return value


def as_list(params: Params, key: str, *, prefix: str = "") -> list[Any]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid array: {prefix}{key}", code="parameter_invalid_array", param=prefix + key
        )
    return list(value)


def merged_metadata(current: dict[str, Any], params: Params) -> dict[str, Any] | None:
    """Stripe's metadata update: keys merge, an empty value deletes a key, `metadata=` clears all."""
    if "metadata" not in params:
        return None
    raw = params["metadata"]
    if raw == "":
        return {}
    update = as_dict(params, "metadata") or {}
    result = dict(current)
    for key, value in update.items():
        if not isinstance(value, str):
            raise InvalidRequestError(
                f"Invalid metadata[{key}]: must be a string", param=f"metadata[{key}]"
            )
        if value == "":
            result.pop(key, None)
        else:
            result[key] = value
    return result
