"""The M-PROXY protocol, declared once.

The Scapy layer, the Wireshark Lua generator, the README field table and the
decoder's JSON output all read this module, so a field or a table value is
added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_ABBREV = "mproxy"
PROTOCOL_TITLE = "M-PROXY tunnel protocol"

VERSION_1_BYTE = 0xFE
"""The version byte is written as ``255 - version``; v1 is 254."""


@dataclass(frozen=True)
class FieldSpec:
    """One field as every output needs it.

    ``attr`` is the Python/Scapy attribute (Scapy's ``Packet`` reserves
    ``name``), ``key`` the name in the decoder's JSON records and in
    PROTOCOL.md, ``filter`` the Wireshark display-filter name.
    ``header_index`` is the position in the comma-separated header for text
    fields, ``None`` for the binary prefix and for derived fields.
    """

    key: str
    attr: str
    filter: str
    ftype: str
    description: str
    header_index: int | None = None
    base: str = "dec"
    on_wire: bool = True


WIRE_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("version", "version", "mproxy.version", "uint8",
              "Version byte, 255 - version (0xFE is v1)", base="hex"),
    FieldSpec("hdrlen", "hdrlen", "mproxy.hdrlen", "uint8",
              "Length in bytes of the text header that follows"),
    FieldSpec("family", "family", "mproxy.family", "string",
              "Address family of the tunneled client (IPv4, IPv6; empty in control frames)",
              header_index=0),
    FieldSpec("address", "address", "mproxy.address", "string",
              "Remote address of the tunneled client", header_index=1),
    FieldSpec("port", "port", "mproxy.port", "uint16",
              "Source port of the tunneled client", header_index=2),
    FieldSpec("datalen", "datalen", "mproxy.datalen", "uint64",
              "Body length in bytes, sent as decimal text", header_index=3),
    FieldSpec("service", "service", "mproxy.service", "string",
              "Service name of the client's data, or the message kind", header_index=4),
    FieldSpec("serviceport", "serviceport", "mproxy.serviceport", "uint16",
              "Relay port the client connected to", header_index=5),
    FieldSpec("name", "hostname", "mproxy.name", "string",
              "TLS SNI servername or HTTP Host the relay routed by", header_index=6),
    FieldSpec("servicename", "servicename", "mproxy.servicename", "string",
              "Real service of a connection frame (JS 2.x, 8th field)", header_index=7),
)

DERIVED_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("kind", "kind", "mproxy.kind", "string",
              "Message kind: data, connection, control, end, error, pause, resume", on_wire=False),
    FieldSpec("dialect", "dialect", "mproxy.dialect", "string",
              "Header dialect: js (proxy-packer) or go (trailing comma and newline)", on_wire=False),
    FieldSpec("client_id", "client_id", "mproxy.client_id", "string",
              "Tunneled client identity family,address,port", on_wire=False),
    FieldSpec("body", "body", "mproxy.body", "bytes", "Frame body", on_wire=False),
)

CONTROL_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("control.id", "control_id", "mproxy.control.id", "int32",
              "Control message id: > 0 request, < 0 reply to -id, 0 out-of-band error",
              on_wire=False),
    FieldSpec("control.command", "control_command", "mproxy.control.command", "string",
              "Control command of a request", on_wire=False),
    FieldSpec("control.args", "args", "mproxy.control.args", "string",
              "Control arguments as JSON (tokens redacted unless asked)", on_wire=False),
    FieldSpec("control.reply_to", "reply_to", "mproxy.control.reply_to", "framenum",
              "Frame holding the request this reply answers", on_wire=False),
    FieldSpec("control.replied_in", "replied_in", "mproxy.control.replied_in", "framenum",
              "Frame holding the reply to this request", on_wire=False),
    FieldSpec("control.reply_time", "reply_time", "mproxy.control.reply_time", "relative_time",
              "Time between the request and its reply", on_wire=False),
)

STREAM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("offset", "offset", "mproxy.offset", "uint64",
              "Offset of this record in its direction's M-PROXY byte stream", on_wire=False),
    FieldSpec("length", "length", "mproxy.length", "uint32",
              "Length in bytes of this record (frame, skipped garbage or lost bytes)", on_wire=False),
    FieldSpec("src", "src", "mproxy.src", "string",
              "Sender (ip:port) of the tunnel direction this record belongs to", on_wire=False),
    FieldSpec("dst", "dst", "mproxy.dst", "string",
              "Receiver (ip:port) of the tunnel direction this record belongs to", on_wire=False),
    FieldSpec("body_len", "body_len", "mproxy.body_len", "uint32",
              "Body bytes present (fewer than datalen when bytes were lost or the stream ended)", on_wire=False),
    FieldSpec("header_in", "header_in", "mproxy.header_in", "framenum",
              "Frame in which this record's first bytes arrived (Wireshark reassembly link)", on_wire=False),
    FieldSpec("reassembled_in", "reassembled_in", "mproxy.reassembled_in", "framenum",
              "Frame in which the M-PROXY frame started here is complete (Wireshark reassembly link)",
              on_wire=False),
)
"""Where a record sits in the stream; the decoder's JSON has offset and length, Wireshark adds the links."""

ALL_FIELDS: tuple[FieldSpec, ...] = WIRE_FIELDS + DERIVED_FIELDS + CONTROL_FIELDS
HEADER_FIELDS: tuple[FieldSpec, ...] = tuple(f for f in WIRE_FIELDS if f.header_index is not None)
NUMERIC_HEADER_KEYS: frozenset[str] = frozenset(
    f.key for f in HEADER_FIELDS if f.ftype.startswith("uint")
)

DATA_KIND = "data"
"""The kind of every frame whose service is not one of MESSAGE_KINDS."""

MESSAGE_KINDS: dict[str, str] = {
    "control": "Control channel message (JSON array)",
    "connection": "A new tunneled connection (relay to device)",
    "end": "The tunneled connection ended",
    "error": "The tunneled connection failed (JSON message and code)",
    "pause": "Stop sending this client's data (byte count as text)",
    "resume": "Resume sending this client's data (byte count as text)",
}

KINDS: dict[str, str] = {DATA_KIND: "Tunneled client bytes", **MESSAGE_KINDS}

HANDLER_BY_KIND: dict[str, str] = {
    DATA_KIND: "onmessage",
    "connection": "onconnection",
    "control": "oncontrol",
    "error": "onerror",
    "end": "onend",
    "pause": "onpause",
    "resume": "onresume",
}
"""The reference unpacker's handler for each kind (proxy-packer ``serviceFuncs``)."""

KNOWN_SERVICES: dict[str, str] = {
    "https": "HTTPS (TLS)",
    "http": "HTTP",
    "ssh": "SSH",
    "tls": "TLS",
    "tcp": "Plain TCP",
    "udp": "UDP",
}

FAMILIES: dict[str, str] = {
    "IPv4": "IPv4 client",
    "IPv6": "IPv6 client",
    "tun": "Go packer tunnel family",
}

DIALECTS: dict[str, str] = {
    "js": "proxy-packer (JavaScript) header",
    "go": "Go packer header (trailing comma and newline)",
}

CONTROL_COMMANDS: dict[str, str] = {
    "hello": "Relay greets the device: [id, 'hello', version, [commands]]",
    "auth": "Device authenticates with a token",
    "add_token": "Device adds a token (domains it serves)",
    "delete_token": "Device removes a token",
    "grant": "Relay grants domains or ports",
    "access_token": "Relay hands over an access token",
}

SECRET_COMMANDS: frozenset[str] = frozenset({"auth", "add_token", "access_token", "grant"})
"""Control commands whose arguments carry bearer tokens."""

REDACTED = "<redacted>"

ERROR_CODES: dict[str, str] = {
    "E_UNKNOWN_COMMAND": "The peer does not know this control command",
    "E_UNKNOWN_ERR": "Error body missing or not JSON (reference unpacker's fallback)",
    "E_CONN": "Connection to the local service failed",
}

BODY_SUBDISSECTORS: dict[str, str] = {
    "https": "tls",
    "tls": "tls",
    "http": "http",
    "control": "json",
    "error": "json",
}
"""Which Wireshark dissector a body of each service goes to."""

PROBLEMS: dict[str, str] = {
    "bad_version": "Version byte is not 0xFE (v1)",
    "datalen_not_numeric": "datalen is not decimal digits",
    "datalen_negative": "datalen is negative",
    "too_few_fields": "Header has fewer than 5 comma-separated fields",
    "hdrlen_wrapped": "Header is longer than 255 bytes: hdrlen wrapped modulo 256",
    "header_not_utf8": "Header is not valid UTF-8",
    "garbage_skipped": "Bytes that are not an M-PROXY frame were skipped",
    "truncated": "Stream ended before the frame was complete",
    "gap": "Bytes of the stream were lost in the capture",
    "bad_body": "Body does not hold what its kind requires",
}
"""Every problem the decoders report; Wireshark expert infos use the same names."""

PROBLEM_EXPERT_PREFIX = "mproxy.problem."
"""Wireshark expert info filter of a problem: ``mproxy.problem.<kind>``."""

PROBLEM_SEVERITY: dict[str, str] = {
    "bad_version": "error",
    "datalen_not_numeric": "error",
    "datalen_negative": "error",
    "too_few_fields": "error",
    "hdrlen_wrapped": "warn",
    "header_not_utf8": "warn",
    "garbage_skipped": "warn",
    "truncated": "warn",
    "gap": "warn",
    "bad_body": "warn",
}
"""How loud each problem is (Wireshark expert severity: error, warn, note)."""

MIN_HEADER_FIELDS = 5
