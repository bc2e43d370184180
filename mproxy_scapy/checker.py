"""Protocol-state verdicts over the decoder's record stream: which rule of ``rules.RULES`` broke where.

The checker is one more reader of the decoder's records (``Decoder`` with
``report_closed`` set, so a tunnel's end is a record too). It keeps a small
state machine per tunnel (header dialect per direction, the relay's
direction, control requests in flight) and per tunneled client
(announced by ``connection``, ended per direction, paused per direction), and
turns what breaks the reference's behaviour into ``Finding`` records as the
records stream past. Memory is bounded by what is live: a tunnel's state goes
when it closes, a client's when both directions ended (a bounded set of
recently ended ids remains to catch frames after the end).

Facts the parser already finds (bad version byte, wrapped hdrlen, too few
fields, skipped garbage, truncation) are read from the frame's problems;
the rest is judged here from the frame's fields and header text.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from .decoder import DecodedFrame, StageEvent
from .parser import Frame
from .rules import RULES_BY_ID
from .spec import CONTROL_COMMANDS

MAX_RECENTLY_ENDED = 4096
"""Clients ended both ways kept per tunnel to catch late frames for them (oldest forgotten first)."""
MAX_PENDING_REQUESTS = 10_000
"""Control requests in flight kept per tunnel; a peer that never answers cannot grow memory past this."""
MAX_UNANNOUNCED = 10_000
"""Clients seen before a tunnel's first connection frame, kept to judge once it comes (MPX201)."""

_CLOSED_REASONS = frozenset({"fin", "rst", "reused"})
"""TCP close reasons that mean the tunnel really ended in the capture (not the capture or the flow table)."""
_CLIENT_FAMILIES = {"IPv4": ipaddress.IPv4Address, "IPv6": ipaddress.IPv6Address}


class Finding:
    """One rule broken at one place: the packet, tunnel, direction and client it concerns."""

    __slots__ = ("client", "detail", "direction", "dst", "pcap_file", "pcap_frame", "rule", "src", "ts", "tunnel")

    def __init__(self, rule: str, detail: str, *, pcap_frame: int | None, ts: float | None, tunnel: int | None,
                 direction: int | None, src: str | None, dst: str | None, client: str | None,
                 pcap_file: str | None = None) -> None:
        self.rule = rule
        self.pcap_file = pcap_file
        self.detail = detail
        self.pcap_frame = pcap_frame
        self.ts = ts
        self.tunnel = tunnel
        self.direction = direction
        self.src = src
        self.dst = dst
        self.client = client

    @property
    def severity(self) -> str:
        return RULES_BY_ID[self.rule].severity

    @property
    def title(self) -> str:
        return RULES_BY_ID[self.rule].title

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "title": self.title, "detail": self.detail,
                "pcap_file": self.pcap_file, "pcap_frame": self.pcap_frame, "ts": self.ts, "tunnel": self.tunnel,
                "direction": self.direction, "src": self.src, "dst": self.dst, "client": self.client}

    def __repr__(self) -> str:
        return f"<Finding {self.rule} #{self.pcap_frame} t{self.tunnel} {self.client or ''} {self.detail!r}>"


class _Where:
    """Where something was seen, kept to report it later (a client's first frame, a request)."""

    __slots__ = ("client", "direction", "dst", "pcap_file", "pcap_frame", "src", "ts")

    def __init__(self, record: DecodedFrame, client: str | None) -> None:
        self.pcap_file = record.pcap_file
        self.pcap_frame = record.pcap_frame
        self.ts = record.ts
        self.direction = record.direction
        self.src = record.src
        self.dst = record.dst
        self.client = client


class _Client:
    __slots__ = ("announced", "ended", "first", "last", "paused")

    def __init__(self, where: _Where, announced: bool) -> None:
        self.announced = announced
        self.first = where
        self.last = where
        self.ended = [False, False]
        self.paused = [False, False]

    @property
    def live(self) -> bool:
        return not (self.ended[0] or self.ended[1])


class _Tunnel:
    __slots__ = (
        "after_gap",
        "announces",
        "clients",
        "dialect",
        "first_client",
        "id",
        "mid_stream",
        "pending",
        "recently_ended",
        "relay_direction",
        "truncated",
        "unannounced",
    )

    def __init__(self, tunnel: int, mid_stream: bool) -> None:
        self.id = tunnel
        self.mid_stream = mid_stream
        self.relay_direction: int | None = None if mid_stream else 1
        self.announces = False
        self.dialect: list[str | None] = [None, None]
        self.after_gap = [False, False]
        self.clients: dict[str, _Client] = {}
        self.recently_ended: OrderedDict[str, None] = OrderedDict()
        self.unannounced: list[tuple[str, _Where]] = []
        self.first_client: _Where | None = None
        self.pending: dict[tuple[int, int], tuple[_Where, Any]] = {}
        self.truncated: list[tuple[_Where, str]] = []


class Checker:
    """Feed it the decoder's records (``add``), then ``close()``; each returns the findings it made.

    ``tunnels`` is the decoder's live tunnel table (``Decoder.tunnels``), read
    once per tunnel to learn whether the capture caught its start. ``rules``
    limits the findings to these ids (default: every rule).
    """

    def __init__(self, tunnels: Mapping[int, Any] | None = None, rules: Collection[str] | None = None) -> None:
        self._tunnel_info = tunnels if tunnels is not None else {}
        self._rules = frozenset(rules) if rules is not None else frozenset(RULES_BY_ID)
        self._tunnels: dict[int, _Tunnel] = {}
        self._out: list[Finding] = []

    def check(self, records: Iterable[Any]) -> Iterator[Finding]:
        """Every finding of a record stream, as the records pass."""
        for record in records:
            yield from self.add(record)
        yield from self.close()

    def add(self, record: Any) -> list[Finding]:
        self._out = []
        if type(record) is DecodedFrame:
            self._frame(record)
        elif isinstance(record, StageEvent) and record.stage == "tunnel" and record.kind == "closed":
            tunnel = self._tunnels.pop(record.tunnel, None) if record.tunnel is not None else None
            if tunnel is not None:
                self._close(tunnel, record.detail, record.pcap_frame)
        return self._out

    def close(self) -> list[Finding]:
        """The records ended: tunnels never reported closed end as the capture did."""
        self._out = []
        for tunnel in list(self._tunnels.values()):
            self._close(tunnel, "capture_end", None)
        self._tunnels.clear()
        return self._out

    # -- reporting -----------------------------------------------------------------------------

    def _report(self, rule: str, detail: str, record: DecodedFrame, client: str | None = None) -> None:
        if rule in self._rules:
            self._out.append(Finding(rule, detail, pcap_frame=record.pcap_frame, ts=record.ts, tunnel=record.tunnel,
                                     direction=record.direction, src=record.src, dst=record.dst, client=client,
                                     pcap_file=record.pcap_file))

    def _report_at(self, rule: str, detail: str, tunnel: _Tunnel, where: _Where) -> None:
        if rule in self._rules:
            self._out.append(Finding(rule, detail, pcap_frame=where.pcap_frame, ts=where.ts, tunnel=tunnel.id,
                                     direction=where.direction, src=where.src, dst=where.dst, client=where.client,
                                     pcap_file=where.pcap_file))

    # -- frames --------------------------------------------------------------------------------

    def _tunnel(self, record: DecodedFrame) -> _Tunnel:
        tunnel = self._tunnels.get(record.tunnel)
        if tunnel is None:
            info = self._tunnel_info.get(record.tunnel)
            tunnel = self._tunnels[record.tunnel] = _Tunnel(record.tunnel, bool(getattr(info, "mid_stream", False)))
        return tunnel

    def _frame(self, record: DecodedFrame) -> None:
        frame = record.frame
        tunnel = self._tunnel(record)
        direction = record.direction
        kinds = {problem.kind for problem in frame.problems}
        if frame.kind == "gap" or "gap" in kinds:
            tunnel.after_gap[direction] = True
            return
        after_gap, tunnel.after_gap[direction] = tunnel.after_gap[direction], False
        if "truncated" in kinds:
            tunnel.truncated.append((_Where(record, frame.client_id), _truncation(frame)))
        if frame.kind == "garbage":
            # bytes skipped right after lost ones, or before the first frame of a tunnel picked up mid-way,
            # are the capture's doing, not the sender's
            if "garbage_skipped" in kinds and not after_gap and not (tunnel.mid_stream and frame.offset == 0):
                self._report("MPX110", f"{frame.length} bytes at stream offset {frame.offset}", record)
            return
        self._header_rules(record, frame, kinds, tunnel)
        if "truncated" in kinds:
            return
        if frame.kind == "control":
            self._control(record, frame, tunnel)
        else:
            self._client(record, frame, tunnel)

    def _header_rules(self, record: DecodedFrame, frame: Frame, kinds: set[str], tunnel: _Tunnel) -> None:
        client = frame.client_id
        if "bad_version" in kinds:
            self._report("MPX101", f"version byte 0x{frame.version:02x}", record, client)
        if "hdrlen_wrapped" in kinds:
            self._report("MPX102", f"header is {len((frame.header or '').encode())} bytes, hdrlen byte "
                         f"{frame.hdrlen}", record, client)
        if "too_few_fields" in kinds:
            self._report("MPX111", f"header {frame.header!r}", record, client)
        if "header_not_utf8" in kinds:
            self._report("MPX112", f"header {frame.header!r}", record, client)
        fields = _header_fields(frame)
        datalen = fields[3] if len(fields) > 3 else None
        if datalen is not None and not (datalen.isascii() and datalen.isdigit() and str(int(datalen)) == datalen):
            self._report("MPX103", f"datalen {datalen!r}", record, client)
        dialect = frame.dialect
        first = tunnel.dialect[record.direction]
        if first is None:
            tunnel.dialect[record.direction] = dialect
        elif dialect != first:
            self._report("MPX106", f"a {dialect} header after {first} ones", record, client)
        if frame.kind != "control" and len(fields) >= 3:
            self._address_rules(record, frame, fields, client)

    def _address_rules(self, record: DecodedFrame, frame: Frame, fields: list[str], client: str | None) -> None:
        family, address, port = fields[0], fields[1], fields[2]
        parse = _CLIENT_FAMILIES.get(family)
        if parse is None:
            self._report("MPX107", f"family {family!r}", record, client)
        else:
            try:
                parse(address.split("%", 1)[0] if family == "IPv6" else address)
            except ValueError:
                self._report("MPX108", f"{family} address {address!r}", record, client)
        bad = [f"port {port!r}"] if not _port_ok(port, optional=False) else []
        if len(fields) > 5 and not _port_ok(fields[5], optional=True):
            bad.append(f"serviceport {fields[5]!r}")
        if bad:
            self._report("MPX109", ", ".join(bad), record, client)

    # -- tunneled clients ----------------------------------------------------------------------

    def _client(self, record: DecodedFrame, frame: Frame, tunnel: _Tunnel) -> None:
        client_id = frame.client_id or ""
        direction = record.direction
        kind = frame.kind
        where = _Where(record, client_id)
        if tunnel.first_client is None:
            tunnel.first_client = where
        state = tunnel.clients.get(client_id)
        if kind == "connection":
            self._connection(record, frame, tunnel, state, where)
            return
        if state is None:
            if client_id in tunnel.recently_ended and (kind != "data" or tunnel.announces):
                self._report("MPX204", f"{kind} after the client ended both ways", record, client_id)
                return
            tunnel.recently_ended.pop(client_id, None)
            state = tunnel.clients[client_id] = _Client(where, announced=False)
            if tunnel.announces:
                self._unannounced(tunnel, client_id, where)
            elif len(tunnel.unannounced) < MAX_UNANNOUNCED:
                tunnel.unannounced.append((client_id, where))
        elif state.ended[direction]:
            if kind == "data" and not tunnel.announces and not state.live:
                state = tunnel.clients[client_id] = _Client(where, announced=False)  # a reused port starts anew
            else:
                self._report("MPX204", f"{kind} after this side's end or error", record, client_id)
                return
        state.last = where
        if kind in ("end", "error"):
            state.ended[direction] = True
            self._end_body(record, frame, client_id)
            if state.ended[1 - direction]:
                self._forget(tunnel, client_id)
        elif kind in ("pause", "resume"):
            body = frame.body or b""
            if body != b" " and not (body.isdigit() and body.isascii()):
                self._report("MPX302", f"{kind} body {_show(body)}", record, client_id)
            if kind == "pause":
                state.paused[direction] = True
            else:
                if not state.paused[direction]:
                    self._report("MPX208", "no pause in force in this direction", record, client_id)
                state.paused[direction] = False

    def _connection(self, record: DecodedFrame, frame: Frame, tunnel: _Tunnel, state: _Client | None,
                    where: _Where) -> None:
        client_id = where.client or ""
        direction = record.direction
        if tunnel.relay_direction is None:
            tunnel.relay_direction = direction
        elif direction != tunnel.relay_direction:
            self._report("MPX206", f"connection sent by {record.src} (the device)", record, client_id)
        if frame.servicename is None:
            self._report("MPX207", f"header {frame.header!r} has {len(_header_fields(frame))} fields, 8 expected",
                         record, client_id)
        if state is not None and state.live:
            self._report("MPX205", f"client live since packet {state.first.pcap_frame}", record, client_id)
        tunnel.recently_ended.pop(client_id, None)
        tunnel.clients[client_id] = _Client(where, announced=True)
        if not tunnel.announces:
            tunnel.announces = True
            for other, first in tunnel.unannounced:
                self._unannounced(tunnel, other, first)
            tunnel.unannounced.clear()

    def _unannounced(self, tunnel: _Tunnel, client_id: str, where: _Where) -> None:
        if tunnel.mid_stream:
            self._report_at("MPX202", "first frame of this client in the capture", tunnel, where)
        else:
            self._report_at("MPX201", "no connection frame before this client's first frame", tunnel, where)

    def _end_body(self, record: DecodedFrame, frame: Frame, client_id: str) -> None:
        body = frame.body or b""
        if frame.kind == "end":
            if body not in (b"", b" "):
                self._report("MPX303", f"end body {_show(body)}", record, client_id)
        elif body not in (b"", b" "):
            message = frame.control
            if not (isinstance(message, dict) and "message" in message and "code" in message):
                self._report("MPX301", f"error body {_show(body)}", record, client_id)

    def _forget(self, tunnel: _Tunnel, client_id: str) -> None:
        """Ended both ways: only its id is kept, in a bounded set, to catch frames that still follow."""
        del tunnel.clients[client_id]
        tunnel.recently_ended[client_id] = None
        if len(tunnel.recently_ended) > MAX_RECENTLY_ENDED:
            tunnel.recently_ended.popitem(last=False)

    # -- control channel -----------------------------------------------------------------------

    def _control(self, record: DecodedFrame, frame: Frame, tunnel: _Tunnel) -> None:
        message = frame.control
        if not isinstance(message, list) or not message or type(message[0]) is not int:
            self._report("MPX401", f"control body {_show(frame.body or b'')}", record)
            return
        message_id = message[0]
        direction = record.direction
        if message_id > 0:
            command = message[1] if len(message) > 1 else None
            if command not in CONTROL_COMMANDS:
                self._report("MPX406", f"command {command!r} (id {message_id})", record)
            if command == "hello" and tunnel.relay_direction is None:
                tunnel.relay_direction = direction
            key = (direction, message_id)
            if key in tunnel.pending:
                self._report("MPX403", f"id {message_id} still awaits a reply to packet "
                             f"{tunnel.pending[key][0].pcap_frame}", record)
            if len(tunnel.pending) < MAX_PENDING_REQUESTS or key in tunnel.pending:
                tunnel.pending[key] = (_Where(record, None), command)
        elif message_id < 0:
            request = tunnel.pending.pop((1 - direction, -message_id), None)
            if request is None:
                if not tunnel.mid_stream:
                    self._report("MPX402", f"reply id {message_id}: no request {-message_id} came the other way",
                                 record)
            elif request[1] == "hello" and message != [message_id, None]:
                self._report("MPX405", f"hello answered with {_show(frame.body or b'')}, the reference answers "
                             f"[{message_id},null]", record)

    # -- the tunnel's end ----------------------------------------------------------------------

    def _close(self, tunnel: _Tunnel, reason: str, pcap_frame: int | None) -> None:
        closed = reason in _CLOSED_REASONS
        at = f"tunnel closed ({reason}) at packet {pcap_frame}" if pcap_frame is not None else f"tunnel {reason}"
        for where, what in tunnel.truncated:
            self._report_at("MPX104" if closed else "MPX105", f"{what}; {at}" if closed else what, tunnel, where)
        if not tunnel.announces and tunnel.first_client is not None:
            self._report_at("MPX203", "first client frame of a tunnel that never sent connection", tunnel,
                            tunnel.first_client)
        if not closed:
            return
        for state in tunnel.clients.values():
            if state.live:
                self._report_at("MPX210", f"last frame of the client; {at}", tunnel, state.last)
            for direction in (0, 1):
                if state.paused[direction]:
                    self._report_at("MPX209", f"paused in direction {direction}; {at}", tunnel, state.last)
        for where, command in tunnel.pending.values():
            rule = "MPX405" if command == "hello" else "MPX404"
            self._report_at(rule, f"request {command!r} never answered; {at}", tunnel, where)


def _header_fields(frame: Frame) -> list[str]:
    """The header's fields as text, the way the parser split them (Go's trailing comma and newline dropped)."""
    text = frame.header or ""
    if frame.dialect == "go":
        text = text.strip()
        fields = text.split(",")
        if len(fields) > 1 and fields[-1] == "":
            fields.pop()
        return fields
    return text.split(",")


def _port_ok(text: str, *, optional: bool) -> bool:
    if text == "":
        return optional
    return text.isascii() and text.isdigit() and str(int(text)) == text and 1 <= int(text) <= 65535


def _truncation(frame: Frame) -> str:
    if frame.datalen is not None and frame.is_frame:
        return f"{frame.body_len} of {frame.datalen} body bytes"
    return f"{frame.length} bytes of a frame header"


def _show(body: bytes, limit: int = 60) -> str:
    """A body for a one-line detail: JSON-ish text, cut."""
    text = body[:limit].decode("utf-8", errors="replace")
    return repr(text) + ("..." if len(body) > limit else "")
