"""Pieces every transformer uses: expandable references, timestamps, the shared columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.core.errors import TransformError

Row = dict[str, Any]
StripeDict = dict[str, Any]


def ref_id(value: Any) -> str | None:
    """The id behind an expandable field: an id string, an expanded object, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return _checked_id(value) or None
    if isinstance(value, dict):
        found = value.get("id")
        return _checked_id(found) if isinstance(found, str) and found else None
    raise TypeError(f"expected an id, an object or null, got {type(value).__name__}")


MAX_ID_LENGTH = 255  # the id columns' width; Stripe's ids are far shorter


def _checked_id(value: str) -> str:
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"an id of {len(value)} characters (at most {MAX_ID_LENGTH})")
    return value


def timestamp(value: Any) -> datetime | None:
    """Stripe's Unix seconds as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a Unix timestamp, got {value!r}")
    return datetime.fromtimestamp(value, tz=UTC)


def dig(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]…, or None as soon as a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def stripe_columns(resource: str, obj: Any, expected_object: str) -> Row:
    """Check the envelope of one object and return the columns every Stripe table has."""
    if not isinstance(obj, dict):
        raise TransformError(resource, None, f"expected a JSON object, got {type(obj).__name__}")
    object_id = obj.get("id")
    if not isinstance(object_id, str) or not object_id:
        raise TransformError(resource, None, "the object has no string `id`")
    if len(object_id) > MAX_ID_LENGTH:
        raise TransformError(
            resource, object_id[:40] + "…", f"an id of {len(object_id)} characters (at most 255)"
        )
    kind = obj.get("object")
    if kind is not None and kind != expected_object:
        raise TransformError(
            resource, object_id, f"`object` is {kind!r}, expected {expected_object!r}"
        )
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise TransformError(resource, object_id, "`metadata` is not an object")
    return {
        "id": object_id,
        "livemode": obj.get("livemode"),
        "created": timestamp(obj.get("created")),
        "metadata": metadata if metadata is not None else {},
        "raw": obj,
        "deleted": _deleted_flag(obj.get("deleted")),
    }


def _deleted_flag(value: Any) -> bool:
    """`deleted` is true, false or absent: a "false" string must not delete a row."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise TypeError(f"`deleted` must be true or false, got {value!r:.80}")


def amount(value: Any) -> int | None:
    """Money in minor units; Stripe sends integers, anything else is refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer amount in minor units, got {value!r}")
    return value


def transformer(resource: str) -> Any:
    """Turn a field-level TypeError/ValueError into a TransformError naming the object."""

    def wrap(func: Any) -> Any:
        def transform(obj: Any) -> Row:
            try:
                return func(obj)
            except TransformError:
                raise
            except (
                TypeError,
                ValueError,
                AttributeError,
                LookupError,
                ArithmeticError,
                OSError,
            ) as exc:
                object_id = obj.get("id") if isinstance(obj, dict) else None
                raise TransformError(resource, object_id, str(exc)) from exc

        transform.__name__ = func.__name__
        transform.__doc__ = func.__doc__
        transform.__wrapped__ = func  # type: ignore[attr-defined]
        return transform

    return wrap
