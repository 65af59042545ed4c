"""Stripe's form encoding: `items[0][price]=x&expand[]=y&metadata[k]=v` to nested dicts and lists.

Values stay strings, as on the wire; the `as_*` readers coerce them and raise Stripe's 400 with
the offending `param` when they cannot. Hostile input gets the same 400, never a 500: the decoder
refuses invalid percent-escapes, bytes that are not UTF-8 (lone surrogates such as `%ED%A0%80`
included), the NUL character, names that are not `name[part][part]…`, nesting deeper than
`MAX_DEPTH` and more than `MAX_PARAMS` parameters.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from app.sandbox.errors import InvalidRequestError

Params = dict[str, Any]

# Brackets after the name (`a[b][c]` is 2). Stripe's deepest parameters need about 6
# (`subscription_data[items][0][price_data][recurring][interval]`); metadata is flat.
MAX_DEPTH = 20
# `name=value` pairs in one query string or one body; Stripe's biggest requests (50 metadata
# keys, 20 items of a few fields, expand[]) use a few hundred.
MAX_PARAMS = 1000
# Integers are 64-bit, as in Stripe's API.
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)

_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_KEY_PART = re.compile(r"\[([^\]]*)\]")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_INTEGER = re.compile(r"-?[0-9]+")


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _unquote(raw: bytes, name: str | None) -> str:
    """One percent-encoded name or value as text; `name` (None for a name itself) is the param."""
    where = f"parameter {_shown(name)}" if name is not None else "a parameter name"
    if _BAD_ESCAPE.search(raw):
        raise InvalidRequestError(
            f"Invalid percent-encoding in {where}: `%` must be followed by two hex digits.",
            param=name,
        )
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(
            f"Invalid UTF-8 in {where}: the request must be UTF-8 (without lone surrogates).",
            param=name,
        ) from None
    if "\x00" in text:
        raise InvalidRequestError(
            f"Invalid string in {where}: the NUL character (U+0000) is not allowed.",
            code="parameter_invalid_string",
            param=name,
        )
    return text


def _split_key(key: str) -> list[str]:
    match = _NAME.fullmatch(key)
    if match is None:
        raise InvalidRequestError(
            f"Invalid parameter name: {_shown(key)!r} (expected name[key][key]…, without "
            "brackets inside a key).",
            param=_shown(key),
        )
    head, brackets = match.groups()
    parts = [head, *_KEY_PART.findall(brackets)]
    if len(parts) - 1 > MAX_DEPTH:
        raise InvalidRequestError(
            f"Invalid {head}: parameters may be nested at most {MAX_DEPTH} levels deep.",
            param=head,
        )
    return parts


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit()


def _index_order(key: str) -> tuple[int, str]:
    # by numeric value without int(): huge indexes are valid keys, not integers to convert
    digits = key.lstrip("0")
    return len(digits), digits


def _listify(node: Any) -> Any:
    # Containers are built as dicts; those whose keys are all indexes become lists, so that
    # `items[0][price]` and `expand[]` read the way Stripe means them.
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(_is_index(k) for k in converted):
        return [converted[k] for k in sorted(converted, key=_index_order)]
    return converted


def decode_form(data: bytes | str) -> Params:
    """Decode a form-encoded body or query string into nested params (400 on malformed input).

    Text is taken as its UTF-8 bytes; a lone surrogate in it is refused like its bytes would be.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    pairs = [pair for pair in raw.split(b"&") if pair]
    if len(pairs) > MAX_PARAMS:
        raise InvalidRequestError(
            f"Too many parameters: at most {MAX_PARAMS} are accepted in one query string or body."
        )
    root: dict[str, Any] = {}
    for pair in pairs:
        raw_key, _, raw_value = pair.partition(b"=")
        key = _unquote(raw_key, None)
        value = _unquote(raw_value, _shown(key))
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
                    f"Invalid value for {parts[0]}: mixes a scalar and a hash.", param=_shown(key)
                )
            node = child
    # the top level stays a dict even when every name is a number (`0=x`)
    return {name: _listify(value) for name, value in root.items()}


def param_name(prefix: str, key: str) -> str:
    """The wire name of `key` nested under `prefix` (`items[0][` + `price` → `items[0][price]`).

    Prefixes are written as they open (`card[`, `default_price_data[recurring[`); the name has
    every bracket closed, as Stripe's error `param` names it.
    """
    if not prefix:
        return key
    head, *rest = [part for part in re.split(r"[\[\]]+", prefix) if part]
    return head + "".join(f"[{part}]" for part in [*rest, key])


def as_str(params: Params, key: str, *, required: bool = False, prefix: str = "") -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise InvalidRequestError(
                f"Missing required param: {param_name(prefix, key)}.",
                code="parameter_missing",
                param=param_name(prefix, key),
            )
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"Invalid string: {param_name(prefix, key)}",
            code="parameter_invalid_string",
            param=param_name(prefix, key),
        )
    return value


def as_int(
    params: Params,
    key: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    prefix: str = "",
) -> int | None:
    value = as_str(params, key, required=required, prefix=prefix)
    if value is None or value == "":
        if required:
            raise InvalidRequestError(
                f"Missing required param: {param_name(prefix, key)}.",
                code="parameter_missing",
                param=param_name(prefix, key),
            )
        return None
    # ASCII digits only (int() would take "1_000", " 7 " and other scripts' digits), 64-bit
    number = int(value) if _INTEGER.fullmatch(value) and len(value) <= 20 else None
    if number is None or not MIN_INT <= number <= MAX_INT:
        raise InvalidRequestError(
            f"Invalid integer: {_shown(value)}",
            code="parameter_invalid_integer",
            param=param_name(prefix, key),
        )
    if minimum is not None and number < minimum:
        raise InvalidRequestError(
            f"Invalid {param_name(prefix, key)}: must be at least {minimum}",
            code="parameter_invalid_integer",
            param=param_name(prefix, key),
        )
    if maximum is not None and number > maximum:
        raise InvalidRequestError(
            f"Invalid {param_name(prefix, key)}: must be at most {maximum}",
            code="parameter_invalid_integer",
            param=param_name(prefix, key),
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
        f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=param_name(prefix, key)
    )


def as_dict(params: Params, key: str, *, prefix: str = "") -> dict[str, Any] | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f"Invalid object: {param_name(prefix, key)}",
            code="parameter_invalid_hash",
            param=param_name(prefix, key),
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
            f"Invalid array: {param_name(prefix, key)}",
            code="parameter_invalid_array",
            param=param_name(prefix, key),
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
