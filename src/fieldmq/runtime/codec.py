"""The payload codec: JSON first, falling back to the raw value (seed 04).

Most device messages are either one value (``21.5``, ``"open"``) or a small record
(``{"t": 21.5, "rh": 40}``). JSON covers both, so :func:`encode` writes JSON for
numbers, booleans, ``None``, lists and dicts; a ``str`` is written as its UTF-8
text so a human (or ``mosquitto_sub``) reads ``open`` rather than ``"open"``; bytes
are written unchanged.

:func:`decode` reverses it: JSON if the payload parses as JSON, else the UTF-8
text, else the bytes exactly as received. One consequence is worth knowing: a
string that *looks* like JSON (``"42"``, ``"true"``) comes back as the JSON value;
pass ``as_json=True`` to :func:`encode` when the receiver must get the string back.
``NaN`` and infinities are not JSON: encoding them raises, and a payload ``NaN``
decodes as the text ``"NaN"``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["decode", "encode"]


def encode(value: Any, *, as_json: bool = False) -> bytes:
    """Bytes for ``value``: bytes unchanged, ``str`` as UTF-8 text (or as a JSON
    string with ``as_json=True``), anything else as compact JSON."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str) and not as_json:
        return value.encode("utf-8")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise TypeError(
            f"cannot encode a {type(value).__name__} as a payload: use bytes, str, a number, "
            "a bool, None, or lists/dicts of those"
        ) from exc
    except ValueError as exc:
        raise ValueError(f"cannot encode {value!r}: NaN and infinity are not JSON") from exc
    return text.encode("utf-8")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(payload: bytes | bytearray | memoryview) -> Any:
    """The value in ``payload``: parsed JSON, else UTF-8 text, else the exact bytes."""
    data = bytes(payload)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text
