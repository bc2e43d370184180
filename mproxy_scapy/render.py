"""Decoded records as NDJSON objects and as one-line text, the two forms ``mproxy dissect`` prints.

The JSON key names are a contract, documented for users in docs/NDJSON.md (every
key, type and when it is there; tests/test_ndjson_contract.py holds the two
together): other tools and the Lua comparison read them, so they are listed once
here in ``FRAME_KEYS`` and never renamed. Secrets are redacted unless asked for.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from .decoder import DecodedFrame, StageEvent
from .secrets import redact_control, redact_text, redact_value
from .textout import problems_suffix, safe_text

FRAME_KEYS = (
    "pcap_frame", "ts", "carrier", "tunnel", "direction", "src", "dst", "offset", "length",
    "version", "hdrlen", "family", "address", "port", "datalen", "service", "serviceport", "name",
    "servicename", "kind", "dialect", "client_id", "body_len", "body_sha256", "problems",
)
"""Every decoded frame's JSON object has these keys (plus ``control`` for control frames).

With several inputs every record also starts with ``pcap_file`` (the file's name as given or found in a
directory), and ``pcap_frame`` is the packet's number within that file; with one input the key is absent
and the output is that of earlier versions, byte for byte."""


def frame_json(record: DecodedFrame, *, show_secrets: bool = False) -> dict[str, Any]:
    """The contract object of one decoded record (frames, and garbage/gap records alike)."""
    obj: dict[str, Any] = {} if record.pcap_file is None else {"pcap_file": record.pcap_file}
    obj.update({
        "pcap_frame": record.pcap_frame,
        "ts": record.ts,
        "carrier": record.carrier,
        "tunnel": record.tunnel,
        "direction": record.direction,
        "src": record.src,
        "dst": record.dst,
    })
    obj.update(_frame_fields(record, show_secrets))
    return obj


def _frame_fields(record: DecodedFrame, show_secrets: bool) -> dict[str, Any]:
    """The keys of ``frame_json`` from ``offset`` on: those of the frame itself."""
    frame = record.frame
    obj: dict[str, Any] = {
        "offset": frame.offset,
        "length": frame.length,
        "version": frame.version,
        "hdrlen": frame.hdrlen,
        "family": frame.family,
        "address": frame.address,
        "port": frame.port,
        "datalen": frame.datalen,
        "service": frame.service,
        "serviceport": frame.serviceport,
        "name": frame.name,
        "servicename": frame.servicename,
        "kind": frame.kind,
        "dialect": frame.dialect,
        "client_id": frame.client_id,
        "body_len": frame.body_len,
        "body_sha256": frame.body_sha256,
        "problems": [p.to_json() for p in frame.problems],
    }
    if frame.kind == "control":
        control = frame.control
        obj["control"] = control if show_secrets else redact_control(control)
        if record.reply_to is not None:
            obj["reply_to"] = record.reply_to
            obj["reply_time"] = record.reply_time
    elif frame.kind == "error" and frame.control is not None:
        obj["error"] = frame.control if show_secrets else redact_value(frame.control)
    return obj


def event_json(event: StageEvent, *, show_secrets: bool = False) -> dict[str, Any]:
    """A stage event (capture, TCP or carrier) as a record that says it is not a frame: kind ``stage``."""
    detail = event.detail if show_secrets else redact_text(event.detail)
    obj: dict[str, Any] = {} if event.pcap_file is None else {"pcap_file": event.pcap_file}
    obj.update({
        "pcap_frame": event.pcap_frame,
        "ts": event.ts,
        "tunnel": event.tunnel,
        "direction": event.direction,
        "src": event.src,
        "dst": event.dst,
        "kind": "stage",
        "stage": event.stage,
        "event": event.kind,
        "nbytes": event.nbytes,
        "problems": [{"kind": f"{event.stage}.{event.kind}", "detail": detail}] if event.is_problem else [],
    })
    return obj


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), check_circular=False)
"""Records are fresh trees (decoded control JSON included), never cyclic: the cycle check is skipped."""


def to_ndjson(obj: dict[str, Any]) -> str:
    """One NDJSON line (without the newline); non-ASCII text stays readable."""
    return _ENCODER.encode(obj)


def frame_ndjson(record: DecodedFrame, *, show_secrets: bool = False) -> str:
    """``to_ndjson(frame_json(record))``, the same text, made faster for ``dissect --json``.

    The carrier, tunnel, direction and endpoint keys are the same for every
    record of a tunnel direction, so their text is encoded once
    (``_tunnel_keys``); the packet number and time are ints and floats, whose
    JSON text is their ``repr``. Only the frame's own keys go through the encoder.
    """
    pcap_frame, ts = record.pcap_frame, record.ts
    if type(pcap_frame) is not int or type(ts) is not float or not math.isfinite(ts):
        return _ENCODER.encode(frame_json(record, show_secrets=show_secrets))
    middle = _tunnel_keys(record.carrier, record.tunnel, record.direction, record.src, record.dst)
    fields = _ENCODER.encode(_frame_fields(record, show_secrets))
    if record.pcap_file is not None:
        return (f'{{"pcap_file": {_file_key(record.pcap_file)}, "pcap_frame": {pcap_frame!r}, "ts": {ts!r}, '
                f'{middle}, {fields[1:]}')
    return f'{{"pcap_frame": {pcap_frame!r}, "ts": {ts!r}, {middle}, {fields[1:]}'


@functools.lru_cache(maxsize=1024)
def _tunnel_keys(carrier: str, tunnel: int, direction: int, src: str, dst: str) -> str:
    """The JSON text of ``frame_json``'s keys from ``carrier`` to ``dst``, without braces."""
    keys = {"carrier": carrier, "tunnel": tunnel, "direction": direction, "src": src, "dst": dst}
    return _ENCODER.encode(keys)[1:-1]


@functools.lru_cache(maxsize=256)
def _file_key(name: str) -> str:
    return _ENCODER.encode(name)


def _packet(pcap_file: str | None, pcap_frame: int) -> str:
    """The packet column of a text line: the number, after ``file:`` when several inputs are read."""
    return f"{pcap_frame:>6}" if pcap_file is None else f"{safe_text(pcap_file)}:{pcap_frame}"


_ARROWS = ("→", "←")


def frame_line(record: DecodedFrame, first_ts: float, *, show_secrets: bool = False) -> str:
    """``No. Time Src -> Dst [tN] kind client service/name datalen=N [problems]``, like a tshark line."""
    frame = record.frame
    parts = [_packet(record.pcap_file, record.pcap_frame), f"{record.ts - first_ts:>11.6f}",
             f"{record.src} {_ARROWS[0]} {record.dst}", f"t{record.tunnel}{_ARROWS[record.direction]}",
             frame.kind]
    if frame.kind == "control":
        parts.append(_control_summary(record, show_secrets))
    elif frame.is_frame:
        parts.append(safe_text(frame.client_id))
        service = {"data": frame.service, "connection": frame.servicename}.get(frame.kind)
        where = safe_text(service or "")
        if frame.name:
            where = f"{where}/{safe_text(frame.name)}" if where else safe_text(frame.name)
        if where:
            parts.append(where)
        parts.append(f"datalen={frame.datalen if frame.datalen is not None else '?'}")
        if frame.kind == "error" and frame.control is not None:
            shown = frame.control if show_secrets else redact_value(frame.control)
            parts.append(safe_text(json.dumps(shown, ensure_ascii=False)))
        elif frame.kind in ("pause", "resume") and frame.body:
            parts.append(safe_text(frame.body.decode("utf-8", "replace")))
        if frame.dialect == "go":
            parts.append("[go]")
    else:
        parts.append(f"{frame.length} bytes")
    return " ".join(parts) + problems_suffix(frame.problems)


def _control_summary(record: DecodedFrame, show_secrets: bool) -> str:
    control = record.frame.control
    if control is None:
        body = record.frame.body or b""
        text = body.decode("utf-8", "replace")
        return safe_text(text if show_secrets else redact_text(text))
    shown = control if show_secrets else redact_control(control)
    text = safe_text(json.dumps(shown, ensure_ascii=False))
    if record.reply_to is not None and record.reply_time is not None:
        text += f" (reply to #{record.reply_to} after {record.reply_time:.6f}s)"
    return text


def event_line(event: StageEvent, first_ts: float, *, show_secrets: bool = False) -> str:
    """A stage problem as a line in the same columns as frames."""
    ts = f"{event.ts - first_ts:>11.6f}" if event.ts is not None else " " * 11
    number = _packet(event.pcap_file, event.pcap_frame) if event.pcap_frame is not None else " " * 6
    where = f"{event.src} {_ARROWS[0]} {event.dst} t{event.tunnel}" if event.tunnel is not None else "capture"
    detail = event.detail if show_secrets else redact_text(event.detail)
    return f"{number} {ts} {where} {event.stage} [{event.kind}: {safe_text(detail)}]"
