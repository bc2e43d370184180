"""Redaction of bearer tokens: control arguments, access_token URLs, Authorization headers, JWTs."""

from __future__ import annotations

from mproxy_scapy.secrets import mask_bytes, redact_control, redact_text, redact_value
from mproxy_scapy.spec import REDACTED, SECRET_COMMANDS

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXZpY2UifQ.c2lnbmF0dXJlX2hlcmU"


def test_every_secret_command_has_its_arguments_hidden():
    for command in SECRET_COMMANDS:
        assert redact_control([3, command, "plain-token", {"x": 1}]) == [3, command, REDACTED, REDACTED]


def test_other_commands_keep_their_arguments_but_not_jwts():
    hello = [1, "hello", 254, ["add_token", "delete_token"]]
    assert redact_control(hello) == hello
    assert redact_control([-2, {"token": JWT, "note": f"use {JWT}"}]) == [-2, {"token": REDACTED,
                                                                               "note": f"use {REDACTED}"}]


def test_access_token_in_a_url_and_authorization_header():
    assert redact_text(f"/?access_token={JWT}&versions=v1") == f"/?access_token={REDACTED}&versions=v1"
    assert redact_text("Authorization: Bearer abc.def") == f"Authorization: Bearer {REDACTED}"
    assert redact_value({"path": "/ws?access_token=xyz", "Authorization": "Basic Zm9v"}) == {
        "path": f"/ws?access_token={REDACTED}", "Authorization": REDACTED}


def test_text_without_secrets_is_unchanged():
    assert redact_text("GET /index.html HTTP/1.1") == "GET /index.html HTTP/1.1"
    assert redact_control(None) is None


def test_mask_bytes_keeps_the_length_and_the_rest():
    data = (b"GET /?access_token=" + JWT.encode() + b"&v=1 HTTP/1.1\r\nauthorization: Bearer tok3n\r\n"
            b"X-Other: " + JWT.encode() + b"\r\n\r\n")
    masked = mask_bytes(data)
    assert len(masked) == len(data)
    assert JWT.encode() not in masked and b"tok3n" not in masked
    assert masked.startswith(b"GET /?access_token=***")
    assert b"&v=1 HTTP/1.1\r\nauthorization: Bearer *****\r\n" in masked
    assert mask_bytes(b"\x16\x03\x01 binary") == b"\x16\x03\x01 binary"
