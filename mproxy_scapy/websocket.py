"""An incremental RFC 6455 unframer: one direction's TCP bytes in, message payload bytes out.

Telebit carries M-PROXY inside WebSocket binary messages, and the relay splits one
M-PROXY frame over several messages. So the unframer does not deliver messages: it
delivers binary payload bytes as soon as they arrive, and the caller concatenates
them into the direction's M-PROXY stream. Nothing is held for a whole frame or
message except the inflater's window; compressed payloads (permessage-deflate,
RFC 7692) are inflated as they stream past, with a per-message output cap.

The unframer is lenient like an analyzer must be: a protocol violation is reported
as a ``WsProblem`` with a specific kind and decoding goes on where the length of
what follows is still known. When the framing itself is lost (a capture gap in a
frame header, a 2^63 length) it scans for the next plausible frame header.
"""

from __future__ import annotations

import re
import zlib

from .header import ParsedHeader

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY})
CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
KNOWN_OPCODES = DATA_OPCODES | CONTROL_OPCODES
MAX_CONTROL_PAYLOAD = 125

DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
"""Decompressed bytes one compressed message may produce before the rest of it is dropped."""

MAX_PLAUSIBLE_FRAME = 1 << 31
"""A resync candidate claiming a longer payload is not believed (real peers cut far smaller frames)."""

DEFLATE_TAIL = b"\x00\x00\xff\xff"
_INFLATE_STEP = 1024 * 1024

WS_PROBLEMS: dict[str, str] = {
    "client_frame_unmasked": "A client-to-server WebSocket frame is not masked",
    "server_frame_masked": "A server-to-client WebSocket frame is masked",
    "length_too_large": "A WebSocket frame length has the most significant bit set (2^63 or more)",
    "length_not_minimal": "A WebSocket frame length is not in its shortest encoding",
    "reserved_opcode": "A WebSocket frame uses a reserved opcode; its payload was skipped",
    "reserved_bits_set": "A WebSocket frame has RSV2 or RSV3 set",
    "rsv1_without_deflate": "A WebSocket frame has RSV1 set but permessage-deflate was not negotiated",
    "rsv1_on_continuation": "A WebSocket continuation or control frame has RSV1 set",
    "control_frame_too_long": "A WebSocket control frame payload is longer than 125 bytes",
    "control_frame_fragmented": "A WebSocket control frame has FIN clear",
    "unexpected_continuation": "A WebSocket continuation frame arrived with no message in progress",
    "message_interrupted": "A new WebSocket message started before the previous one ended",
    "decompression_capped": "A compressed WebSocket message inflated past the cap; its rest was dropped",
    "inflate_error": "A compressed WebSocket message could not be inflated; its rest was dropped",
    "gap_in_compressed_message": "Bytes of a compressed WebSocket message were lost; its rest was dropped",
    "ws_sync_lost": "The WebSocket framing was lost; scanning for the next frame header",
    "ws_resynced": "The WebSocket framing was found again",
    "ws_truncated": "The stream ended inside a WebSocket frame",
}
"""Every problem kind the unframer reports."""


class WsPayload:
    """Bytes of a binary message's payload (unmasked and inflated), in stream order."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"WsPayload({len(self.data)} bytes)"


class WsGap:
    """Binary payload bytes lost in the capture (or M-PROXY bytes lost with the framing)."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"WsGap({self.length})"


class WsSkipped:
    """Wire bytes that carry no M-PROXY data: framing, text, ping/pong, close, after close, resync.

    Bytes lost in the capture are not reported here (the TCP stage reports them)
    unless they were binary payload: those become ``WsGap``.
    """

    __slots__ = ("detail", "kind", "nbytes")

    def __init__(self, kind: str, nbytes: int, detail: str | None = None) -> None:
        self.kind = kind
        self.nbytes = nbytes
        self.detail = detail

    def __repr__(self) -> str:
        return f"WsSkipped({self.kind!r}, {self.nbytes}, {self.detail!r})"


class WsProblem:
    """A protocol violation or a loss, named by a kind from ``WS_PROBLEMS``."""

    __slots__ = ("detail", "kind")

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return f"WsProblem({self.kind!r}, {self.detail!r})"


WsEvent = WsPayload | WsGap | WsSkipped | WsProblem


class DeflateParams:
    """The permessage-deflate parameters a server accepted (RFC 7692 section 7)."""

    __slots__ = (
        "client_max_window_bits",
        "client_no_context_takeover",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits

    @classmethod
    def from_extensions(cls, header_value: str | None) -> DeflateParams | None:
        """The permessage-deflate offer/acceptance in a Sec-WebSocket-Extensions value, if any."""
        for name, params in parse_extensions(header_value or ""):
            if name.lower() != "permessage-deflate":
                continue
            out = cls()
            for key, value in params.items():
                key = key.lower()
                if key in ("server_no_context_takeover", "client_no_context_takeover"):
                    setattr(out, key, True)
                elif key in ("server_max_window_bits", "client_max_window_bits"):
                    bits = value.strip('"') if value else ""
                    setattr(out, key, int(bits) if bits.isascii() and bits.isdigit() else None)
            return out
        return None

    def no_context_takeover(self, from_client: bool) -> bool:
        """Whether the sender in this direction resets its compression context after each message."""
        return self.client_no_context_takeover if from_client else self.server_no_context_takeover

    def as_dict(self) -> dict[str, bool | int | None]:
        return {name: getattr(self, name) for name in sorted(self.__slots__)}

    def __repr__(self) -> str:
        return f"DeflateParams({self.as_dict()})"


def parse_extensions(value: str) -> list[tuple[str, dict[str, str | None]]]:
    """Split a Sec-WebSocket-Extensions value into (name, {param: value-or-None}) in order."""
    out: list[tuple[str, dict[str, str | None]]] = []
    for item in value.split(","):
        parts = [p.strip() for p in item.split(";")]
        if not parts[0]:
            continue
        params: dict[str, str | None] = {}
        for part in parts[1:]:
            if not part:
                continue
            key, eq, val = part.partition("=")
            params[key.strip()] = val.strip() if eq else None
        out.append((parts[0], params))
    return out


def unmask(data: bytes | bytearray | memoryview, mask: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``mask``, starting ``offset`` bytes into the payload.

    One big-integer XOR over the whole chunk instead of a Python loop per byte
    (hundreds of MB/s instead of about 20).
    """
    n = len(data)
    if n == 0:
        return b""
    shift = offset & 3
    key = mask[shift:] + mask[:shift]
    repeated = key * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated[:n], "little")).to_bytes(n, "little")


def header_length(b0: int, b1: int) -> int:
    """Total header bytes (2 to 14) a frame starting with these two bytes has."""
    len7 = b1 & 0x7F
    size = 2 + (2 if len7 == 126 else 8 if len7 == 127 else 0)
    return size + 4 if b1 & 0x80 else size


class FrameHeader:
    """One decoded frame header."""

    __slots__ = ("fin", "length", "mask", "minimal", "opcode", "rsv", "size")

    def __init__(self, buf: bytes | bytearray | memoryview, at: int = 0) -> None:
        b0 = buf[at]
        b1 = buf[at + 1]
        self.fin = bool(b0 & 0x80)
        self.rsv = b0 & 0x70
        self.opcode = b0 & 0x0F
        len7 = b1 & 0x7F
        pos = at + 2
        if len7 == 126:
            self.length = int.from_bytes(buf[pos : pos + 2], "big")
            self.minimal = self.length >= 126
            pos += 2
        elif len7 == 127:
            self.length = int.from_bytes(buf[pos : pos + 8], "big")
            self.minimal = self.length > 0xFFFF
            pos += 8
        else:
            self.length = len7
            self.minimal = True
        if b1 & 0x80:
            self.mask: bytes | None = bytes(buf[pos : pos + 4])
            pos += 4
        else:
            self.mask = None
        self.size = pos - at


def _plausible(h: FrameHeader, masked: bool | None, deflate: bool | None) -> bool:
    """The shape a real peer's frame header has (used only when looking for lost framing)."""
    if h.opcode not in KNOWN_OPCODES or h.rsv & 0x30 or not h.minimal or h.length >= MAX_PLAUSIBLE_FRAME:
        return False
    if masked is not None and (h.mask is not None) != masked:
        return False
    if h.rsv and (deflate is False or h.opcode not in (OP_TEXT, OP_BINARY)):
        return False
    return not (h.opcode in CONTROL_OPCODES and (not h.fin or h.length > MAX_CONTROL_PAYLOAD))


def _payload_looks_like_mproxy(h: FrameHeader, payload: bytes | bytearray | memoryview) -> bool:
    """A binary message whose first bytes read as the start of an M-PROXY frame."""
    if h.mask is not None:
        payload = unmask(payload, h.mask)
    if h.rsv & 0x40:
        try:
            payload = zlib.decompressobj(-15).decompress(bytes(payload), _MPROXY_HEAD)
        except zlib.error:
            return False
    if len(payload) < 2 or payload[0] != 0xFE or len(payload) < 2 + payload[1]:
        return False
    return ParsedHeader(bytes(payload[2 : 2 + payload[1]])).looks_like_frame_start()


def _first_byte_class() -> re.Pattern[bytes]:
    values = bytes(fin | rsv1 | op for fin in (0, 0x80) for rsv1 in (0, 0x40) for op in sorted(KNOWN_OPCODES))
    return re.compile(b"[" + b"".join(re.escape(bytes([v])) for v in values) + b"]")


_FIRST_BYTE = _first_byte_class()
_MPROXY_HEAD = 2 + 255
RESYNC_HOLD = 14 + _MPROXY_HEAD
"""The most bytes a resync scan needs to hold to decide on a candidate frame header."""


def _binary_verdict(h: FrameHeader, buf: bytes | bytearray | memoryview, at: int, final: bool) -> str:
    """'yes' if a binary frame's payload starts like an M-PROXY frame, 'no', or 'more' (wait for bytes)."""
    want = min(h.length, _MPROXY_HEAD)
    have = min(len(buf) - at, want)
    if have < want and not final:
        if have == 0 or h.rsv & 0x40:
            return "more"
        head = buf[at : at + min(have, 2)]
        if h.mask is not None:
            head = unmask(head, h.mask)
        if head[0] != 0xFE:
            return "no"
        if len(head) < 2 or have < 2 + head[1]:
            return "more"
    if have and _payload_looks_like_mproxy(h, buf[at : at + have]):
        return "yes"
    return "no"


def find_frame_start(
    buf: bytes | bytearray | memoryview,
    *,
    masked: bool | None,
    deflate: bool | None,
    final: bool,
) -> tuple[int | None, int]:
    """Where the WebSocket framing plausibly resumes in ``buf``.

    Only a binary frame whose payload starts with a believable M-PROXY header
    is believed: a header-shaped pair of bytes alone is far too common in a
    random payload. Returns ``(position, safe)``: ``position`` is the offset of
    that frame's header or None; ``safe`` is how many leading bytes can be
    dropped for sure when none was found (the rest may still start a frame
    once more bytes come). ``final`` means no more bytes will come.
    """
    n = len(buf)
    search = _FIRST_BYTE.search
    match = search(buf, 0)
    while match is not None:
        i = match.start()
        if n - i < 2:
            return None, n if final else i
        size = header_length(buf[i], buf[i + 1])
        if n - i < size:
            if final:
                match = search(buf, i + 1)
                continue
            return None, i
        h = FrameHeader(buf, i)
        if h.opcode == OP_BINARY and h.length and _plausible(h, masked, deflate):
            verdict = _binary_verdict(h, buf, i + size, final)
            if verdict == "yes":
                return i, i
            if verdict == "more":
                return None, i
        match = search(buf, i + 1)
    return None, n


def _join_payloads(events: list[WsEvent]) -> list[WsEvent]:
    """Adjacent ``WsPayload`` events as one: a JS relay sends each M-PROXY header and body as two
    messages, so a segment often holds several payload pieces, and each piece handed on costs the
    carrier, the decoder and the parser a call (more than the copy that joins them)."""
    joined: list[WsEvent] = []
    run: list[bytes] = []
    for event in events:
        if type(event) is WsPayload:
            run.append(event.data)
            continue
        if run:
            joined.append(WsPayload(run[0] if len(run) == 1 else b"".join(run)))
            run = []
        joined.append(event)
    if run:
        joined.append(WsPayload(run[0] if len(run) == 1 else b"".join(run)))
    return joined


class WebSocketUnframer:
    """One direction of a WebSocket connection, fed in arbitrary pieces.

    ``from_client``: True for client-to-server (frames must be masked), False for
    server-to-client, None when unknown (mid-stream pickup: the first believed
    frame decides). ``deflate``: the negotiated permessage-deflate parameters,
    None when not negotiated; ``deflate_known`` False means the handshake was not
    seen, so RSV1 frames are inflated without complaint. ``synced`` False starts
    by scanning for a frame header (capture started mid-stream).
    """

    def __init__(
        self,
        *,
        from_client: bool | None,
        deflate: DeflateParams | None = None,
        deflate_known: bool = True,
        synced: bool = True,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        self.from_client = from_client
        self.deflate = deflate
        self.deflate_known = deflate_known
        self.max_message = max_message
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.frames = 0
        self.messages = 0
        self.pings = 0
        self.pongs = 0
        self.text_messages = 0
        self.binary_bytes = 0
        self._hdr = bytearray()
        self._frame: FrameHeader | None = None
        self._remaining = 0
        self._mask_pos = 0
        self._sink = ""
        self._control = bytearray()
        self._msg_opcode: int | None = None
        self._msg_compressed = False
        self._msg_out = 0
        self._msg_dropping = False
        self._msg_capped = False
        self._inflater: zlib._Decompress | None = None
        self._resyncing = not synced
        self._rbuf = bytearray()
        self._framing = 0

    # -- public interface -------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[WsEvent]:
        """Unframe the next bytes of the direction; returns the events they complete."""
        out: list[WsEvent] = []
        self._framing = 0
        self._run(memoryview(data), out, final=False)
        self._flush_framing(out)
        return _join_payloads(out) if len(out) > 2 else out

    def gap(self, length: int) -> list[WsEvent]:
        """``length`` bytes of the direction were lost in the capture here."""
        out: list[WsEvent] = []
        if length <= 0:
            return out
        if self.closed:
            return out
        if self._resyncing:
            if self._rbuf:
                out.append(WsSkipped("resync", len(self._rbuf)))
                self._rbuf.clear()
            out.append(WsGap(length))
            return out
        if self._frame is not None:
            lost = min(length, self._remaining)
            self._lose_payload(lost, out)
            length -= lost
            if self._remaining == 0:
                self._end_frame(out)
            if length == 0:
                return out
        where = "in a frame header" if self._hdr else "at a frame boundary"
        out.append(WsProblem("ws_sync_lost", f"{length} bytes lost {where}: framing lost, resynchronising"))
        if self._hdr:  # the header's first bytes, held until it was whole, can never be read now
            out.append(WsSkipped("framing", len(self._hdr)))
        out.append(WsGap(length))
        self._lose_framing()
        return out

    def close(self) -> list[WsEvent]:
        """The direction ended: report a frame left unfinished and any bytes held for resync."""
        out: list[WsEvent] = []
        self._framing = 0
        if self._resyncing and self._rbuf and not self.closed:
            held = bytes(self._rbuf)
            self._rbuf.clear()
            self._run(memoryview(held), out, final=True)
        if self._rbuf:
            out.append(WsSkipped("resync", len(self._rbuf)))
            self._rbuf.clear()
        if self._hdr:
            out.append(WsProblem("ws_truncated", f"stream ended inside a frame header ({len(self._hdr)} bytes)"))
            out.append(WsSkipped("framing", len(self._hdr)))
            self._hdr.clear()
        elif self._frame is not None:
            out.append(
                WsProblem("ws_truncated", f"stream ended with {self._remaining} payload bytes of the frame missing")
            )
            if self._sink in ("ping", "pong", "close"):
                out.append(WsSkipped(self._sink, len(self._control)))
            self._frame = None
        self._flush_framing(out)
        return out

    # -- the state machine -------------------------------------------------

    def _run(self, mv: memoryview, out: list[WsEvent], final: bool) -> None:
        pos = 0
        n = len(mv)
        while pos < n:
            if self.closed:
                out.append(WsSkipped("after_close", n - pos))
                return
            if self._resyncing:
                rest = self._scan(mv[pos:], out, final)
                if rest is None:
                    return
                mv = memoryview(rest)
                pos = 0
                n = len(mv)
                continue
            frame = self._frame
            if frame is not None:
                take = min(self._remaining, n - pos)
                if take:
                    self._payload(mv[pos : pos + take], out)
                    pos += take
                    self._remaining -= take
                if self._remaining == 0:
                    self._end_frame(out)
                continue
            hdr = self._hdr
            if not hdr and n - pos >= 2:
                size = header_length(mv[pos], mv[pos + 1])
                if n - pos >= size:
                    self._start_frame(FrameHeader(mv, pos), out)
                    pos += size
                    continue
            need = 2 if len(hdr) < 2 else header_length(hdr[0], hdr[1])
            take = min(need - len(hdr), n - pos)
            hdr += mv[pos : pos + take]
            pos += take
            if len(hdr) >= 2 and len(hdr) == header_length(hdr[0], hdr[1]):
                header = FrameHeader(hdr)
                hdr.clear()
                self._start_frame(header, out)

    def _start_frame(self, h: FrameHeader, out: list[WsEvent]) -> None:
        self._framing += h.size
        self.frames += 1
        if h.length >> 63:
            out.append(WsProblem("length_too_large", f"frame claims {h.length} payload bytes"))
            self._lose_framing()
            return
        if not h.minimal:
            out.append(WsProblem("length_not_minimal", f"length {h.length} in a longer encoding than needed"))
        masked = h.mask is not None
        if self.from_client is None:
            self.from_client = masked
        elif self.from_client and not masked:
            out.append(WsProblem("client_frame_unmasked", f"opcode {h.opcode}, {h.length} bytes"))
        elif not self.from_client and masked:
            out.append(WsProblem("server_frame_masked", f"opcode {h.opcode}, {h.length} bytes"))
        if h.rsv & 0x30:
            out.append(WsProblem("reserved_bits_set", f"RSV bits {h.rsv >> 4:03b}"))
        opcode = h.opcode
        if opcode in CONTROL_OPCODES:
            self._sink = "close" if opcode == OP_CLOSE else "ping" if opcode == OP_PING else "pong"
            self._control.clear()
            if not h.fin:
                out.append(WsProblem("control_frame_fragmented", f"{self._sink} frame with FIN clear"))
            if h.length > MAX_CONTROL_PAYLOAD:
                out.append(WsProblem("control_frame_too_long", f"{self._sink} frame of {h.length} bytes"))
            if h.rsv & 0x40:
                out.append(WsProblem("rsv1_on_continuation", f"{self._sink} frame with RSV1 set"))
        elif opcode not in DATA_OPCODES:
            out.append(WsProblem("reserved_opcode", f"opcode {opcode:#x}, {h.length} payload bytes skipped"))
            self._sink = "reserved"
        elif opcode == OP_CONTINUATION:
            if h.rsv & 0x40:
                out.append(WsProblem("rsv1_on_continuation", "continuation frame with RSV1 set"))
            if self._msg_opcode is None:
                out.append(WsProblem("unexpected_continuation", f"{h.length} payload bytes skipped"))
                self._sink = "orphan"
            else:
                self._sink = self._message_sink()
        else:
            if self._msg_opcode is not None:
                out.append(WsProblem("message_interrupted", "previous message had no final frame"))
                self._end_message(out)
            compressed = bool(h.rsv & 0x40)
            if compressed and self.deflate is None and self.deflate_known:
                out.append(WsProblem("rsv1_without_deflate", "inflating anyway"))
            self._msg_opcode = opcode
            self._msg_compressed = compressed
            self._msg_out = 0
            self._msg_dropping = False
            self._msg_capped = False
            self._sink = self._message_sink()
        self._frame = h
        self._remaining = h.length
        self._mask_pos = 0
        if h.length == 0:
            self._end_frame(out)

    def _message_sink(self) -> str:
        if self._msg_compressed:
            return "inflate"
        return "binary" if self._msg_opcode == OP_BINARY else "text"

    def _payload(self, chunk: memoryview, out: list[WsEvent]) -> None:
        frame = self._frame
        assert frame is not None
        sink = self._sink
        if sink in ("text", "reserved", "orphan"):
            out.append(WsSkipped(sink, len(chunk)))
            self._mask_pos += len(chunk)
            return
        data = unmask(chunk, frame.mask, self._mask_pos) if frame.mask is not None else bytes(chunk)
        self._mask_pos += len(chunk)
        if sink == "binary":
            self.binary_bytes += len(data)
            out.append(WsPayload(data))
        elif sink == "inflate":
            self._inflate(data, out, len(chunk))
        elif len(self._control) <= MAX_CONTROL_PAYLOAD:
            self._control += data[: MAX_CONTROL_PAYLOAD + 1 - len(self._control)]

    def _inflate(self, data: bytes, out: list[WsEvent], wire: int) -> None:
        """Inflate a compressed message's next bytes; past ``max_message`` the output becomes a gap.

        A capped message is still inflated to its end, into nothing but a
        count: the M-PROXY stream gets a ``WsGap`` of exactly the bytes not
        delivered, so the parser closes the frame they belonged to with its
        true length and reads the next message in sync, and the inflater's
        window stays right for messages compressed against it (context
        takeover). Memory stays bounded (``_INFLATE_STEP`` at a time); the
        time is that of inflating the message, as below the cap.
        """
        binary = self._msg_opcode == OP_BINARY
        if not binary and wire:
            out.append(WsSkipped("text", wire))
        if self._msg_dropping:
            if binary:
                out.append(WsSkipped("message_dropped", wire))
            return
        if self._msg_capped and binary and wire:
            out.append(WsSkipped("message_dropped", wire))
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-15)
        inflater = self._inflater
        pending = data
        try:
            while pending:
                piece = inflater.decompress(pending, _INFLATE_STEP)
                pending = inflater.unconsumed_tail
                room = self.max_message - self._msg_out
                lost = 0
                if len(piece) > room:
                    lost = len(piece) - room
                    piece = piece[:room]
                    if not self._msg_capped:
                        self._msg_capped = True
                        out.append(WsProblem("decompression_capped", f"message inflated past {self.max_message} bytes"))
                        if binary and wire:
                            out.append(WsSkipped("message_dropped", wire))
                self._msg_out += len(piece)
                if binary and piece:
                    self.binary_bytes += len(piece)
                    out.append(WsPayload(piece))
                if binary and lost:
                    out.append(WsGap(lost))
        except zlib.error as exc:
            self._drop_message(out, "inflate_error", str(exc), 0 if self._msg_capped else wire)

    def _drop_message(self, out: list[WsEvent], kind: str, detail: str, wire: int) -> None:
        out.append(WsProblem(kind, detail))
        if self._msg_opcode == OP_BINARY and wire:
            out.append(WsSkipped("message_dropped", wire))
        self._msg_dropping = True
        self._inflater = None

    def _lose_payload(self, lost: int, out: list[WsEvent]) -> None:
        """A capture gap inside a payload whose length is known: the framing stays in sync."""
        sink = self._sink
        self._remaining -= lost
        self._mask_pos += lost
        if sink == "binary":
            out.append(WsGap(lost))
        elif sink == "inflate" and not self._msg_dropping:
            out.append(WsProblem("gap_in_compressed_message", f"{lost} compressed bytes lost"))
            if self._msg_opcode == OP_BINARY:
                out.append(WsGap(lost))
            self._msg_dropping = True
            self._inflater = None

    def _end_frame(self, out: list[WsEvent]) -> None:
        frame = self._frame
        assert frame is not None
        self._frame = None
        sink = self._sink
        if sink in ("ping", "pong"):
            if sink == "ping":
                self.pings += 1
            else:
                self.pongs += 1
            out.append(WsSkipped(sink, frame.length))
        elif sink == "close":
            payload = bytes(self._control)
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            reason = payload[2:].decode("utf-8", "replace")
            self.close_code = code
            self.close_reason = reason
            detail = "no status code" if code is None else f"code {code}" + (f" {reason!r}" if reason else "")
            out.append(WsSkipped("close", frame.length, detail))
            self.closed = True
        elif sink in ("binary", "text", "inflate") and frame.fin:
            self._end_message(out)

    def _end_message(self, out: list[WsEvent]) -> None:
        if self._msg_compressed and not self._msg_dropping:
            self._inflate(DEFLATE_TAIL, out, 0)
        if self._msg_opcode == OP_TEXT:
            self.text_messages += 1
        self.messages += 1
        if self._msg_compressed and (
            (self.deflate is not None and self.deflate.no_context_takeover(bool(self.from_client)))
            or (self._inflater is not None and self._inflater.eof)
        ):
            # A sender may also end a message with a final deflate block (RFC 7692 7.2.3.3): start afresh.
            self._inflater = None
        self._msg_opcode = None
        self._msg_compressed = False
        self._msg_dropping = False
        self._msg_capped = False

    def _lose_framing(self) -> None:
        self._frame = None
        self._remaining = 0
        self._hdr.clear()
        self._msg_opcode = None
        self._msg_compressed = False
        self._msg_dropping = False
        self._msg_capped = False
        self._inflater = None
        self._resyncing = True

    def _scan(self, mv: memoryview | bytes, out: list[WsEvent], final: bool) -> bytes | None:
        """Look for the next believable frame header in the held bytes plus ``mv``.

        Returns the bytes from that header on (framing found again), or None
        while still looking. What stays held is at most one candidate header and
        the start of its payload (``RESYNC_HOLD`` bytes): every candidate is
        decided once that much has arrived.
        """
        buf = self._rbuf
        buf += mv
        deflate = None if not self.deflate_known else self.deflate is not None
        pos, safe = find_frame_start(buf, masked=self.from_client, deflate=deflate, final=final)
        if pos is None:
            if safe:
                out.append(WsSkipped("resync", safe))
                del buf[:safe]
            return None
        if pos:
            out.append(WsSkipped("resync", pos))
        rest = bytes(buf[pos:])
        buf.clear()
        self._resyncing = False
        if self.frames:
            out.append(WsProblem("ws_resynced", f"framing found again after {pos} skipped bytes"))
        return rest

    def _flush_framing(self, out: list[WsEvent]) -> None:
        if self._framing:
            out.append(WsSkipped("framing", self._framing))
            self._framing = 0
