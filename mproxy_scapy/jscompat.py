"""JavaScript value semantics that proxy-packer's output depends on.

The reference builds headers with ``Array.join`` and ``||`` and bodies with
``JSON.stringify``; matching it byte for byte means matching how JavaScript
turns values into text, which differs from Python's ``str`` and ``json``.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

BYTES_LIKE = (bytes, bytearray, memoryview)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_JS_PARSEINT = re.compile(r"[\s\ufeff]*([+-]?)(\d+)")


def is_truthy(value: Any) -> bool:
    """JavaScript truthiness: empty lists, dicts and buffers are true there."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def number_to_string(value: float | int) -> str:
    """ECMAScript ``Number::toString`` (shortest round-trip digits, JS exponent rules)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10**21:
            return str(value)
        value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = int(exponent) + k
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def to_string(value: Any) -> str:
    """``String(value)`` as ``Array.prototype.join`` applies it (null and undefined are empty)."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return number_to_string(value)
    if isinstance(value, BYTES_LIKE):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return ",".join(to_string(v) for v in value)
    return str(value)


def concat_string(value: Any) -> str:
    """String concatenation (``a + ','``): unlike ``join``, None becomes ``'null'``."""
    if value is None:
        return "null"
    return to_string(value)


def _escape_lone_surrogates(text: str) -> str:
    paired = text.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", paired)


def _stringify(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, (int, float)):
        out.append(number_to_string(value) if math.isfinite(value) else "null")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, BYTES_LIKE):
        out.append('{"type":"Buffer","data":[' + ",".join(map(str, bytes(value))) + "]}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _stringify(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(to_string(key), ensure_ascii=False) + ":")
            _stringify(item, out)
        out.append("}")
    else:
        raise TypeError(f"JSON.stringify: cannot serialise {type(value).__name__}")


def json_stringify(value: Any) -> str:
    """``JSON.stringify(value)``: compact, non-ASCII kept, JS number text, Buffers as ``{type, data}``."""
    out: list[str] = []
    _stringify(value, out)
    return _escape_lone_surrogates("".join(out))


def encode_utf8(text: str) -> bytes:
    """``Buffer.from(string)``: lone surrogates become U+FFFD, as in Node."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        paired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return paired.encode("utf-8", errors="replace")


def parse_int(text: str | None) -> int | None:
    """``parseInt(text, 10)``: leading white space, a sign, the leading digits; None for NaN."""
    if text is None:
        return None
    m = _JS_PARSEINT.match(text)
    if not m:
        return None
    number = int(m.group(2))
    return -number if m.group(1) == "-" else number


MAX_JSON_DEPTH = 200
"""Deeper JSON is refused: V8 parses it, but what reads a value here (redaction, rendering, the Scapy layer)
recurses once or more per level, and Python's stack is about 1000 frames deep."""


def json_parse(text: str) -> Any:
    """``JSON.parse``: like ``json.loads`` but without Python's NaN and Infinity extensions.

    A number beyond a double (``1e999999``) is Infinity in JavaScript, which ``JSON.stringify``
    writes as ``null``: it is None here, so whatever re-serialises the value stays JSON.

    Nesting deeper than ``MAX_JSON_DEPTH`` is a ``ValueError`` too, so hostile input cannot make a
    reader of the value raise ``RecursionError``.
    """

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def finite_or_null(number: str) -> float | None:
        value = float(number)
        return value if math.isfinite(value) else None

    try:
        value = json.loads(text, parse_constant=reject_constant, parse_float=finite_or_null)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)
    return value
