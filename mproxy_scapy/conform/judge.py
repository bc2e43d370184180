"""One case sent to the packer under test, its answer judged, and a divergence named by the reference
behaviour it breaks first (``rules.BEHAVIOURS``)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ..codec import pack_header
from .oracle import Refused, body_value, chunks_of, expected_events, expected_wire, wire_request
from .packer import PackerFailure, PackerProcess


@dataclass
class Outcome:
    """A case's result: ``behaviour`` is None when the packer agrees with the reference."""

    behaviour: str | None
    detail: str = ""
    expected: Any = None
    actual: Any = None
    stderr: str = ""
    unsupported: bool = False
    failure: str | None = None


def run_case(packer: PackerProcess, request: dict[str, Any]) -> Outcome:
    """Send one case and judge the answer."""
    unpack = request["op"] == "unpack"
    expected: Any = expected_events(chunks_of(request)) if unpack else expected_wire(request)
    try:
        answer = packer.request(wire_request(request))
    except PackerFailure as exc:
        return Outcome("PP14", f"the packer {exc.detail}", expected, None, exc.stderr, failure=exc.kind)
    if unpack:
        if answer.get("unsupported") is True:
            return Outcome(None, "unpack not supported", expected, None, unsupported=True)
        events = answer.get("events")
        if not isinstance(events, list):
            return Outcome("PP14", f"answered {_short(answer)} to unpack, not {{\"events\": [...]}}", expected, None,
                           packer.stderr_text(), failure="garbage")
        if events == expected:
            return Outcome(None, expected=expected, actual=events)
        return Outcome("PP13", _events_detail(expected, events), expected, events)
    actual: bytes | Refused
    if "wire" in answer and isinstance(answer["wire"], str):
        try:
            actual = base64.b64decode(answer["wire"], validate=True)
        except ValueError:
            return Outcome("PP14", f"answered {_short(answer)}: wire is not base64", expected, None,
                           packer.stderr_text(), failure="garbage")
    elif "error" in answer:
        actual = Refused(str(answer["error"]))
    else:
        return Outcome("PP14", f"answered {_short(answer)}, not {{\"wire\": ...}}", expected, None,
                       packer.stderr_text(), failure="garbage")
    if actual == expected:
        return Outcome(None, expected=expected, actual=actual)
    behaviour, detail = classify(request, expected, actual)
    return Outcome(behaviour, detail, expected, actual, packer.stderr_text() if isinstance(actual, Refused) else "")


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _events_detail(expected: list[Any], actual: list[Any]) -> str:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return f"event {index}: the reference delivers {_short(want)}, the packer {_short(got)}"
    return f"the reference delivers {len(expected)} events, the packer {len(actual)}"


def classify(request: dict[str, Any], expected: bytes | Refused, actual: bytes | Refused) -> tuple[str, str]:
    """Which reference behaviour (``rules.BEHAVIOURS``) the packer's different answer breaks first."""
    if isinstance(expected, Refused):
        return "PP12", f"the reference throws ({expected.message}); the packer answered {len(actual)} bytes" \
            if isinstance(actual, bytes) else "the reference throws"
    if isinstance(actual, Refused):
        return "PP15", f"the packer refused ({actual.message}); the reference packs {len(expected)} bytes"
    if actual[:1] != expected[:1]:
        return "PP01", f"version byte {actual[:1].hex() or 'missing'}, the reference writes fe"
    op, service = request["op"], request.get("service")
    header_part = pack_header(request.get("meta"), body_value(request), service, oldways=op == "pack")
    header = header_part[2:]
    body = expected[len(header_part):]
    got_header = actual[2:2 + actual[1]] if len(actual) > 1 else b""
    if got_header.endswith(b"\n") or got_header == header + b"," or actual[2:4 + len(header)] == header + b",\n":
        return "PP10", f"header {got_header!r}: the Go dialect's trailing comma and newline; the reference writes " \
            f"{header!r}"
    if actual[2:2 + len(header)] == header and actual[1:2] != expected[1:2]:
        return "PP02", f"hdrlen byte {actual[1]}, the reference writes {expected[1]} (header {len(header)} bytes)"
    if len(header) > 255 and actual[1:2] != expected[1:2]:
        return "PP02", f"hdrlen byte {actual[1] if len(actual) > 1 else 'missing'} for a {len(header)}-byte header; " \
            f"the reference writes {len(header)} & 0xff = {expected[1]}"
    if got_header != header:
        return _header_behaviour(op, service, header, got_header, body)
    got_body = actual[2 + len(got_header):]
    if body == b" " and got_body == b"":
        return "PP05", "the reference pads the empty body to one space"
    if op == "packHeader" and got_body and not body:
        return "PP06", f"packHeader wrote {len(got_body)} body bytes; the reference writes the header only"
    if request.get("body") is not None and "json" in request["body"]:
        return "PP07", "the body differs from JSON.stringify of the value"
    return "PP11", f"the body differs (the reference's {len(body)} bytes, the packer's {len(got_body)})"


def _header_behaviour(op: str, service: Any, header: bytes, got: bytes, body: bytes) -> tuple[str, str]:
    shown = f"header {got!r}, the reference writes {header!r}"
    if got.endswith(b"\n") or (got.endswith(b",") and not header.endswith(b",")):
        return "PP10", shown
    want_fields, got_fields = header.split(b","), got.split(b",")
    if service == "control":
        return "PP09", shown
    if service == "connection" and (len(got_fields) != len(want_fields) or got_fields[4:5] != [b"connection"]):
        return "PP08", shown
    for index, (want, have) in enumerate(zip(want_fields, got_fields, strict=False)):
        if want != have:
            if index == 3:
                if body == b" " and have == b"0" and op == "pack":
                    return "PP05", f"datalen {have.decode(errors='replace')}: the reference pads the empty body " \
                        "to one space (datalen 1)"
                return "PP04", f"datalen {have.decode(errors='replace')!r}, the reference writes " \
                    f"{want.decode()!r} (body bytes)"
            if index == 7 and service == "connection":
                return "PP08", shown
            return "PP03", f"field {index}: {have!r}, the reference writes {want!r}; {shown}"
    return "PP03", shown


