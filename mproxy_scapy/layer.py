"""The Scapy ``MProxy`` layer: M-PROXY frames in a Scapy shell, in pcaps and in ``TCPSession``.

The fields come from ``spec.WIRE_FIELDS``. The comma header is text, so, as
Scapy's HTTP layer does, ``do_dissect`` reads it itself (through the shared
``header.ParsedHeader``, so splitting, trimming and the Go dialect are the
codec's rules) and sets each field with ``setfieldval``; ``post_build``
renders it back. The body is bounded to ``datalen`` by ``extract_padding``;
bytes after it dissect as the next ``MProxy`` (a chain). A body goes to
``MProxyControl`` / ``MProxyError`` (decoded JSON), Scapy's TLS or HTTP
layer, or ``Raw``.

Nothing is bound to TCP by default (M-PROXY has no port of its own and
telebit runs it on 443 under TLS): call ``bind(port)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from scapy.config import conf
from scapy.fields import ByteField, ConditionalField, Field, XByteField
from scapy.layers.inet import TCP
from scapy.packet import Packet, bind_bottom_up, bind_layers, split_bottom_up, split_layers

from . import jscompat
from .header import ParsedHeader
from .parser import Frame, iter_frames
from .spec import (
    CONTROL_FIELDS,
    DATA_KIND,
    HEADER_FIELDS,
    MESSAGE_KINDS,
    MIN_HEADER_FIELDS,
    PROTOCOL_TITLE,
    REDACTED,
    SECRET_COMMANDS,
    VERSION_1_BYTE,
    WIRE_FIELDS,
)

__all__ = ["MProxy", "MProxyControl", "MProxyError", "bind", "unbind"]

_HEADER_ATTRS = tuple(f.attr for f in HEADER_FIELDS)
_NUMERIC_ATTRS = frozenset(f.attr for f in HEADER_FIELDS if f.ftype.startswith("uint"))
_SPEC_BY_KEY = {f.key: f for f in WIRE_FIELDS}
_CONTROL_ATTR = {f.key: f.attr for f in CONTROL_FIELDS}
_ID, _COMMAND, _ARGS = (_CONTROL_ATTR[k] for k in ("control.id", "control.command", "control.args"))
_TLS_CONTENT_TYPES = frozenset(range(20, 25))
_GO_SUFFIX = ",\n"

_REFERENCE_FIELD_COUNT = {"control": MIN_HEADER_FIELDS, "connection": len(HEADER_FIELDS)}
"""How many header fields proxy-packer writes for a kind (7 for everything else)."""
_DATA_FIELD_COUNT = len(HEADER_FIELDS) - 1


class _InfoField(Field[Any, bytes]):
    """A field that is shown but never written: the header text is rendered as a whole in ``post_build``."""

    islist = 1

    def __init__(self, name: str, default: Any) -> None:
        super().__init__(name, default, fmt="B")

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        return s, self.default

    def i2len(self, pkt: Packet, x: Any) -> int:
        return 0


class HeaderTextField(_InfoField):
    """One comma-separated header field: text, or None where the header stops before it."""

    islist = 0

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if isinstance(x, (bytes, bytearray)):
            return bytes(x).decode("utf-8", "replace")
        return x


class HeaderNumberField(HeaderTextField):
    """A header field that travels as decimal text but is a number.

    Canonical decimal text is held as an int so it shows and compares as a
    number; anything else (``""``, ``"0443"``, ``"abc"``) stays text so the
    header renders back exactly as it was.
    """

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        x = super().any2i(pkt, x)
        if isinstance(x, str) and x.isascii() and x.isdigit() and str(int(x)) == x:
            return int(x)
        return x


class ProblemsField(_InfoField):
    """What is wrong with the frame, as ``kind: detail`` lines (names from ``spec.PROBLEMS``)."""

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return "; ".join(x) if x else "none"


def _header_field(spec_key: str) -> Field[Any, Any]:
    spec = _SPEC_BY_KEY[spec_key]
    cls = HeaderNumberField if spec.attr in _NUMERIC_ATTRS else HeaderTextField
    return cls(spec.attr, None)


def _has(attr: str) -> Any:
    return lambda pkt: pkt.getfieldval(attr) is not None


def _looks_like_tls(body: bytes) -> bool:
    return len(body) >= 5 and body[0] in _TLS_CONTENT_TYPES and body[1] == 3 and body[2] <= 4


def _scapy_class(module: str, name: str) -> type[Packet]:
    """TLS and HTTP are imported on first use: most M-PROXY bodies need neither."""
    return getattr(importlib.import_module(module), name)


class MProxy(Packet):
    """One M-PROXY frame: ``0xFE``, hdrlen, the comma header, then ``datalen`` body bytes."""

    name = PROTOCOL_TITLE
    fields_desc = [
        XByteField(_SPEC_BY_KEY["version"].attr, VERSION_1_BYTE),
        ByteField(_SPEC_BY_KEY["hdrlen"].attr, None),
        *(
            ConditionalField(_header_field(f.key), _has(f.attr)) if f.key == "servicename" else _header_field(f.key)
            for f in HEADER_FIELDS
        ),
        HeaderTextField("dialect", "js"),
        ConditionalField(ProblemsField("problems", []), lambda pkt: bool(pkt.getfieldval("problems"))),
    ]

    # -- dissection -------------------------------------------------------------------------------

    def do_dissect(self, s: bytes) -> bytes:
        if len(s) < 2:
            self.setfieldval("version", s[0] if s else None)
            self.setfieldval("problems", [])
            self._note_truncated(2 - len(s), "the version and hdrlen bytes")
            return self._dissected(s, b"")
        hdrlen = s[1]
        header_end = 2 + hdrlen
        if len(s) < header_end:
            complete = s[2:].rpartition(b",")[0]
            problems: list[str] | None = []
            if complete:
                self._load_header(s[0], hdrlen, complete, problems)
            else:
                self.setfieldval("version", s[0])
                self.setfieldval("hdrlen", hdrlen)
                self.setfieldval("problems", problems)
            self._note_truncated(header_end - len(s), "the header (only its complete fields are shown)")
            return self._dissected(s, b"")
        self._load_header(s[0], hdrlen, s[2:header_end], None)
        body_len = self.declared_body_len
        if body_len is not None and len(s) < header_end + body_len:
            self._note_truncated(header_end + body_len - len(s), "the body")
        return self._dissected(s[:header_end], s[header_end:])

    def _dissected(self, raw: bytes, rest: bytes) -> bytes:
        """Keep the bytes read, so an unchanged dissected frame builds back to exactly them."""
        self.raw_packet_cache = raw
        self.raw_packet_cache_fields = {}
        self.explicit = 1
        return rest

    def _load_header(self, version: int, hdrlen: int, raw: bytes, problems: list[str] | None) -> None:
        """Set every field from one header, through the parser shared with the codec.

        ``problems`` None means: name what is wrong with this header.
        """
        parsed = ParsedHeader(raw)
        self.setfieldval("version", version)
        self.setfieldval("hdrlen", hdrlen)
        for attr, key in zip(_HEADER_ATTRS, (f.key for f in HEADER_FIELDS), strict=True):
            self.setfieldval(attr, parsed.values[key])
        self.setfieldval("dialect", parsed.dialect)
        if problems is None:
            problems = [str(p) for p in Frame.from_header(0, version, hdrlen, parsed).problems]
        self.setfieldval("problems", list(problems))

    def _note_truncated(self, missing: int, part: str) -> None:
        self.getfieldval("problems").append(f"truncated: buffer ends {missing} bytes before the end of {part}")

    def dissect(self, s: bytes) -> None:
        """Packet.dissect, except that bytes after the body dissect as the next frame (a chain)."""
        s = self.pre_dissect(s)
        s = self.do_dissect(s)
        s = self.post_dissect(s)
        payload, rest = self.extract_padding(s)
        self.do_dissect_payload(payload)
        if rest and rest[0] == VERSION_1_BYTE:
            self.add_payload(type(self)(rest, _internal=1, _underlayer=self))
        elif rest and conf.padding:
            self.add_payload(conf.padding_layer(rest))

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        body_len = self.declared_body_len
        if body_len is None:
            return b"", s
        return s[:body_len], s[body_len:]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        """A truncated body stays Raw: a cut JSON, TLS or HTTP message would only produce errors."""
        if self.truncated:
            return conf.raw_layer
        return super().guess_payload_class(payload)

    def default_payload_class(self, payload: bytes) -> type[Packet]:
        """Bodies that bind_layers cannot pick by a field value: TLS (by content) and HTTP."""
        service = self.getfieldval("service")
        if service in ("https", "tls") and _looks_like_tls(payload):
            tls = _scapy_class("scapy.layers.tls.record", "TLS")
            try:
                tls(payload)
            except Exception:
                return conf.raw_layer
            return tls
        if service == "http":
            return _scapy_class("scapy.layers.http", "HTTP")
        return conf.raw_layer

    @property
    def declared_body_len(self) -> int | None:
        """The body length the header declares, None when datalen is not decimal digits."""
        value = self.getfieldval("datalen")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        return None

    @property
    def truncated(self) -> bool:
        return any(p.startswith("truncated:") for p in self.getfieldval("problems") or ())

    @property
    def kind(self) -> str:
        service = self.getfieldval("service")
        return service if service in MESSAGE_KINDS else DATA_KIND

    # -- building ---------------------------------------------------------------------------------

    def header_bytes(self, body_len: int = 0) -> bytes:
        """The header text as the fields say, datalen taken from ``body_len`` when unset.

        Unset fields are written empty up to the count proxy-packer writes for
        the kind (5 for control, 8 for connection, 7 otherwise); the Go dialect
        adds its trailing comma and newline.
        """
        values = [self.getfieldval(attr) for attr in _HEADER_ATTRS]
        datalen_at = _HEADER_ATTRS.index("datalen")
        if values[datalen_at] is None:
            values[datalen_at] = body_len
        service = values[_HEADER_ATTRS.index("service")]
        count = _REFERENCE_FIELD_COUNT.get(service, _DATA_FIELD_COUNT)
        present = [i for i, v in enumerate(values) if v is not None]
        count = max(count, present[-1] + 1 if present else 0)
        text = ",".join("" if v is None else jscompat.to_string(v) for v in values[:count])
        if self.getfieldval("dialect") == "go":
            text += _GO_SUFFIX
        return jscompat.encode_utf8(text)

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        header = self.header_bytes(len(pay))
        hdrlen = self.getfieldval("hdrlen")
        if hdrlen is None:
            hdrlen = len(header) & 0xFF
        return pkt[:1] + bytes((hdrlen,)) + header + pay

    def mysummary(self) -> str:
        service = self.getfieldval("service")
        if service == "control":
            who = "control"
        else:
            who = f"{service} {self.getfieldval('family')},{self.getfieldval('address')},{self.getfieldval('port')}"
        note = " [truncated]" if self.truncated else ""
        return f"M-PROXY {who} datalen={self.getfieldval('datalen')}{note}"

    # -- helpers ----------------------------------------------------------------------------------

    @classmethod
    def from_frame(cls, frame: Frame) -> MProxy:
        """The layer for a record of the analyzer's ``FrameParser`` (kept problems, wrapped hdrlen included)."""
        if not frame.is_frame or frame.header is None or frame.version is None:
            raise ValueError(f"record of kind {frame.kind!r} is not an M-PROXY frame")
        pkt = cls()
        pkt._load_header(frame.version, frame.hdrlen, frame.header.encode("utf-8"),
                         [str(p) for p in frame.problems])
        if frame.body:
            pkt.do_dissect_payload(frame.body)
        return pkt

    @classmethod
    def frames_in(cls, pkt: Packet) -> list[MProxy]:
        """Every frame a packet carries, in order (a segment or a buffer can hold several, chained)."""
        out = []
        layer = pkt.getlayer(cls)
        while layer is not None:
            out.append(layer)
            layer = layer.payload.getlayer(cls)
        return out

    @classmethod
    def dissect_all(cls, data: bytes) -> list[Packet]:
        """Every record of a whole buffer, split by the analyzer's parser (resynchronising after garbage).

        Frames become ``MProxy`` packets (with no chain), bytes that are not a
        frame become ``Raw``.
        """
        data = bytes(data)
        out: list[Packet] = []
        for record in iter_frames(data):
            chunk = data[record.offset : record.offset + record.length]
            if not record.is_frame:
                out.append(conf.raw_layer(chunk))
            elif any(p.kind == "hdrlen_wrapped" for p in record.problems):
                out.append(cls.from_frame(record))
            else:
                out.append(cls(chunk))
        return out

    @classmethod
    def tcp_reassemble(cls, data: bytes, metadata: dict[str, Any], session: dict[str, Any]) -> Packet | None:
        """``TCPSession`` hook: every whole record at the start of ``data``, chained; None while there is none.

        All of them come back from one call, with only the incomplete rest as
        padding (Scapy keeps it and calls again when more bytes arrive), not
        one frame per call with the rest fed back: Scapy 2.8's TCPSession, when
        it feeds padding back several times for one segment, remembers the
        stream position of the last shift only, so the next segment lands past
        zero bytes that dissect as bogus frames and hide real ones.

        Bytes that do not start a frame come back as ``Raw`` up to the next
        believable frame start (the analyzer's resynchronisation rule), so the
        stream recovers. When the TCP stream ends, an incomplete frame is
        returned as it is, marked truncated.
        """
        records: list[Packet] = []
        start = 0
        while start < len(data):
            length = cls._first_record_length(data, start)
            if length is None:
                break
            if length < 0:
                records.append(conf.raw_layer(data[start:start - length]))
                start -= length
            else:
                records.append(cls(data[start:start + length]))
                start += length
        if start < len(data) and metadata.get("tcp_end"):
            records.append(cls(data[start:]))
            start = len(data)
        if not records:
            return None
        head = records[0]
        for record in records[1:]:
            head.add_payload(record)
        if start < len(data):
            head.add_payload(conf.padding_layer(data[start:]))
        return head

    @staticmethod
    def _first_record_length(data: bytes, start: int = 0) -> int | None:
        """Length of the record at ``data[start:]``: negative for garbage, None while a frame is incomplete."""
        if data[start] != VERSION_1_BYTE:
            from .parser import FrameParser

            scanner = FrameParser(synced=False)
            records = scanner.feed(data[start:])
            if records and records[0].kind == "garbage":
                return -records[0].length
            skipped = len(data) - start - scanner.buffered
            return -skipped if skipped else None
        if len(data) < start + 2:
            return None
        header_end = start + 2 + data[start + 1]
        if len(data) < header_end:
            return None
        body_len = ParsedHeader(data[start + 2:header_end]).datalen
        if body_len is None:
            return header_end - start
        if len(data) < header_end + body_len:
            return None
        return header_end + body_len - start


def _json_repr(value: Any) -> str:
    return jscompat.json_stringify(value)


class JsonField(_InfoField):
    """A decoded JSON value, shown as compact JSON."""

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return _json_repr(x)


class ControlArgsField(JsonField):
    """Control arguments; bearer tokens of secret commands are shown redacted unless asked for."""

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        if pkt is not None and not pkt.reveal_secrets and pkt.getfieldval(_COMMAND) in SECRET_COMMANDS:
            return REDACTED
        return _json_repr(x)


class _JsonBody(Packet):
    """A JSON body: decoded into fields on dissection, rendered as JavaScript's JSON.stringify on build."""

    def do_dissect(self, s: bytes) -> bytes:
        problems: list[str] = []
        try:
            value = jscompat.json_parse(s.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # nesting past Python's stack is not JSON here either
            value = None
            problems.append(f"bad_body: body is not JSON ({exc})")
        self._load_json(value, problems)
        self.setfieldval("problems", problems)
        self.raw_packet_cache = s
        self.raw_packet_cache_fields = {}
        self.explicit = 1
        return b""

    def _load_json(self, value: Any, problems: list[str]) -> None:
        raise NotImplementedError

    def _to_json(self) -> Any:
        raise NotImplementedError

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        return jscompat.encode_utf8(jscompat.json_stringify(self._to_json())) + pay


class MProxyControl(_JsonBody):
    """A control message ``[id, command, ...args]``; replies (id < 0) and errors (id 0) carry no command."""

    name = "M-PROXY control"
    reveal_secrets = False
    """Set True to show the arguments of auth/add_token/access_token/grant (bearer tokens) in show()."""

    fields_desc = [
        JsonField(_ID, 1),
        ConditionalField(HeaderTextField(_COMMAND, None), _has(_COMMAND)),
        ControlArgsField(_ARGS, []),
        ConditionalField(ProblemsField("problems", []), lambda pkt: bool(pkt.getfieldval("problems"))),
    ]

    def _load_json(self, value: Any, problems: list[str]) -> None:
        if not isinstance(value, list) or not value:
            if value is not None:
                problems.append("bad_body: control body is not a non-empty JSON array")
            self.setfieldval(_ID, None)
            self.setfieldval(_ARGS, [] if value is None else [value])
            return
        ident, rest = value[0], value[1:]
        self.setfieldval(_ID, ident)
        command = None
        if isinstance(ident, int) and ident > 0 and rest and isinstance(rest[0], str):
            command, rest = rest[0], rest[1:]
        self.setfieldval(_COMMAND, command)
        self.setfieldval(_ARGS, list(rest))

    def _to_json(self) -> Any:
        command = self.getfieldval(_COMMAND)
        head = [self.getfieldval(_ID)] + ([] if command is None else [command])
        return head + list(self.getfieldval(_ARGS) or [])

    def mysummary(self) -> str:
        command = self.getfieldval(_COMMAND)
        return f"M-PROXY control id={self.getfieldval(_ID)}" + (f" {command}" if command else "")


class MProxyError(_JsonBody):
    """An ``error`` frame's body ``{"message": ..., "code": ...}``."""

    name = "M-PROXY error"
    fields_desc = [
        HeaderTextField("message", None),
        HeaderTextField("code", None),
        ConditionalField(ProblemsField("problems", []), lambda pkt: bool(pkt.getfieldval("problems"))),
    ]

    def _load_json(self, value: Any, problems: list[str]) -> None:
        if not isinstance(value, dict):
            if value is not None:
                problems.append("bad_body: error body is not a JSON object")
            return
        self.setfieldval("message", value.get("message"))
        self.setfieldval("code", value.get("code"))

    def _to_json(self) -> Any:
        return {k: self.getfieldval(k) for k in ("message", "code") if self.getfieldval(k) is not None}

    def mysummary(self) -> str:
        return f"M-PROXY error {self.getfieldval('code')}: {self.getfieldval('message')}"


def bind(port: int | Iterable[int]) -> None:
    """Dissect TCP traffic to or from ``port`` (or each of several ports) as M-PROXY."""
    for p in [port] if isinstance(port, int) else port:
        bind_bottom_up(TCP, MProxy, sport=p)
        bind_bottom_up(TCP, MProxy, dport=p)
        bind_layers(TCP, MProxy, sport=p, dport=p)


def unbind(port: int | Iterable[int]) -> None:
    """Undo ``bind``."""
    for p in [port] if isinstance(port, int) else port:
        split_bottom_up(TCP, MProxy, sport=p)
        split_bottom_up(TCP, MProxy, dport=p)
        split_layers(TCP, MProxy, sport=p, dport=p)


bind_layers(MProxy, MProxyControl, service="control")
bind_layers(MProxy, MProxyError, service="error")
