"""Hiding the credentials a tunnel capture holds, in every output unless the user asks.

M-PROXY tunnels carry bearer tokens in three places: arguments of control
commands (``auth``, ``add_token``, ...; spec.SECRET_COMMANDS), the
``access_token=`` query of the WebSocket upgrade URL, and ``Authorization``
headers. A capture handed to an analyst should not leak them into a terminal,
a report or a ticket, so redaction is the default and ``--show-secrets`` the
exception.

Two forms: structured values (control JSON, carrier info) get
``spec.REDACTED`` in place of the secret; byte streams that must keep their
length (``follow`` and ``detunnel`` output, where TCP sequence numbers count
bytes) get each secret character replaced by ``*``.
"""

from __future__ import annotations

import re
from typing import Any

from .spec import REDACTED, SECRET_COMMANDS

_JWT = r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
_JWT_RE = re.compile(_JWT)
_JWT_BYTES = re.compile(_JWT.encode())
_ACCESS_TOKEN_RE = re.compile(r"(access_token=)([^&#\s\"']+)", re.IGNORECASE)
_ACCESS_TOKEN_BYTES = re.compile(rb"(access_token=)([^&#\s\"']+)", re.IGNORECASE)
_AUTH_HEADER_RE = re.compile(r"(authorization:[ \t]*(?:[A-Za-z]+[ \t]+)?)([^\r\n]+)", re.IGNORECASE)
_AUTH_HEADER_BYTES = re.compile(rb"(authorization:[ \t]*(?:[A-Za-z]+[ \t]+)?)([^\r\n]+)", re.IGNORECASE)


def _value_redacted(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def redact_text(text: str) -> str:
    """Text with access tokens in URLs, Authorization header values and JWT-looking strings replaced."""
    if not text:
        return text
    text = _ACCESS_TOKEN_RE.sub(_value_redacted, text)
    text = _AUTH_HEADER_RE.sub(_value_redacted, text)
    return _JWT_RE.sub(REDACTED, text)


def redact_value(value: Any) -> Any:
    """A JSON-like value with every string passed through ``redact_text`` (keys of mappings too)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {redact_text(str(k)): _redact_mapping_value(str(k), v) for k, v in value.items()}
    return value


def _redact_mapping_value(key: str, value: Any) -> Any:
    if key.lower() in ("authorization", "access_token", "token", "jwt") and isinstance(value, str) and value:
        return REDACTED
    return redact_value(value)


def redact_control(message: Any) -> Any:
    """A decoded control body ``[id, command, *args]``: a secret command's arguments hidden entirely.

    Anything else (replies, other commands) keeps its shape with JWT-looking
    strings hidden, since a reply can hand out a token too.
    """
    if not isinstance(message, list):
        return redact_value(message)
    if len(message) >= 3 and isinstance(message[1], str) and message[1] in SECRET_COMMANDS:
        return [message[0], message[1], *(REDACTED for _ in message[2:])]
    return redact_value(message)


def _mask(match: re.Match[bytes]) -> bytes:
    return match.group(1) + b"*" * len(match.group(2))


def mask_bytes(data: bytes) -> bytes:
    """``data`` with the same secrets overwritten by ``*``, the length unchanged."""
    data = _ACCESS_TOKEN_BYTES.sub(_mask, data)
    data = _AUTH_HEADER_BYTES.sub(_mask, data)
    return _JWT_BYTES.sub(lambda m: b"*" * len(m.group(0)), data)

