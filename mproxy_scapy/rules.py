"""The conformance rules of ``mproxy check``, declared once.

The checker (``checker.py``) reports findings by rule id; ``mproxy check``
prints titles and severities from here; ``docs/CONFORMANCE.md`` is generated
from this table (``python -m mproxy_scapy.conformance_doc --write``). A new rule
is one entry here, one place in the checker that reports it, and a test.

Ids are stable: 1xx frames, 2xx the tunneled client's life, 3xx bodies of
message kinds, 4xx the control channel. A retired id is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")
"""Loudest first. ``--fail-on`` takes one of these; findings at it or louder fail the run."""


@dataclass(frozen=True)
class Rule:
    """One rule: ``rationale`` says what the reference (proxy-packer 2.0.4 and the telebit
    relay and device that use it) does, and why breaking it matters."""

    id: str
    severity: str
    title: str
    rationale: str


RULES: tuple[Rule, ...] = (
    # -- frames ----------------------------------------------------------------------------------
    Rule("MPX101", "error", "version byte is not 0xFE",
         "The first byte of every frame is `255 - version`; v1, the only version, is 0xFE. The JS "
         "unpacker only logs another value and parses on as v1; the Go unpacker rejects the stream. A "
         "packer that writes anything else is understood by one implementation and not the other."),
    Rule("MPX102", "error", "hdrlen wrapped: header longer than 255 bytes",
         "proxy-packer writes `header.length` into one byte, so a header of 256 bytes or more (a long "
         "`name`) is announced as `len & 0xff`. Every unpacker then reads a cut header and takes the rest "
         "of it as body: the stream is corrupt from here. A conforming packer must refuse such a header "
         "(or the relay must not route such names)."),
    Rule("MPX103", "error", "datalen is not canonical decimal",
         "The reference writes datalen as JavaScript `String(n)` of the body's byte length: decimal "
         "digits, no sign, no leading zeros, no spaces. Readers differ on anything else: JS "
         "`parseInt(x, 10) || 0` accepts `007`, `+7` and ` 7` and reads `abc` as 0, Go's `strconv.Atoi` "
         "rejects ` 7`; a negative or non-numeric datalen loses the frame boundary."),
    Rule("MPX104", "error", "body shorter than datalen when the tunnel closed",
         "A frame announces `datalen` body bytes and the unpacker waits for all of them before it "
         "delivers the frame. The tunnel closed (FIN or RST) before they came: the frame was never "
         "delivered, and the sender either lied about the length or cut its stream mid-frame."),
    Rule("MPX105", "info", "frame still incomplete when the capture ended",
         "The capture ended inside a frame (the tunnel was still open): not a protocol fault, but the "
         "frame's body and anything after it were not judged."),
    Rule("MPX106", "warning", "Go and JS header dialects mixed in one direction",
         "proxy-packer writes `family,address,port,datalen,service,serviceport,name`; the Go packer adds "
         "a trailing `,` and `\\n`, counted in hdrlen. Each is read by both unpackers, but one direction of "
         "one tunnel comes from one packer: both dialects in it mean two writers interleave on one stream."),
    Rule("MPX107", "warning", "unknown address family",
         "The family is the tunneled client socket's `family` as Node reports it, `IPv4` or `IPv6` (empty "
         "only in control frames). The Go packer has written `tun`. Anything else is not an address "
         "family a relay can have accepted a client on."),
    Rule("MPX108", "error", "address not valid for its family",
         "The address is the client socket's `remoteAddress`: a dotted IPv4 address for `IPv4`, an IPv6 "
         "address (IPv4-mapped `::ffff:a.b.c.d` included) for `IPv6`. `family,address,port` is the "
         "client's identity (`addrToId`), so a mangled address splits or merges clients."),
    Rule("MPX109", "error", "port or serviceport out of range",
         "`port` is the client's source port and `serviceport` the relay port it reached: decimal 1..65535 "
         "(`serviceport` may be empty: proxy-packer writes `''` when it is unset). Other text cannot come "
         "from a socket."),
    Rule("MPX110", "error", "bytes that are not M-PROXY frames",
         "Every byte of a tunnel direction belongs to a frame: the unpacker has no way to skip garbage, it "
         "reads the next byte as a version byte. The analyzer resynchronised past bytes no frame "
         "accounts for (a wrong datalen before them, a wrapped header, a writer that interleaved)."),
    Rule("MPX111", "error", "header has fewer than 5 fields",
         "The reference splits the header on `,` and needs at least family, address, port, datalen and "
         "service; with fewer the frame has no datalen or service and the unpacker delivers nonsense."),
    Rule("MPX112", "warning", "header is not UTF-8",
         "proxy-packer builds the header as a JS string and writes it as UTF-8 (`Buffer.from`); the "
         "unpacker decodes it as UTF-8. Other bytes turn into U+FFFD and change the fields."),
    # -- the tunneled client ---------------------------------------------------------------------
    Rule("MPX201", "error", "frame for a client that has no connection in this tunnel",
         "A JS 2.x relay announces each tunneled client with a `connection` frame before anything else "
         "of it (`onconnection`); the device opens the local connection then. In a tunnel that announces "
         "its clients, data, end, error, pause or resume for an id never announced is about a client "
         "the other side does not know (judged once the tunnel has carried a `connection` frame)."),
    Rule("MPX202", "info", "client first seen without a connection: capture started mid-tunnel",
         "The capture began after the tunnel did, so a client's `connection` frame may simply predate "
         "it. Noted, not judged."),
    Rule("MPX203", "info", "tunnel announces no clients (no connection frames)",
         "Relays before proxy-packer 2.x and the Go relay send no `connection` frame: a client starts "
         "with its first data (telebit's device opens the local connection in `onmessage`). Allowed; the "
         "per-client rules that need an announcement are not applied to this tunnel."),
    Rule("MPX204", "error", "frame after the client's end or error in the same direction",
         "After `end` or `error` for a client (`Packer.pack(tun, null, 'end')`) its sender has closed "
         "that client's socket: nothing more of that client may follow in that direction, except a new "
         "`connection` for a reused port. The other direction may still drain."),
    Rule("MPX205", "error", "second connection for a live client",
         "A `connection` frame opens a client; another one for the same `family,address,port` before "
         "either side ended the first makes the device open a second local socket for one client id, "
         "and the two cannot be told apart."),
    Rule("MPX206", "error", "connection frame sent device-to-relay",
         "Only the relay accepts tunneled clients, so only it sends `connection` (the device's "
         "`onconnection` handler; the relay has none). The relay is the tunnel's TCP server (the device "
         "dials it); judged only when the handshake was captured or the relay's direction is known "
         "from its `hello` or a `connection` frame."),
    Rule("MPX207", "warning", "connection frame without the servicename field",
         "proxy-packer 2.x writes 8 header fields in a `connection` frame: the 8th is the real service "
         "(`https`, ...), since the 5th holds `connection`. Without it the device's `onconnection` sees "
         "`service` undefined and cannot pick the local service until the first data arrives."),
    Rule("MPX208", "warning", "resume without pause",
         "`resume` undoes a `pause` for the same client in the same direction (telebit pauses when the "
         "local socket's buffer passes 1 MiB and resumes on `drain`). A resume with no pause in force "
         "shows the sender's flow-control state is not what it sends."),
    Rule("MPX209", "warning", "client still paused when the tunnel closed",
         "A `pause` that is never resumed leaves the client's upload stalled for the rest of the "
         "tunnel: the peer waited for a `resume` that never came."),
    Rule("MPX210", "warning", "client never ended when the tunnel closed",
         "Each side sends `end` (or `error`) when its socket for the client closes. A client with "
         "neither when the tunnel closed was cut off without a word; its last bytes may be lost."),
    # -- bodies ----------------------------------------------------------------------------------
    Rule("MPX301", "error", "error body is not {\"message\", \"code\"} JSON",
         "telebit sends `Packer.pack(tun, {message: err.message, code: err.code}, 'error')`, and the "
         "unpacker `JSON.parse`s the body into the `onerror` argument (a body that is JSON but not an "
         "object makes it throw). No body, or the one-space padding of `pack(tun, null, 'error')`, is "
         "what the reference sends when it has no error object; anything else is not readable."),
    Rule("MPX302", "error", "pause/resume body is not a decimal byte count",
         "telebit sends `Packer.pack(tun, conn.tunnelRead, 'pause')`: the bytes received so far as "
         "`JSON.stringify` of a number, decimal digits (a count of 0 is falsy and becomes the one-space "
         "padding). Other text is not a count."),
    Rule("MPX303", "warning", "end with a body other than the one-space padding",
         "`end` has no body: `Packer.pack(tun, null, 'end')` pads it to one space (datalen 1), "
         "`packHeader` writes datalen 0. Bytes in an end body are client data the unpacker drops "
         "(`onend` ignores `data`)."),
    # -- control channel -------------------------------------------------------------------------
    Rule("MPX401", "error", "control body is not a JSON array with an integer id",
         "Both sides `JSON.parse` a control body and need `[id, ...]` with a numeric id (telebit: "
         "`Array.isArray(cmd) && typeof cmd[0] === 'number'`, else 'received bad command'). Ids are "
         "integers: > 0 requests, < 0 replies, 0 out-of-band errors."),
    Rule("MPX402", "warning", "reply to an id never requested",
         "A reply `[-id, ...]` answers the request `[id, ...]` the other side sent; telebit logs "
         "'received response for unknown request' and drops it. Not judged in a tunnel the capture "
         "picked up mid-way (the request may predate it)."),
    Rule("MPX403", "error", "duplicate request id in flight",
         "Replies are matched to requests by id alone (telebit's `pendingCommands[id]`): a second request "
         "with the id of one still unanswered in the same direction makes the first reply answer the "
         "wrong request."),
    Rule("MPX404", "warning", "request unanswered when the tunnel closed",
         "Every request gets a reply, `[-id, result]` or `[-id, {message, code}]` (telebit answers even "
         "unknown commands with E_UNKNOWN_COMMAND). One still open when the tunnel closed was dropped. "
         "`hello` is judged by MPX405 instead."),
    Rule("MPX405", "warning", "device did not answer hello as the reference does",
         "The relay greets with `[id, 'hello', 254, [commands]]`; telebit's device sends its tokens "
         "(`add_token`/`auth` requests) and answers `[-id, null]` (`err = null`). A device that answers "
         "anything else, or never answers, is not the device the relay was written against."),
    Rule("MPX406", "info", "unknown control command",
         "The commands seen in the reference are hello, auth, add_token, delete_token, grant and "
         "access_token. Another command is answered with E_UNKNOWN_COMMAND by telebit; noted so that "
         "extensions are visible."),
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}


def severity_rank(severity: str) -> int:
    """0 for error, 1 warning, 2 info: smaller is louder."""
    return SEVERITIES.index(severity)


def at_or_above(severity: str, threshold: str) -> bool:
    return severity_rank(severity) <= severity_rank(threshold)


@dataclass(frozen=True)
class Behaviour:
    """A behaviour of proxy-packer 2.0.4 that ``mproxy conform`` names when a packer under test breaks it."""

    id: str
    title: str
    detail: str


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour("PP01", "version byte is 0xFE",
              "`Buffer.from([255 - version, ...])` with version 1."),
    Behaviour("PP02", "hdrlen is the header's byte length modulo 256",
              "`Buffer.from([.., header.length])` keeps the low 8 bits: a 256-byte header is announced as 0 "
              "(the stream is then corrupt, but that is what the reference writes)."),
    Behaviour("PP03", "header fields and their order",
              "`[family, address, port, datalen, service, serviceport || '', name || ''].join(',')`: `join` "
              "writes null and undefined as empty text, numbers as JavaScript prints them; message kinds "
              "(end, error, pause, resume) replace the service field."),
    Behaviour("PP04", "datalen counts body bytes",
              "`data.byteLength` of the UTF-8 encoded body, not characters of a string."),
    Behaviour("PP05", "pack pads a missing or empty body to one space",
              "`Packer.pack` (oldways): a falsy body (undefined, null, '', 0, false) or an empty Buffer "
              "becomes `' '`, datalen 1."),
    Behaviour("PP06", "packHeader writes the header only",
              "`Packer.packHeader(meta, data, service)` writes no body bytes; datalen is still the body's "
              "length (0 with no body: no padding)."),
    Behaviour("PP07", "a body that is not a Buffer is JSON.stringify'd",
              "Objects, arrays, numbers, booleans and strings are sent as `JSON.stringify(data)` in UTF-8 "
              "(a string body gains quotes)."),
    Behaviour("PP08", "connection frames carry 8 fields",
              "`family,address,port,datalen,connection,serviceport,name,service`: the 8th field is the "
              "meta's own service."),
    Behaviour("PP09", "control frames have the header `,,,N,control`",
              "`['', '', '', size, 'control'].join(',')`: the meta is not read."),
    Behaviour("PP10", "JS header dialect",
              "No trailing comma and no newline after the last field (that is the Go packer's dialect)."),
    Behaviour("PP11", "the body follows the header unchanged",
              "`data.copy(buf, 2 + header.byteLength)`: Buffer bodies byte for byte."),
    Behaviour("PP12", "the reference throws on this input",
              "E.g. `pack(null, data)` for a non-control frame reads `meta.family` of null: TypeError. A "
              "packer that answers bytes here accepts what the reference refuses."),
    Behaviour("PP13", "the unpacker delivers these handler calls",
              "`Packer.create(handlers).fns.addChunk(chunk)`: the same handlers, in the same order, with the "
              "same fields (header text, `data` bytes, error JSON) for any chunking of the stream."),
    Behaviour("PP14", "the packer answers every request",
              "One JSON line per request, in time: a packer that hangs, exits or answers something that is "
              "not the line protocol fails the case."),
    Behaviour("PP15", "the reference packs this input",
              "The packer refused (answered `{\"error\": ...}`) an input proxy-packer packs without complaint."),
)

BEHAVIOURS_BY_ID: dict[str, Behaviour] = {b.id: b for b in BEHAVIOURS}
