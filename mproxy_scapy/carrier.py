"""Per TCP connection: is this M-PROXY, and how does it travel?

M-PROXY runs over plain TCP or inside WebSocket binary messages, on any port, so
the carrier is recognised by content. A connection whose client opens with an
HTTP request carrying ``Upgrade: websocket`` is WebSocket once the server answers
101; a direction that starts with 0xFE is raw M-PROXY; anything else recognisable
(TLS, SSH, plain HTTP) is not M-PROXY and is skipped, never an error. When the
capture started late (no handshake, no 0xFE at the start), bytes are held (a
bounded amount) until WebSocket framing around M-PROXY, or an M-PROXY frame
start, is found.

Out come one M-PROXY byte stream per direction (``MproxyBytes``/``MproxyGap``)
and what was seen on the way (``CarrierDetected``, ``CarrierProblem``,
``Skipped``).
"""

from __future__ import annotations

import re
from typing import Any

from .header import ParsedHeader
from .spec import REDACTED
from .websocket import (
    DEFAULT_MAX_MESSAGE,
    WS_PROBLEMS,
    DeflateParams,
    WebSocketUnframer,
    WsEvent,
    WsGap,
    WsPayload,
    WsProblem,
    WsSkipped,
    find_frame_start,
)

DEFAULT_MAX_DETECT = 64 * 1024
"""Bytes held per direction while the carrier is undecided (HTTP headers, mid-stream pickup)."""

CARRIER_PROBLEMS: dict[str, str] = {
    **WS_PROBLEMS,
    "upgrade_refused": "The server answered the WebSocket upgrade with a status other than 101",
    "bad_upgrade_response": "The answer to the WebSocket upgrade is not an HTTP response",
    "http_header_too_long": "HTTP upgrade headers longer than the detection limit",
    "gap_in_http_header": "Bytes of the HTTP upgrade were lost in the capture",
}
"""Every problem kind a Carrier reports."""

_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ", b"CONNECT ", b"TRACE ")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ACCESS_TOKEN = re.compile(r"((?:^|[?&;])access_token=)([^&#;]*)")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_RESCAN_MIN = 256


class MproxyBytes:
    """Bytes of one direction's M-PROXY stream, from the packet ``frame_no`` captured at ``ts``."""

    __slots__ = ("data", "direction", "frame_no", "ts")

    def __init__(self, direction: int, data: bytes | memoryview, frame_no: int | None, ts: float | None) -> None:
        self.direction = direction
        self.data = data
        self.frame_no = frame_no
        self.ts = ts

    def __repr__(self) -> str:
        return f"MproxyBytes({self.direction}, {len(self.data)} bytes, frame {self.frame_no})"


class MproxyGap:
    """``length`` bytes of one direction's M-PROXY stream were lost."""

    __slots__ = ("direction", "length")

    def __init__(self, direction: int, length: int) -> None:
        self.direction = direction
        self.length = length

    def __repr__(self) -> str:
        return f"MproxyGap({self.direction}, {self.length})"


class CarrierDetected:
    """The connection carries M-PROXY as ``kind`` ('tcp' or 'websocket'); ``info`` says what was seen.

    ``info`` always has ``midstream`` (no handshake or stream start seen) and
    ``assumed`` (text, or None when nothing had to be assumed). For WebSocket
    with a captured handshake: ``method``, ``path``, ``http_version``,
    ``request_headers``, ``status``, ``reason``, ``response_headers``,
    ``permessage_deflate`` (dict or None), ``access_token`` (when the URL has
    one). Credentials are ``REDACTED`` unless the Carrier shows secrets.
    """

    __slots__ = ("frame_no", "info", "kind", "ts")

    def __init__(self, kind: str, info: dict[str, Any], frame_no: int | None = None, ts: float | None = None) -> None:
        self.kind = kind
        self.info = info
        self.frame_no = frame_no
        self.ts = ts

    def __repr__(self) -> str:
        return f"CarrierDetected({self.kind!r}, {self.info!r})"


class CarrierProblem:
    """Something wrong at the carrier level, named by a kind from ``CARRIER_PROBLEMS``."""

    __slots__ = ("detail", "direction", "frame_no", "kind")

    def __init__(self, direction: int, kind: str, detail: str, frame_no: int | None) -> None:
        self.direction = direction
        self.kind = kind
        self.detail = detail
        self.frame_no = frame_no

    def __repr__(self) -> str:
        return f"CarrierProblem({self.direction}, {self.kind!r}, {self.detail!r})"


class Skipped:
    """``nbytes`` received bytes that are not M-PROXY: ``kind`` says what they were.

    Kinds: 'not_mproxy' (the connection is something else), 'http_upgrade',
    'framing' (WebSocket headers), 'text', 'ping', 'pong', 'close',
    'after_close', 'reserved', 'orphan', 'message_dropped', 'resync'.
    """

    __slots__ = ("detail", "direction", "kind", "nbytes")

    def __init__(self, direction: int, kind: str, nbytes: int, detail: str | None = None) -> None:
        self.direction = direction
        self.kind = kind
        self.nbytes = nbytes
        self.detail = detail

    def __repr__(self) -> str:
        return f"Skipped({self.direction}, {self.kind!r}, {self.nbytes})"


CarrierEvent = MproxyBytes | MproxyGap | CarrierDetected | CarrierProblem | Skipped


class _Held:
    """One held chunk (``data``) or capture gap (``data`` None, ``length``) of an undecided direction."""

    __slots__ = ("data", "frame_no", "length", "ts")

    def __init__(self, data: bytes | memoryview | None, length: int, frame_no: int | None, ts: float | None) -> None:
        self.data = data
        self.length = length
        self.frame_no = frame_no
        self.ts = ts


class HttpHead:
    """An HTTP request or response head: start line and headers (names as sent, duplicates joined)."""

    __slots__ = ("headers", "start", "wire_length")

    def __init__(self, raw: bytes, wire_length: int) -> None:
        lines = raw.decode("latin-1").replace("\r\n", "\n").split("\n")
        self.start = lines[0]
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name.strip():
                continue
            name = name.strip()
            value = value.strip()
            existing = self.get(name)
            if existing is None:
                self.headers[name] = value
            else:
                key = next(k for k in self.headers if k.lower() == name.lower())
                self.headers[key] = f"{existing}, {value}"
        self.wire_length = wire_length

    def get(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lower:
                return value
        return None

    def has_token(self, name: str, token: str) -> bool:
        value = self.get(name) or ""
        return token.lower() in (t.strip().lower() for t in value.split(","))


def _split_head(buf: bytearray) -> tuple[bytes, int] | None:
    """The head's bytes and its wire length (blank line included), once the blank line is there."""
    match = _HEADER_END.search(buf)
    if match is None:
        return None
    return bytes(buf[: match.start()]), match.end()


def find_mproxy_start(buf: bytes | bytearray, final: bool) -> tuple[int | None, int]:
    """Offset of the first plausible M-PROXY frame start, as ``find_frame_start`` reports it."""
    n = len(buf)
    i = buf.find(b"\xfe")
    while i != -1:
        if i + 2 > n or i + 2 + buf[i + 1] > n:
            if not final:
                return None, i
        elif ParsedHeader(bytes(buf[i + 2 : i + 2 + buf[i + 1]])).looks_like_frame_start():
            return i, i
        i = buf.find(b"\xfe", i + 1)
    return None, n


class Carrier:
    """The carrier of one TCP connection; direction 0 is client to server.

    ``kind`` is None while undecided, then 'tcp', 'websocket' or 'none' (not
    M-PROXY; ``other_protocol`` names what it looked like).
    """

    def __init__(
        self,
        *,
        show_secrets: bool = False,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_detect: int = DEFAULT_MAX_DETECT,
    ) -> None:
        self.show_secrets = show_secrets
        self.max_message = max_message
        self.max_detect = max_detect
        self.kind: str | None = None
        self.other_protocol: str | None = None
        self.info: dict[str, Any] = {}
        self.unframers: list[WebSocketUnframer | None] = [None, None]
        self._stage = "start"
        self._held: list[list[_Held]] = [[], []]
        self._held_bytes = [0, 0]
        self._scan: list[bytearray] = [bytearray(), bytearray()]
        self._at_start = [True, True]
        self._scanned = [0, 0]
        self._request: HttpHead | None = None
        self._last: tuple[int | None, float | None] = (None, None)

    # -- public interface -------------------------------------------------

    @property
    def passthrough(self) -> bool:
        """Raw M-PROXY: from now on ``feed`` returns each chunk unchanged as one ``MproxyBytes``.

        The decoder then hands chunks to the parser itself, without the event.
        """
        return self.kind == "tcp"

    def feed(
        self, direction: int, data: bytes | memoryview, frame_no: int | None = None, ts: float | None = None
    ) -> list[CarrierEvent]:
        """The next bytes of ``direction``, from the packet ``frame_no`` captured at ``ts``."""
        if not data:
            return []
        kind = self.kind
        if kind == "tcp":
            return [MproxyBytes(direction, data, frame_no, ts)]
        if kind == "websocket":
            out: list[CarrierEvent] = []
            unframer = self.unframers[direction]
            assert unframer is not None
            self._convert(direction, unframer.feed(data), frame_no, ts, out)
            return out
        if kind == "none":
            return [Skipped(direction, "not_mproxy", len(data))]
        self._held[direction].append(_Held(data, len(data), frame_no, ts))
        self._held_bytes[direction] += len(data)
        self._scan[direction] += data
        self._last = (frame_no, ts)
        return self._decide(final=False)

    def gap(self, direction: int, length: int) -> list[CarrierEvent]:
        """``length`` bytes of ``direction`` were lost in the capture here."""
        if length <= 0:
            return []
        kind = self.kind
        if kind == "tcp":
            return [MproxyGap(direction, length)]
        if kind == "websocket":
            out: list[CarrierEvent] = []
            unframer = self.unframers[direction]
            assert unframer is not None
            self._convert(direction, unframer.gap(length), None, None, out)
            return out
        if kind == "none":
            return []
        self._held[direction].append(_Held(None, length, None, None))
        self._scan[direction].clear()
        self._scanned[direction] = 0
        self._at_start[direction] = False
        out = []
        if (self._stage, direction) in (("request", 0), ("response", 1)):
            out.append(CarrierProblem(direction, "gap_in_http_header", f"{length} bytes lost", None))
            if direction == 0:
                self._stage = "start"
        out.extend(self._decide(final=False))
        return out

    def close(self) -> list[CarrierEvent]:
        """The connection ended: decide with what is held, and report unfinished WebSocket frames."""
        out: list[CarrierEvent] = []
        if self.kind is None:
            out.extend(self._decide(final=True))
        if self.kind == "websocket":
            for direction, unframer in enumerate(self.unframers):
                if unframer is not None:
                    self._convert(direction, unframer.close(), None, None, out)
        return out

    # -- detection ---------------------------------------------------------

    def _decide(self, final: bool) -> list[CarrierEvent]:
        if self._stage == "start":
            verdict = self._by_first_bytes(final)
            if verdict is not None:
                return verdict
        if self._stage == "request":
            return self._on_request(final)
        if self._stage == "response":
            return self._on_response(final)
        return self._pickup(final)

    def _by_first_bytes(self, final: bool) -> list[CarrierEvent] | None:
        """Decide from how a direction starts; None when its start says nothing (pick up mid-stream)."""
        for direction in (0, 1):
            if not self._at_start[direction]:
                continue
            head = bytes(self._scan[direction][:8])
            if not head:
                continue
            if head[0] == 0xFE:
                return self._settle_raw(
                    {"midstream": False, "assumed": None, "detected_by": f"direction {direction} starts with 0xFE"}
                )
            if direction == 0:
                if any(head.startswith(m) for m in _METHODS):
                    self._stage = "request"
                    return None
                if not final and len(head) < 8 and any(m.startswith(head) for m in _METHODS):
                    return []
            if direction == 1 and head.startswith(b"HTTP/") and not self._held_bytes[0] and not final:
                return []  # an answer seen before its request: wait for the request
            other = _other_protocol(head)
            if other is not None:
                return self._settle_none(other)
        if not final and all(self._at_start) and sum(self._held_bytes) < 8:
            return []
        self._stage = "pickup"
        return None

    def _on_request(self, final: bool) -> list[CarrierEvent]:
        split = _split_head(self._scan[0])
        if split is None:
            if len(self._scan[0]) > self.max_detect:
                return [
                    CarrierProblem(0, "http_header_too_long", f"no end of headers in {self.max_detect} bytes", None),
                    *self._settle_none("http"),
                ]
            return self._settle_none("http") if final else []
        raw, wire = split
        request = HttpHead(raw, wire)
        if not request.has_token("Upgrade", "websocket"):
            return self._settle_none("http")
        self._request = request
        del self._scan[0][:wire]
        self._stage = "response"
        return self._on_response(final)

    def _on_response(self, final: bool) -> list[CarrierEvent]:
        scan = self._scan[1]
        if not self._at_start[1]:
            return self._settle_websocket(None, "the upgrade response was lost in the capture")
        if len(scan) >= 5 and not scan.startswith(b"HTTP/"):
            problem = CarrierProblem(1, "bad_upgrade_response", f"starts with {bytes(scan[:16])!r}", None)
            return [problem, *self._settle_websocket(None, "no HTTP response to the upgrade")]
        split = _split_head(scan)
        if split is None:
            if len(scan) > self.max_detect or self._held_bytes[0] > self.max_detect + self._request.wire_length:
                return self._settle_websocket(None, "no complete answer to the upgrade")
            if final:
                if not scan and not self._scan[0]:
                    return self._settle_none("http")  # an upgrade request left unanswered, nothing after it
                return self._settle_websocket(None, "the connection ended before the upgrade answer")
            return []
        raw, wire = split
        response = HttpHead(raw, wire)
        parts = response.start.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        if status != 101:
            problem = CarrierProblem(1, "upgrade_refused", f"status line {response.start!r}", self._last[0])
            return [problem, *self._settle_none("http")]
        return self._settle_websocket(response, None)

    def _pickup(self, final: bool) -> list[CarrierEvent]:
        """No handshake or stream start seen: look for WebSocket around M-PROXY, then for raw M-PROXY."""
        verdicts = []
        for direction in (0, 1):
            buf = self._scan[direction]
            if not final and len(buf) < max(_RESCAN_MIN, 2 * self._scanned[direction]):
                verdicts.append(None)
                continue
            self._scanned[direction] = len(buf)
            ws_pos, ws_safe = find_frame_start(buf, masked=None, deflate=None, final=final)
            raw_pos, _ = find_mproxy_start(buf, final)
            if ws_pos is not None and (raw_pos is None or ws_pos <= raw_pos):
                # Clients mask, servers do not: the frame found tells which side is which.
                masked = bool(buf[ws_pos + 1] & 0x80)
                verdicts.append("websocket")
                client_direction = direction if masked else 1 - direction
            elif raw_pos is not None and ws_safe > raw_pos:
                verdicts.append("tcp")
            else:
                verdicts.append(None)
        for direction, verdict in enumerate(verdicts):
            if verdict == "websocket":
                return self._settle_websocket(
                    None,
                    f"capture started mid-stream; WebSocket binary frames with M-PROXY in direction {direction}",
                    client_direction,
                )
        for direction, verdict in enumerate(verdicts):
            if verdict == "tcp":
                return self._settle_raw(
                    {
                        "midstream": True,
                        "assumed": f"capture started mid-stream; raw M-PROXY frame found in direction {direction}",
                    }
                )
        if final or max(self._held_bytes) > self.max_detect:
            return self._settle_none("unknown")
        return []

    # -- settling ------------------------------------------------------------

    def _settle_raw(self, info: dict[str, Any]) -> list[CarrierEvent]:
        self.kind = "tcp"
        self.info = info
        frame_no, ts = self._last
        out: list[CarrierEvent] = [CarrierDetected("tcp", info, frame_no, ts)]
        for direction in (0, 1):
            for held in self._release(direction):
                if held.data is None:
                    out.append(MproxyGap(direction, held.length))
                else:
                    out.append(MproxyBytes(direction, held.data, held.frame_no, held.ts))
        return out

    def _settle_none(self, other: str) -> list[CarrierEvent]:
        self.kind = "none"
        self.other_protocol = other
        out: list[CarrierEvent] = []
        for direction in (0, 1):
            for held in self._release(direction):
                if held.data is not None:
                    out.append(Skipped(direction, "not_mproxy", held.length, other))
        return out

    def _settle_websocket(
        self, response: HttpHead | None, assumed: str | None, client_direction: int | None = None
    ) -> list[CarrierEvent]:
        """Start unframing both directions and replay what was held.

        ``client_direction`` is the side whose frames are masked, when known
        without a handshake.
        """
        self.kind = "websocket"
        request = self._request
        if request is not None:
            client_direction = 0
        deflate = DeflateParams.from_extensions(response.get("Sec-WebSocket-Extensions")) if response else None
        info: dict[str, Any] = {"midstream": request is None, "assumed": assumed}
        if request is not None:
            info.update(self._request_info(request))
        if response is not None:
            parts = response.start.split(" ", 2)
            info["status"] = int(parts[1])
            info["reason"] = parts[2] if len(parts) > 2 else ""
            info["response_headers"] = self._headers_info(response.headers)
            info["permessage_deflate"] = deflate.as_dict() if deflate else None
        self.info = info
        synced = (request is not None, response is not None)
        for direction in (0, 1):
            self.unframers[direction] = WebSocketUnframer(
                from_client=None if client_direction is None else direction == client_direction,
                deflate=deflate,
                deflate_known=response is not None,
                synced=synced[direction],
                max_message=self.max_message,
            )
        frame_no, ts = self._last
        out: list[CarrierEvent] = [CarrierDetected("websocket", info, frame_no, ts)]
        heads = (request, response)
        for direction in (0, 1):
            head = heads[direction]
            skip = head.wire_length if head is not None else 0
            if skip:
                out.append(Skipped(direction, "http_upgrade", skip))
            unframer = self.unframers[direction]
            assert unframer is not None
            for held in self._release(direction):
                if held.data is None:
                    self._convert(direction, unframer.gap(held.length), None, None, out)
                    continue
                data = held.data
                if skip:
                    cut = min(skip, len(data))
                    data = data[cut:]
                    skip -= cut
                if data:
                    self._convert(direction, unframer.feed(data), held.frame_no, held.ts, out)
        return out

    def _release(self, direction: int) -> list[_Held]:
        held = self._held[direction]
        self._held[direction] = []
        self._held_bytes[direction] = 0
        self._scan[direction] = bytearray()
        return held

    # -- secrets and events ------------------------------------------------

    def _request_info(self, request: HttpHead) -> dict[str, Any]:
        parts = request.start.split(" ")
        path = parts[1] if len(parts) > 1 else ""
        info: dict[str, Any] = {
            "method": parts[0],
            "path": path if self.show_secrets else _ACCESS_TOKEN.sub(lambda m: m.group(1) + REDACTED, path),
            "http_version": parts[2] if len(parts) > 2 else "",
            "request_headers": self._headers_info(request.headers),
        }
        token = _ACCESS_TOKEN.search(path.partition("?")[2])
        if token is not None:
            info["access_token"] = token.group(2) if self.show_secrets else REDACTED
        return info

    def _headers_info(self, headers: dict[str, str]) -> dict[str, str]:
        if self.show_secrets:
            return dict(headers)
        return {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}

    @staticmethod
    def _convert(
        direction: int, events: list[WsEvent], frame_no: int | None, ts: float | None, out: list[CarrierEvent]
    ) -> None:
        for event in events:
            if type(event) is WsPayload:
                out.append(MproxyBytes(direction, event.data, frame_no, ts))
            elif type(event) is WsSkipped:
                out.append(Skipped(direction, event.kind, event.nbytes, event.detail))
            elif type(event) is WsProblem:
                out.append(CarrierProblem(direction, event.kind, event.detail, frame_no))
            elif type(event) is WsGap:
                out.append(MproxyGap(direction, event.length))


def _other_protocol(head: bytes) -> str | None:
    """A well-known protocol's opening bytes, so it is skipped without holding bytes."""
    if len(head) >= 3 and head[0] in (0x14, 0x15, 0x16, 0x17) and head[1] == 0x03 and head[2] <= 0x04:
        return "tls"
    if head.startswith(b"SSH-"):
        return "ssh"
    if head.startswith(b"HTTP/"):
        return "http"
    return None
