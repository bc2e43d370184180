"""The streaming pipeline glue: capture items in, decoded M-PROXY records out.

capture source -> ``TcpReassembler`` -> one ``Carrier`` per TCP connection ->
one ``FrameParser`` per (connection, direction) -> records. Each stage is its
own incremental state machine; this module only routes their events and puts
the context a reader needs (pcap frame number, time, endpoints, carrier) on
every frame. Nothing here builds a Scapy object: per packet it does one dict
lookup for the connection and hands the bytes on.

Problems of the earlier stages (a truncated capture, a TCP gap, a bad
WebSocket frame) are not lost: they come out as ``StageEvent`` records in
capture order, so outputs can show them and stats can count them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .parser import DEFAULT_MAX_BODY_HELD, Frame, FrameParser

if TYPE_CHECKING:
    from .tls import KeyLog


class DecodedFrame:
    """One parser record (a frame, or skipped garbage / lost bytes) with where and when it was seen.

    ``pcap_frame`` and ``ts`` are those of the packet that completed the
    record: the packet whose bytes let the parser decide it (a frame's last
    byte; for skipped garbage, the start of the frame after it), or the packet
    that closed the connection or showed bytes lost. A streaming dissector
    shows it there too: Wireshark in one pass cannot show a record in a packet
    before it. Records the end of the capture completes go to the last
    packet that carried bytes of their direction; all others come out in
    packet order.
    ``src``/``dst`` are the tunnel connection's sender and receiver as
    ``ip:port`` text; ``direction`` 0 is tunnel client -> tunnel server.
    ``reply_to``/``reply_time`` are set on control replies by the session
    tracker when it has seen the request. ``pcap_file`` is None when one
    input is read; with several (``inputs.InputSet.label``) it names the file
    and ``pcap_frame`` is the packet number within that file.
    """

    __slots__ = ("carrier", "direction", "dst", "frame", "pcap_file", "pcap_frame", "reply_time", "reply_to", "src",
                 "ts", "tunnel")

    def __init__(self, frame: Frame, pcap_frame: int, ts: float, carrier: str, tunnel: int, direction: int,
                 src: str, dst: str) -> None:
        self.frame = frame
        self.pcap_frame = pcap_frame
        self.ts = ts
        self.carrier = carrier
        self.tunnel = tunnel
        self.direction = direction
        self.src = src
        self.dst = dst
        self.reply_to: int | None = None
        self.reply_time: float | None = None
        self.pcap_file: str | None = None

    @property
    def problems(self) -> list[Any]:
        return self.frame.problems

    def __repr__(self) -> str:
        return f"<DecodedFrame #{self.pcap_frame} t{self.tunnel}/{self.direction} {self.frame!r}>"


class StageEvent:
    """Something a stage before the M-PROXY parser reports: a problem, a carrier found, bytes skipped.

    ``stage`` is ``capture``, ``tcp``, ``tls`` or ``carrier``. ``is_problem`` is False
    for notes that are not errors (a carrier detected, a non-M-PROXY
    connection or a WebSocket text message skipped); ``nbytes`` counts the
    bytes a note is about. ``pcap_file`` as on ``DecodedFrame``.
    """

    __slots__ = ("detail", "direction", "dst", "is_problem", "kind", "nbytes", "pcap_file", "pcap_frame", "src",
                 "stage", "ts", "tunnel")

    def __init__(self, stage: str, kind: str, detail: str, pcap_frame: int | None, ts: float | None, *,
                 tunnel: int | None = None, direction: int | None = None, src: str | None = None,
                 dst: str | None = None, is_problem: bool = True, nbytes: int = 0) -> None:
        self.stage = stage
        self.kind = kind
        self.detail = detail
        self.pcap_frame = pcap_frame
        self.ts = ts
        self.tunnel = tunnel
        self.direction = direction
        self.src = src
        self.dst = dst
        self.is_problem = is_problem
        self.nbytes = nbytes
        self.pcap_file: str | None = None

    def __repr__(self) -> str:
        return f"<StageEvent {self.stage}:{self.kind} #{self.pcap_frame} t{self.tunnel} {self.detail!r}>"


Record = DecodedFrame | StageEvent

TCP_GAP_MEANING = "Bytes of a TCP stream are missing from the capture (a segment was lost)"
"""The one stage problem the decoder names itself: the reassembler reports gaps as events."""


class TunnelInfo:
    """One TCP connection that carries M-PROXY, with totals for ``mproxy stats``.

    ``mid_stream`` is True when its TCP handshake was not captured: the capture
    started after the tunnel did, so its first frames may answer ones never seen.
    """

    __slots__ = ("carrier", "carrier_info", "client", "closed", "first_ts", "frames", "id", "last_ts",
                 "mid_stream", "order", "server", "stream_bytes")

    def __init__(self, tunnel: int, client: str, server: str, carrier: str, info: dict[str, Any], *,
                 mid_stream: bool = False) -> None:
        self.id = tunnel
        self.mid_stream = mid_stream
        self.client = client
        self.server = server
        self.carrier = carrier
        self.carrier_info = info
        self.frames = [0, 0]
        self.stream_bytes = [0, 0]
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.closed: str | None = None
        self.order: tuple[int, int, int] = (0, 0, 0)
        """Where it was found, as a record key of ``Decoder.decode_keyed`` (plus a count): merges shards' tunnels."""


class _Conn:
    """Per TCP connection state: its carrier, parsers made on first use, and its endpoints."""

    __slots__ = ("carrier", "carrier_kind", "closed", "conn", "endpoints", "frame_no", "last_packet", "parsers",
                 "passthrough", "synced", "tls", "tls_checked", "ts", "tunnel")

    def __init__(self, conn: Any, carrier: Any) -> None:
        self.conn = conn
        self.carrier = carrier
        self.carrier_kind = ""
        self.passthrough = False
        """The carrier hands every byte on unchanged (raw TCP, no TLS): data skips it and its events."""
        self.synced = bool(conn.syn_seen)
        self.parsers: list[FrameParser | None] = [None, None]
        self.endpoints = (conn.endpoint(0), conn.endpoint(1))
        self.closed = [False, False]
        self.tunnel: TunnelInfo | None = None
        self.frame_no = 0
        self.ts = 0.0
        self.tls: Any = None
        self.tls_checked = False
        self.last_packet: list[tuple[int, float] | None] = [None, None]
        """Per direction: (packet number, time) of the last packet that carried bytes of its M-PROXY stream."""


def _default_reassembler() -> Any:
    from .tcp import TcpReassembler

    return TcpReassembler()


def _carrier_factory(show_secrets: bool) -> Callable[[], Any]:
    from .carrier import Carrier

    return lambda: Carrier(show_secrets=show_secrets)


_TERMINAL_CLOSE = frozenset({"rst", "evicted", "capture_end", "reused"})

END_OF_ITEMS = 1 << 62
"""Record keys of ``Decoder.decode_keyed`` at the capture end: ``(END_OF_ITEMS, n)`` for the reassembler's
closing events, ``(END_OF_ITEMS + 1, connection id)`` for the connections still open then."""


def flow_shard(conn_id: int, count: int) -> int:
    """The shard (0 .. count-1) of the TCP connection numbered ``conn_id``: its number, dealt round.

    Every shard keeps the TCP state of every connection (cheaply for other
    shards' ones: ``Decoder.quiet_skipper``), so every shard numbers every
    connection alike (1, 2, ... in order of first segment, the tunnel numbers
    of the output): the number is a key all shards agree on without talking,
    the same whichever way round the connection is read, in any process, run
    or Python version. Dealt round, N connections split as evenly as they can
    (8 tunnels: 4 and 4 on two shards). A hash of the 4-tuple leaves that to
    chance: it split the 8 tunnels of the benchmark capture 5 and 3 (shard CPU
    1.47 s and 1.16 s against 1.17 s and 1.17 s dealt round), and would split
    more than a quarter of all 8-connection captures worse than that; when a
    few busy tunnels carry everything, the busiest shard sets the time. Nor
    would a hash spare a shard the other connections' packets: numbers, port
    reuse and evictions (``--max-flows``) depend on every connection's
    segments. A 4-tuple reused by a new connection is a new number, and may
    go to another shard: the two connections' states are apart anyway.
    """
    return (conn_id - 1) % count


class Decoder:
    """Routes capture items through the stages; ``feed(item)`` and ``close()`` return finished records.

    Stages are looked up by event class name, so a stage can be replaced
    (tests use small fakes) without this module importing its classes; each
    name is looked up once per class (``_dispatch``), then by the class itself.
    ``show_secrets`` is handed to the carrier, which redacts upgrade URLs
    and headers in what it reports. With a ``keylog`` (``tls.KeyLog``),
    TLS 1.3 and TLS 1.2 (ECDHE, AEAD) connections are decrypted before the carrier sees them.

    ``shard=(index, count)`` decodes only the TCP connections whose
    ``flow_shard`` (of their number) is ``index``, for ``count`` decoders that read the same items
    in parallel (``parallel.py``). Every shard still keeps the TCP state of
    every connection, so connection (tunnel) numbers, evictions and port
    reuse are exactly those of one decoder; only the stages after the
    reassembler (TLS, carrier, parser) and the records are split. Other
    shards' connections are quiet (``TcpReassembler.hush``): their in-order
    bytes make no events, and a reader given ``quiet_skipper()`` drops their
    plain packets before they are Segments. Capture-level problems
    (``SourceProblem`` items) belong to shard 0. ``packets``, ``first_ts`` and
    ``last_ts`` are those of the whole capture in every shard; the other totals
    (``connections``, ``tunnel_count``, ``problem_counts``, ``tunnels``, ...)
    are the shard's own, and add up over the shards to one decoder's.

    With ``report_closed`` set, a tunnel's end is a record too (a ``StageEvent``
    of stage ``tunnel``, kind ``closed``, the TCP close reason as detail, after
    the tunnel's last frames): for readers that judge what was still open then.
    """

    def __init__(self, *, reassembler: Any = None, carrier_factory: Callable[[], Any] | None = None,
                 max_body_held: int = DEFAULT_MAX_BODY_HELD, show_secrets: bool = False,
                 keylog: KeyLog | None = None, keep_closed_tunnels: bool = False,
                 shard: tuple[int, int] | None = None) -> None:
        self._keylog = keylog
        self._tcp = reassembler if reassembler is not None else _default_reassembler()
        self._new_carrier = carrier_factory or _carrier_factory(show_secrets)
        self._max_body_held = max_body_held
        self._conns: dict[int, _Conn] = {}
        self.tunnels: dict[int, TunnelInfo] = {}
        """Live tunnels, and closed ones too with ``keep_closed_tunnels`` (their totals, for ``mproxy stats``)."""
        self.tunnel_count = 0
        self._keep_closed_tunnels = keep_closed_tunnels
        self.report_closed = False
        self.problem_counts: Counter[str] = Counter()
        self.first_problems: dict[str, StageEvent] = {}
        self.skipped: Counter[str] = Counter()
        self.skipped_bytes = 0
        self.tls_not_decrypted = 0
        """TLS connections seen without a key log (they may be wss:// tunnels)."""
        self.connections = 0
        self.packets = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._tcp_handlers = {
            "Data": self._on_data,
            "Opened": self._on_opened,
            "Gap": self._on_gap,
            "Closed": self._on_closed,
            "TcpProblem": self._on_tcp_problem,
        }
        self._carrier_handlers = {
            "MproxyBytes": self._on_mproxy_bytes,
            "MproxyGap": self._on_mproxy_gap,
            "CarrierDetected": self._on_detected,
            "CarrierProblem": self._on_carrier_problem,
            "Skipped": self._on_skipped,
        }
        self._tcp_by_class: dict[type, Callable[[Any, list[Record]], None]] = {}
        self._carrier_by_class: dict[type, Callable[[_Conn, Any, list[Record]], None]] = {}
        self._at: tuple[int, int] = (0, 0)
        """The key of the records being made (``decode_keyed``)."""
        self.shard = shard
        self._owns_capture = shard is None or shard[0] == 0
        if shard is not None:
            index, count = shard
            if not 0 <= index < count:
                raise ValueError(f"shard {index} of {count} does not exist")
            self._mine: dict[int, bool] = {}
            self._tcp_handlers = {name: self._shard_filter(handler, index, count)
                                  for name, handler in self._tcp_handlers.items()}

    def _shard_filter(self, handler: Callable[[Any, list[Record]], None], index: int,
                      count: int) -> Callable[[Any, list[Record]], None]:
        """``handler`` for the events of this shard's connections only (membership cached while a connection lives)."""
        mine = self._mine
        hush = getattr(self._tcp, "hush", None)

        def filtered(event: Any, out: list[Record]) -> None:
            conn = event.conn
            member = mine.get(conn.id)
            if member is None:
                member = mine[conn.id] = flow_shard(conn.id, count) == index
                if not member:  # its in-order data is not even made into events (nor Segments: quiet_skipper)
                    if hush is not None:
                        hush(conn)
                    else:
                        conn.quiet = True
            if type(event).__name__ == "Closed" and conn.closed:
                del mine[conn.id]
            if member:
                handler(event, out)

        return filtered

    def quiet_skipper(self) -> Any:
        """A ``tcp.QuietSkipper`` for the packet reader of a shard, or None (no shard, or another reassembler).

        With it (``pcap.CaptureReader.skip_quiet``), the plain packets of other
        shards' connections are dropped as soon as their headers are read;
        ``parallel.decode_shard_keyed`` counts them back into packet totals and
        record keys, so the records are those of a decoder that saw them.
        """
        make = getattr(self._tcp, "skipper", None)
        return make() if self.shard is not None and make is not None else None

    # -- input ---------------------------------------------------------------------------------

    def feed(self, item: Any) -> list[Record]:
        """One capture item: a ``Segment``, or a ``SourceProblem`` from the packet source."""
        out: list[Record] = []
        ts = item.ts
        if self.first_ts is None:
            self.first_ts = ts
        if ts is not None:
            self.last_ts = ts
        if type(item).__name__ == "SourceProblem":
            if self._owns_capture:
                self._count(out, StageEvent("capture", item.kind, item.detail, item.frame_no, ts))
            return out
        self.packets += 1
        events = self._tcp.feed(item)
        if events:
            by_class = self._tcp_by_class
            for event in events:
                handler = by_class.get(type(event)) or _dispatch(by_class, self._tcp_handlers, event)
                handler(event, out)
        return out

    def close(self) -> list[Record]:
        """The capture ended: flush the reassembler, then every connection still open."""
        out: list[Record] = []
        handlers = self._tcp_handlers
        for event in self._tcp.close():
            handlers[type(event).__name__](event, out)
        for state in list(self._conns.values()):
            self._finish(state, state.frame_no, state.ts, "capture_end", out)
        return out

    def decode(self, items: Iterable[Any]) -> Iterator[Record]:
        """Every record of a whole source, in capture order."""
        feed = self.feed
        for item in items:
            records = feed(item)
            if records:
                yield from records
        yield from self.close()

    def decode_keyed(self, items: Iterable[Any], *, numbered: bool = False) -> Iterator[tuple[tuple[int, int], Record]]:
        """``decode``'s records, each with its key: where one decoder over the same items makes it.

        The key of a record made for the n-th item is ``(n, e)``, ``e`` the
        index of the reassembler event it came from (0 for a capture problem);
        at the end, see ``END_OF_ITEMS``. Keys never decrease, and records of
        equal key come from one connection, so the records of shards merged by
        key (stable within a shard) are in exactly one decoder's order.
        ``numbered``: ``items`` are ``(n, item)`` pairs, n counting items this
        decoder was not given too (a reader that drops packets: ``quiet_skipper``).
        """
        first_ts_seen = False
        out: list[Record] = []
        by_class = self._tcp_by_class
        tcp_feed = self._tcp.feed
        for seq, item in items if numbered else enumerate(items):
            ts = item.ts
            if not first_ts_seen:
                if self.first_ts is None:
                    self.first_ts = ts
                first_ts_seen = self.first_ts is not None
            if ts is not None:
                self.last_ts = ts
            if type(item).__name__ == "SourceProblem":
                if self._owns_capture:
                    self._at = (seq, 0)
                    self._count(out, StageEvent("capture", item.kind, item.detail, item.frame_no, ts))
                    yield (seq, 0), out.pop()
                continue
            self.packets += 1
            events = tcp_feed(item)
            for index, event in enumerate(events):
                self._at = key = (seq, index)
                handler = by_class.get(type(event)) or _dispatch(by_class, self._tcp_handlers, event)
                handler(event, out)
                if out:
                    for record in out:
                        yield key, record
                    out.clear()
        handlers = self._tcp_handlers
        for index, event in enumerate(self._tcp.close()):
            self._at = key = (END_OF_ITEMS, index)
            handlers[type(event).__name__](event, out)
            for record in out:
                yield key, record
            out.clear()
        for state in list(self._conns.values()):
            self._at = key = (END_OF_ITEMS + 1, state.conn.id)
            self._finish(state, state.frame_no, state.ts, "capture_end", out)
            for record in out:
                yield key, record
            out.clear()

    # -- TCP events ----------------------------------------------------------------------------

    def _state(self, conn: Any) -> _Conn:
        state = self._conns.get(conn.id)
        if state is None or state.conn is not conn:
            state = self._conns[conn.id] = _Conn(conn, self._new_carrier())
            self.connections += 1
        return state

    def _on_opened(self, event: Any, out: list[Record]) -> None:
        self._state(event.conn)

    def _on_data(self, event: Any, out: list[Record]) -> None:
        state = self._conns.get(event.conn.id)
        if state is None or state.conn is not event.conn:
            state = self._state(event.conn)
        state.frame_no = event.frame_no
        state.ts = event.ts
        if state.passthrough:
            if event.data:
                self._mproxy_data(state, event.direction, event.data, event.frame_no, event.ts, out)
            return
        if not state.tls_checked:
            self._check_tls(state, event.data)
        if state.tls is not None:
            self._tls_events(state, state.tls.feed(event.direction, event.data, event.frame_no, event.ts), out)
            return
        carrier = state.carrier
        events = carrier.feed(event.direction, event.data, event.frame_no, event.ts)
        if events:
            self._carrier_events(state, events, out)
        # a raw TCP carrier would wrap each later chunk in an MproxyBytes event: the ~1 us per segment is skipped
        state.passthrough = getattr(carrier, "passthrough", False)

    def _check_tls(self, state: _Conn, data: Any) -> None:
        """With a key log, a connection that opens with a ClientHello is decrypted first."""
        state.tls_checked = True
        from .tls import TlsDecryptor, looks_like_tls

        if not looks_like_tls(data):
            return
        if self._keylog is None:
            self.tls_not_decrypted += 1
        else:
            state.tls = TlsDecryptor(self._keylog)

    def _tls_events(self, state: _Conn, events: list[Any], out: list[Record]) -> None:
        for event in events:
            if type(event).__name__ == "TlsPlain":
                carried = state.carrier.feed(event.direction, event.data, event.frame_no, event.ts)
                if carried:
                    self._carrier_events(state, carried, out)
                if state.tunnel is not None and "tls" not in state.tunnel.carrier_info:
                    state.tunnel.carrier_info["tls"] = state.tls.description
            else:
                self.skipped_bytes += event.nbytes
                self._count(out, self._stage_event(state, "tls", event.kind, event.detail, event.direction,
                                                   state.frame_no, state.ts, nbytes=event.nbytes))

    def _on_gap(self, event: Any, out: list[Record]) -> None:
        state = self._state(event.conn)
        state.frame_no, state.ts = event.frame_no, event.ts
        self._count(out, self._stage_event(state, "tcp", "gap",
                                           f"{event.length} bytes lost at stream offset {event.offset}",
                                           event.direction, event.frame_no, event.ts, nbytes=event.length))
        if state.tls is not None:
            self._tls_events(state, state.tls.gap(event.direction, event.length), out)
        self._carrier_events(state, state.carrier.gap(event.direction, event.length), out)

    def _on_closed(self, event: Any, out: list[Record]) -> None:
        state = self._conns.get(event.conn.id)
        if state is None or state.conn is not event.conn:
            return
        state.closed[event.direction] = True
        if event.reason in _TERMINAL_CLOSE or all(state.closed):
            self._finish(state, event.frame_no, event.ts, event.reason, out)

    def _on_tcp_problem(self, event: Any, out: list[Record]) -> None:
        state = self._state(event.conn)
        self._count(out, self._stage_event(state, "tcp", event.kind, event.detail, event.direction,
                                           event.frame_no, event.ts))

    def _finish(self, state: _Conn, frame_no: int, ts: float, reason: str, out: list[Record]) -> None:
        """The connection is over: drain the carrier, then close each direction's parser."""
        del self._conns[state.conn.id]
        state.frame_no, state.ts = frame_no, ts
        self._carrier_events(state, state.carrier.close(), out)
        for direction, parser in enumerate(state.parsers):
            if parser is not None:
                last = state.last_packet[direction] if reason == "capture_end" else None
                number, when = last if last is not None else (frame_no, ts)
                self._emit(state, direction, parser.close(), number, when, out)
        if state.tunnel is not None:
            state.tunnel.closed = reason
            if not self._keep_closed_tunnels:
                del self.tunnels[state.conn.id]
            if self.report_closed:
                out.append(self._stage_event(state, "tunnel", "closed", reason, None, frame_no, ts,
                                             is_problem=False))

    # -- carrier events ------------------------------------------------------------------------

    def _carrier_events(self, state: _Conn, events: list[Any], out: list[Record]) -> None:
        by_class = self._carrier_by_class
        for event in events:
            handler = by_class.get(type(event)) or _dispatch(by_class, self._carrier_handlers, event)
            handler(state, event, out)

    def _parser(self, state: _Conn, direction: int) -> FrameParser:
        parser = state.parsers[direction]
        if parser is None:
            parser = state.parsers[direction] = FrameParser(synced=state.synced, max_body_held=self._max_body_held)
            if state.tunnel is None:
                self._on_detected(state, None, out=None)
        return parser

    def _on_mproxy_bytes(self, state: _Conn, event: Any, out: list[Record]) -> None:
        frame_no = event.frame_no if event.frame_no is not None else state.frame_no
        ts = event.ts if event.ts is not None else state.ts
        self._mproxy_data(state, event.direction, event.data, frame_no, ts, out)

    def _mproxy_data(self, state: _Conn, direction: int, data: Any, frame_no: int, ts: float,
                     out: list[Record]) -> None:
        """The next bytes of a direction's M-PROXY stream, from packet ``frame_no``: parse them."""
        parser = state.parsers[direction] or self._parser(state, direction)
        tunnel = state.tunnel
        assert tunnel is not None
        size = len(data)
        tunnel.stream_bytes[direction] += size
        if tunnel.first_ts is None:
            tunnel.first_ts = ts
        tunnel.last_ts = ts
        state.last_packet[direction] = (frame_no, ts)
        frames = parser.feed(data)
        if frames:
            self._emit(state, direction, frames, frame_no, ts, out)

    def _on_mproxy_gap(self, state: _Conn, event: Any, out: list[Record]) -> None:
        parser = self._parser(state, event.direction)
        direction = event.direction
        state.last_packet[direction] = (state.frame_no, state.ts)
        self._emit(state, direction, parser.gap(event.length), state.frame_no, state.ts, out)

    def _on_detected(self, state: _Conn, event: Any, out: list[Record] | None) -> None:
        kind = event.kind if event is not None else "tcp"
        info = dict(event.info) if event is not None and event.info else {}
        state.carrier_kind = kind
        if state.tunnel is None:
            client, server = state.endpoints
            state.tunnel = self.tunnels[state.conn.id] = TunnelInfo(state.conn.id, client, server, kind, info,
                                                                    mid_stream=not state.synced)
            state.tunnel.order = (*self._at, self.tunnel_count)
            self.tunnel_count += 1
        else:
            state.tunnel.carrier = kind
            state.tunnel.carrier_info.update(info)
        if out is not None:
            detail = f"{kind} carrier" + (f" {info}" if info else "")
            out.append(self._stage_event(state, "carrier", "detected", detail, None, state.frame_no, state.ts,
                                         is_problem=False))

    def _on_carrier_problem(self, state: _Conn, event: Any, out: list[Record]) -> None:
        frame_no = event.frame_no if event.frame_no is not None else state.frame_no
        self._count(out, self._stage_event(state, "carrier", event.kind, event.detail, event.direction,
                                           frame_no, state.ts))

    def _on_skipped(self, state: _Conn, event: Any, out: list[Record]) -> None:
        self.skipped[event.kind] += event.nbytes
        self.skipped_bytes += event.nbytes
        out.append(self._stage_event(state, "carrier", event.kind, f"{event.nbytes} bytes skipped",
                                     event.direction, state.frame_no, state.ts, is_problem=False,
                                     nbytes=event.nbytes))

    # -- records -------------------------------------------------------------------------------

    def _emit(self, state: _Conn, direction: int, frames: list[Frame], frame_no: int, ts: float,
              out: list[Record]) -> None:
        src, dst = state.endpoints if direction == 0 else (state.endpoints[1], state.endpoints[0])
        tunnel = state.tunnel
        carrier = state.carrier_kind or "tcp"
        counts = self.problem_counts
        for frame in frames:
            for problem in frame.problems:
                counts[problem.kind] += 1
            if tunnel is not None:
                tunnel.frames[direction] += 1
            out.append(DecodedFrame(frame, frame_no, ts, carrier, state.conn.id, direction, src, dst))

    def _stage_event(self, state: _Conn, stage: str, kind: str, detail: str, direction: int | None,
                     frame_no: int | None, ts: float | None, *, is_problem: bool = True,
                     nbytes: int = 0) -> StageEvent:
        if direction is None:
            src, dst = state.endpoints
        else:
            src, dst = state.endpoints if direction == 0 else (state.endpoints[1], state.endpoints[0])
        return StageEvent(stage, kind, detail, frame_no, ts, tunnel=state.conn.id, direction=direction,
                          src=src, dst=dst, is_problem=is_problem, nbytes=nbytes)

    def _count(self, out: list[Record], event: StageEvent) -> None:
        key = f"{event.stage}.{event.kind}"
        self.problem_counts[key] += 1
        self.first_problems.setdefault(key, event)
        out.append(event)


def _dispatch(by_class: dict[type, Any], by_name: dict[str, Any], event: Any) -> Any:
    """The handler of an event class not seen before, found by its name and remembered by class."""
    handler = by_class[type(event)] = by_name[type(event).__name__]
    return handler


def decode_capture(path: str | Path, *, decoder: Decoder | None = None,
                   tls_keylog: str | Path | None = None) -> Iterator[Record]:
    """Every record of a pcap/pcapng file, streamed: ``DecodedFrame`` and ``StageEvent`` items.

    Pass your own ``Decoder`` to read its totals (problem counts; tunnels with
    ``keep_closed_tunnels=True``) afterwards; ``tls_keylog`` (NSS key log file) decrypts ``wss://`` tunnels.
    """
    from .pcap import open_capture

    if decoder is None:
        from .tls import KeyLog

        decoder = Decoder(keylog=KeyLog.load(tls_keylog) if tls_keylog else None)
    return decoder.decode(open_capture(str(path)))


def decode_live(iface: str, bpf: str | None = None, *, timeout: float | None = None, count: int | None = None,
                decoder: Decoder | None = None) -> Iterator[Record]:
    """The same records from a live interface, until ``timeout`` seconds or ``count`` packets (or Ctrl-C).

    The capture socket is open when this returns, so traffic started after
    the call is seen.
    """
    from .pcap import live_capture

    return (decoder or Decoder()).decode(live_capture(iface, bpf, timeout=timeout, count=count))


def frames_only(records: Iterable[Record]) -> Iterator[DecodedFrame]:
    """Just the decoded M-PROXY frames (no garbage, gap or stage records)."""
    for record in records:
        if type(record) is DecodedFrame and record.frame.is_frame:
            yield record
