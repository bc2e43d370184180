"""TCP reassembler: captured segments in, each direction's byte stream out.

Per connection and direction it puts segments in order, drops retransmitted
bytes (counted), keeps the first copy of overlapping bytes (a copy that
differs is reported as ``overlap_conflict``), and says exactly which bytes
were never captured: a ``Gap`` with stream offset and length, after which the
stream goes on. Stream offsets count from ISN+1, or from the first sequence
number seen when the capture started mid-stream (``Connection.syn_seen`` is
then False). Offsets are Python ints, so 32-bit sequence wrap-around and
streams longer than 4 GiB need no special case.

When is a hole given up? Data beyond a hole waits for a retransmission until
waiting cannot help any more:

- the peer acknowledges bytes past the hole (the receiver had them, the
  capture did not: no retransmission will come);
- a RST (nothing follows it) or the capture ends (``close()``);
- the out-of-order buffer of the direction exceeds ``max_buffered_per_flow``
  bytes (default ``DEFAULT_MAX_BUFFERED``, 4 MiB) or ``MAX_PIECES`` pieces: the
  oldest hole is declared lost (``Gap`` + ``buffer_limit`` problem);
- the connection is evicted because more than ``max_flows`` connections
  (default ``DEFAULT_MAX_FLOWS``, 10000) are tracked: the least recently active
  one goes (a lazily updated heap: the hot path only notes the segment), with
  ``Closed(reason='evicted')``; finished connections go first, silently.

A FIN only marks where the stream ends: a retransmission of a lost segment
usually comes after the FIN, so the direction closes (``Closed(reason='fin')``)
once every byte before the FIN was delivered or given up by the rules above.

Which copies are compared: buffered (not yet delivered) bytes always. Of
bytes already delivered, each direction keeps only the last delivered chunk
(a reference to the payload it delivered, no copy; at most one captured
segment per direction, dropped when the direction closes), so a late copy
overlapping that chunk is compared and a difference is reported; a late copy
of bytes delivered before it is dropped uncompared (counted as retransmitted).

Speed: a segment of a known direction that arrives in order with nothing
buffered and no SYN/FIN/RST costs one dict lookup, a few comparisons and one
``Data`` event that carries the payload object itself (no copy; the direction
keeps a reference to it as its last delivered chunk).
"""

from __future__ import annotations

import heapq
import socket
from bisect import bisect_right
from collections import deque
from typing import Any

from .pcap import ACK, FIN, RST, SYN, Segment

DEFAULT_MAX_FLOWS = 10_000
DEFAULT_MAX_BUFFERED = 4 * 1024 * 1024
MAX_PIECES = 65_536
"""Out-of-order pieces one direction may hold (tiny segments would otherwise cost far more than their bytes)."""

MAX_AHEAD = 1 << 30
"""Data or an ACK this far beyond the stream position is implausible (a bogus or foreign segment)."""

_MASK = 0xFFFFFFFF
_WRAP = 1 << 32
_HALF_WRAP = 1 << 31

TCP_PROBLEMS: dict[str, str] = {
    "overlap_conflict": "Two captured copies of the same stream bytes differ; the first copy was kept",
    "buffer_limit": "Too much out-of-order data waited for a missing segment; the hole was declared lost",
    "implausible_seq": "A segment lies implausibly far from the stream position and was dropped",
    "port_reuse": "A new connection reused the 4-tuple of one that had not closed",
    "evicted": "More connections than the flow limit (--max-flows): the least recently active one was dropped",
}
"""Every kind of ``TcpProblem``, with what it means."""

CLOSE_REASONS = ("fin", "rst", "evicted", "capture_end", "reused")
"""``Closed.reason`` values; 'reused': a new connection took the 4-tuple of one that had not closed."""


class _Event:
    __slots__ = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_short(getattr(self, name))}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


def _short(value: Any) -> str:
    if isinstance(value, Connection):
        return f"#{value.id}"
    if isinstance(value, bytes | memoryview) and len(value) > 16:
        return f"<{len(value)} bytes>"
    return repr(value)


class Opened(_Event):
    """A connection was seen for the first time (or a 4-tuple was reused by a new one)."""

    __slots__ = ("conn", "frame_no", "ts")

    def __init__(self, conn: Connection, frame_no: int, ts: float) -> None:
        self.conn = conn
        self.frame_no = frame_no
        self.ts = ts


class Data(_Event):
    """In-order stream bytes of one direction, starting at ``offset``."""

    __slots__ = ("conn", "data", "direction", "frame_no", "offset", "ts")

    def __init__(self, conn: Connection, direction: int, offset: int, data: bytes | memoryview, frame_no: int,
                 ts: float) -> None:
        self.conn = conn
        self.direction = direction
        self.offset = offset
        self.data = data
        self.frame_no = frame_no
        self.ts = ts


class Gap(_Event):
    """``length`` stream bytes from ``offset`` were never captured; the stream goes on after them."""

    __slots__ = ("conn", "direction", "frame_no", "length", "offset", "ts")

    def __init__(self, conn: Connection, direction: int, offset: int, length: int, frame_no: int, ts: float) -> None:
        self.conn = conn
        self.direction = direction
        self.offset = offset
        self.length = length
        self.frame_no = frame_no
        self.ts = ts


class Closed(_Event):
    """One direction ended; ``reason`` is one of ``CLOSE_REASONS``."""

    __slots__ = ("conn", "direction", "frame_no", "reason", "ts")

    def __init__(self, conn: Connection, direction: int, reason: str, frame_no: int, ts: float) -> None:
        self.conn = conn
        self.direction = direction
        self.reason = reason
        self.frame_no = frame_no
        self.ts = ts


class TcpProblem(_Event):
    """Something wrong in a direction's segments; ``kind`` is a key of ``TCP_PROBLEMS``."""

    __slots__ = ("conn", "detail", "direction", "frame_no", "kind", "ts")

    def __init__(self, conn: Connection, direction: int, kind: str, detail: str, frame_no: int, ts: float) -> None:
        self.conn = conn
        self.direction = direction
        self.kind = kind
        self.detail = detail
        self.frame_no = frame_no
        self.ts = ts


class Connection:
    """One TCP connection: ``client`` sent the SYN (else the first segment seen), direction 0 is client->server.

    ``syn_seen`` is True when the handshake (SYN or SYN-ACK) was captured, so
    both streams are known from their first byte. ``last_frame`` and
    ``last_ts`` say when a segment of it was last seen. ``quiet``
    (``TcpReassembler.hush``: a decoder shard, for another shard's
    connections) skips the ``Data`` of in-order segments; the connection is
    tracked as before (numbers, gaps, close), only that event is not made.
    """

    __slots__ = ("_halves", "_keys", "client", "closed", "id", "last_frame", "last_ts", "quiet", "server", "syn_seen")

    def __init__(self, conn_id: int, client: tuple[str, int], server: tuple[str, int], syn_seen: bool) -> None:
        self.id = conn_id
        self.client = client
        self.server = server
        self.syn_seen = syn_seen
        self.closed = False
        self.quiet = False
        self.last_frame = 0  # the latest segment's frame and time: activity for eviction, the point of capture end
        self.last_ts = 0.0
        self._keys = ((client[0], client[1], server[0], server[1]), (server[0], server[1], client[0], client[1]))
        self._halves = (_Half(self, 0), _Half(self, 1))
        self._halves[0].peer = self._halves[1]
        self._halves[1].peer = self._halves[0]

    def endpoint(self, direction: int) -> str:
        """The sender of ``direction`` as text: "127.0.0.1:3000" or "[::1]:3000" (0: client, 1: server)."""
        ip, port = self.client if direction == 0 else self.server
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    def __repr__(self) -> str:
        return f"<Connection #{self.id} {self.endpoint(0)} -> {self.endpoint(1)}{'' if self.syn_seen else ' mid'}>"


class _Half:
    """One direction of a connection: where the stream stands, and the out-of-order pieces waiting."""

    __slots__ = ("base", "buffered", "closed", "conn", "direction", "fast", "fin_off", "isn", "last_data", "last_off",
                 "next_off", "next_seq", "open", "peer", "piece_data", "piece_off")

    def __init__(self, conn: Connection, direction: int) -> None:
        self.conn = conn
        self.direction = direction
        self.peer: _Half = self
        self.base: int | None = None  # sequence number of stream offset 0; None until this direction is seen
        self.isn: int | None = None
        self.next_off = 0
        self.next_seq: int | None = None
        self.fin_off: int | None = None
        self.closed = False
        self.open = False  # started and not closed: its peer's ACKs are worth checking
        self.fast = False  # open, nothing buffered, no FIN seen: in-order delivery may bypass the slow path
        self.piece_off: list[int] = []
        self.piece_data: list[bytes] = []
        self.buffered = 0
        self.last_data: bytes | memoryview = b""  # the last chunk delivered, at stream offset last_off
        self.last_off = 0

    def start(self, base: int, isn: int | None) -> None:
        self.base = base
        self.isn = isn
        self.next_seq = base
        self.open = True
        self.fast = True

    def offset(self, seq: int) -> int:
        """The stream offset of a sequence number: the nearest one to the current position."""
        delta = (seq - self.next_seq) & _MASK  # type: ignore[operator]
        if delta >= _HALF_WRAP:
            delta -= _WRAP
        return self.next_off + delta

    def advance(self, offset: int) -> None:
        self.next_off = offset
        self.next_seq = (self.base + offset) & _MASK  # type: ignore[operator]


class TcpReassembler:
    """Segments in (``feed``), per-direction stream events out; ``close()`` at the end of the capture."""

    def __init__(self, max_flows: int = DEFAULT_MAX_FLOWS, max_buffered_per_flow: int = DEFAULT_MAX_BUFFERED) -> None:
        self.max_flows = max_flows
        self.max_buffered_per_flow = max_buffered_per_flow
        self._halves: dict[tuple[str, int, str, int], _Half] = {}
        self._conns: dict[int, Connection] = {}
        self._idle: list[tuple[int, int, Connection]] = []  # heap of (activity stamp, id, connection)
        self._finished: deque[Connection] = deque()
        self._next_id = 1
        self._quiet: dict[bytes, _Half] = {}
        """The halves of quiet IPv4 connections by their packets' raw address and port bytes (``QuietSkipper``)."""
        self.stats: dict[str, int] = dict.fromkeys((
            "slow_path", "connections", "retransmitted_segments", "retransmitted_bytes", "overlap_conflicts", "gaps",
            "gap_bytes", "evicted", "buffer_limit_hits", "implausible", "ignored_unknown_rst", "after_close",
            "reused", "data_before_start"), 0)

    # The hot path.

    def feed(self, seg: Segment) -> list[Any]:
        """Events caused by one captured segment, in order."""
        half = self._halves.get((seg.src, seg.sport, seg.dst, seg.dport))
        if half is not None and half.fast:
            flags = seg.flags
            if not flags & 0x07:  # no FIN, SYN, RST
                conn = half.conn
                conn.last_frame = seg.frame_no
                conn.last_ts = seg.ts
                peer = half.peer
                if flags & 0x10 and peer.open:  # an ACK: does it pass bytes of the peer never captured?
                    delta = (seg.ack - peer.next_seq) & 0xFFFFFFFF
                    if delta and delta < 0x40000000:  # MAX_AHEAD
                        return self._slow(seg, half)
                payload = seg.payload
                if not payload:
                    return []
                seq = seg.seq
                if seq == half.next_seq:
                    size = len(payload)
                    offset = half.next_off
                    half.next_off = offset + size
                    half.next_seq = (seq + size) & 0xFFFFFFFF
                    half.last_data = payload
                    half.last_off = offset
                    if conn.quiet:
                        return []
                    return [Data(conn, half.direction, offset, payload, seg.frame_no, seg.ts)]
        return self._slow(seg, half)

    def hush(self, conn: Connection) -> None:
        """``conn``'s bytes are not wanted (``Connection.quiet``); a ``QuietSkipper`` may take its plain segments."""
        conn.quiet = True
        keys = _raw_keys(conn)
        if keys is not None:
            for key, half in zip(keys, conn._halves, strict=True):
                self._quiet[key] = half

    def skipper(self) -> QuietSkipper:
        """A ``QuietSkipper`` of this reassembler, for the packet reader (``pcap.CaptureReader.skip_quiet``)."""
        return QuietSkipper(self._quiet)

    def close(self) -> list[Any]:
        """The capture ended: every hole becomes a gap, every open direction closes with 'capture_end'."""
        events: list[Any] = []
        for conn in self._conns.values():
            self._end(conn, "capture_end", conn.last_frame, conn.last_ts, events)
        self._quiet.clear()
        self._halves.clear()
        self._conns.clear()
        self._idle.clear()
        self._finished.clear()
        return events

    # Everything else.

    def _slow(self, seg: Segment, half: _Half | None) -> list[Any]:
        stats = self.stats
        stats["slow_path"] += 1
        events: list[Any] = []
        flags, frame_no, ts = seg.flags, seg.frame_no, seg.ts
        if half is None:
            if flags & RST:
                stats["ignored_unknown_rst"] += 1
                return events
            half = self._open(seg, events)
        elif flags & SYN:
            half = self._syn_on_known(seg, half, events)
        conn = half.conn
        conn.last_frame, conn.last_ts = frame_no, ts
        if half.base is None and not half.closed:  # a closed half never starts again (no events after Closed)
            if flags & SYN:
                half.start((seg.seq + 1) & _MASK, seg.seq)
            else:
                half.start(seg.seq, None)
        peer = half.peer
        if flags & ACK and peer.open:
            self._acknowledged(peer, seg.ack, frame_no, ts, events)
        if flags & RST:
            self._end(conn, "rst", frame_no, ts, events)
            return events
        if half.closed:
            if seg.payload:
                stats["after_close"] += 1
            return events
        payload = seg.payload
        if payload or flags & FIN:
            offset = half.offset((seg.seq + 1) & _MASK if flags & SYN else seg.seq)
            if flags & FIN and half.fin_off is None:
                half.fin_off = offset + len(payload)
                half.fast = False
            if payload:
                self._receive(half, offset, payload, frame_no, ts, events)
            self._maybe_finish(half, frame_no, ts, events)
        return events

    def _open(self, seg: Segment, events: list[Any]) -> _Half:
        """A new connection for a segment of an unknown 4-tuple."""
        if len(self._conns) >= self.max_flows:
            self._evict(seg.frame_no, seg.ts, events)
        if len(self._idle) > 2 * len(self._conns) + 1024:
            self._compact()
        source, destination = (seg.src, seg.sport), (seg.dst, seg.dport)
        flags = seg.flags
        if flags & SYN and flags & ACK:  # the SYN was not captured: the receiver is the client
            conn = Connection(self._next_id, destination, source, True)
        else:
            conn = Connection(self._next_id, source, destination, bool(flags & SYN))
        self._next_id += 1
        self.stats["connections"] += 1
        self._conns[conn.id] = conn
        for key, half in zip(conn._keys, conn._halves, strict=True):
            self._halves[key] = half
        heapq.heappush(self._idle, (seg.frame_no, conn.id, conn))
        events.append(Opened(conn, seg.frame_no, seg.ts))
        if (flags & SYN and flags & ACK) and conn.syn_seen:
            # The SYN-ACK acknowledges the client's ISN: its stream start is known too.
            conn._halves[0].start(seg.ack, (seg.ack - 1) & _MASK)
        return conn._halves[1] if conn.client == destination else conn._halves[0]

    def _syn_on_known(self, seg: Segment, half: _Half, events: list[Any]) -> _Half:
        """A SYN on a known 4-tuple: a retransmission, or a new connection reusing it."""
        if half.base is None:
            return half
        conn = half.conn
        if half.isn == seg.seq and not conn.closed:
            self.stats["retransmitted_segments"] += 1
            return half
        if not conn.closed:
            self.stats["reused"] += 1
            events.append(TcpProblem(conn, half.direction, "port_reuse",
                                     f"SYN with a new ISN {seg.seq} before the connection closed",
                                     seg.frame_no, seg.ts))
            self._end(conn, "reused", seg.frame_no, seg.ts, events)
        self._forget(conn)
        return self._open(seg, events)

    def _acknowledged(self, half: _Half, ack: int, frame_no: int, ts: float, events: list[Any]) -> None:
        """The peer has every byte of ``half`` before ``ack``: bytes the capture lacks there are lost."""
        target = half.offset(ack)
        if half.fin_off is not None and target > half.fin_off:
            target = half.fin_off
        if half.next_off < target <= half.next_off + MAX_AHEAD:
            self._give_up(half, target, frame_no, ts, events)
            self._maybe_finish(half, frame_no, ts, events)

    def _receive(self, half: _Half, offset: int, data: bytes | memoryview, frame_no: int, ts: float,
                 events: list[Any]) -> None:
        stats = self.stats
        size = len(data)
        end = offset + size
        position = half.next_off
        if half.fin_off is not None and end > half.fin_off:
            if offset >= half.fin_off:
                stats["after_close"] += 1
                return
            data, end = data[:half.fin_off - offset], half.fin_off
        if offset < position:
            self._compare_delivered(half, offset, data, frame_no, ts, events)
        if end <= position:
            stats["retransmitted_segments"] += 1
            stats["retransmitted_bytes"] += size
            if offset < 0:
                stats["data_before_start"] += 1
            return
        if offset < position:
            stats["retransmitted_bytes"] += position - offset
            data, offset = data[position - offset:], position
        if offset - position > MAX_AHEAD:
            stats["implausible"] += 1
            events.append(TcpProblem(half.conn, half.direction, "implausible_seq",
                                     f"segment at stream offset {offset}, {offset - position} bytes past the "
                                     "stream position: dropped", frame_no, ts))
            return
        if offset == position and not half.piece_off:
            half.advance(end)
            half.last_data, half.last_off = data, offset
            events.append(Data(half.conn, half.direction, offset, data, frame_no, ts))
            return
        self._insert(half, offset, data, frame_no, ts, events)
        self._drain(half, frame_no, ts, events)
        if half.buffered > self.max_buffered_per_flow or len(half.piece_off) > MAX_PIECES:
            self._over_limit(half, frame_no, ts, events)
        half.fast = not half.piece_off and half.fin_off is None

    def _compare_delivered(self, half: _Half, offset: int, data: bytes | memoryview, frame_no: int, ts: float,
                           events: list[Any]) -> None:
        """Compare a late copy of delivered bytes with the last delivered chunk (older bytes are not kept)."""
        held, held_off = half.last_data, half.last_off
        start, stop = max(offset, held_off), min(offset + len(data), held_off + len(held))
        conflicts: list[tuple[int, int]] = []
        if start < stop:
            _compare(data, offset, held, held_off, start, stop, conflicts)
        self._report_conflicts(half, conflicts, frame_no, ts, events)

    def _report_conflicts(self, half: _Half, conflicts: list[tuple[int, int]], frame_no: int, ts: float,
                          events: list[Any]) -> None:
        for start, length in conflicts:
            self.stats["overlap_conflicts"] += 1
            events.append(TcpProblem(half.conn, half.direction, "overlap_conflict",
                                     f"{length} overlapping bytes at stream offset {start} differ from the "
                                     "copy captured first (first copy kept)", frame_no, ts))

    def _insert(self, half: _Half, offset: int, data: bytes | memoryview, frame_no: int, ts: float,
                events: list[Any]) -> None:
        """Buffer the parts of ``data`` no piece holds yet; compare the parts one does (first copy wins)."""
        offs, datas = half.piece_off, half.piece_data
        end = offset + len(data)
        index = bisect_right(offs, offset) - 1
        cursor = offset
        new: list[tuple[int, bytes]] = []
        conflicts: list[tuple[int, int]] = []
        if index >= 0:
            held_end = offs[index] + len(datas[index])
            if held_end > cursor:
                stop = min(held_end, end)
                _compare(data, offset, datas[index], offs[index], cursor, stop, conflicts)
                cursor = stop
        index += 1
        while cursor < end:
            if index < len(offs) and offs[index] < end:
                held = offs[index]
                if held > cursor:
                    new.append((cursor, bytes(data[cursor - offset:held - offset])))
                stop = min(held + len(datas[index]), end)
                _compare(data, offset, datas[index], held, held, stop, conflicts)
                cursor = stop
                index += 1
            else:
                new.append((cursor, bytes(data[cursor - offset:end - offset])))
                cursor = end
        if not new:
            self.stats["retransmitted_segments"] += 1
        self.stats["retransmitted_bytes"] += len(data) - sum(len(part) for _, part in new)
        for start, part in new:
            at = bisect_right(offs, start)
            offs.insert(at, start)
            datas.insert(at, part)
            half.buffered += len(part)
        self._report_conflicts(half, conflicts, frame_no, ts, events)

    def _drain(self, half: _Half, frame_no: int, ts: float, events: list[Any]) -> None:
        """Deliver the pieces that now continue the stream."""
        offs, datas = half.piece_off, half.piece_data
        count = 0
        position = half.next_off
        conn, direction = half.conn, half.direction
        while count < len(offs) and offs[count] == position:
            data = datas[count]
            events.append(Data(conn, direction, position, data, frame_no, ts))
            position += len(data)
            half.buffered -= len(data)
            count += 1
        if count:
            half.last_data, half.last_off = datas[count - 1], position - len(datas[count - 1])
            del offs[:count]
            del datas[:count]
            half.advance(position)

    def _give_up(self, half: _Half, target: int, frame_no: int, ts: float, events: list[Any]) -> None:
        """Declare every byte missing before ``target`` lost, delivering buffered pieces in between."""
        offs = half.piece_off
        while half.next_off < target:
            hole_end = min(target, offs[0]) if offs else target
            length = hole_end - half.next_off
            self.stats["gaps"] += 1
            self.stats["gap_bytes"] += length
            events.append(Gap(half.conn, half.direction, half.next_off, length, frame_no, ts))
            half.advance(hole_end)
            self._drain(half, frame_no, ts, events)
        half.fast = not offs and half.fin_off is None and half.open

    def _over_limit(self, half: _Half, frame_no: int, ts: float, events: list[Any]) -> None:
        self.stats["buffer_limit_hits"] += 1
        events.append(TcpProblem(half.conn, half.direction, "buffer_limit",
                                 f"{half.buffered} bytes in {len(half.piece_off)} pieces waited for the bytes at "
                                 f"stream offset {half.next_off}: declared lost", frame_no, ts))
        while half.piece_off and (half.buffered > self.max_buffered_per_flow or len(half.piece_off) > MAX_PIECES):
            self._give_up(half, half.piece_off[0], frame_no, ts, events)

    def _maybe_finish(self, half: _Half, frame_no: int, ts: float, events: list[Any]) -> None:
        """Close the direction once the stream reached its FIN."""
        if half.fin_off is None or half.closed or half.next_off < half.fin_off:
            return
        half.piece_off.clear()
        half.piece_data.clear()
        half.buffered = 0
        half.last_data = b""
        half.closed = True
        half.open = half.fast = False
        half.next_seq = (half.base + half.fin_off + 1) & _MASK  # type: ignore[operator]  # the FIN's own number
        events.append(Closed(half.conn, half.direction, "fin", frame_no, ts))
        if half.peer.closed:
            half.conn.closed = True
            self._finished.append(half.conn)

    def _end(self, conn: Connection, reason: str, frame_no: int, ts: float, events: list[Any]) -> None:
        """Both directions end now: holes become gaps, pieces are delivered, open directions close.

        A direction whose FIN was reached this way closes with 'fin', the others with ``reason``.
        """
        for half in conn._halves:
            if half.closed:
                continue
            if half.piece_off:
                self._give_up(half, half.piece_off[-1] + len(half.piece_data[-1]), frame_no, ts, events)
            if half.fin_off is not None and half.next_off < half.fin_off:
                self._give_up(half, half.fin_off, frame_no, ts, events)
            half.closed = True
            half.open = half.fast = False
            half.last_data = b""
            finished = half.fin_off is not None and half.next_off >= half.fin_off
            events.append(Closed(conn, half.direction, "fin" if finished else reason, frame_no, ts))
        if not conn.closed:
            conn.closed = True
            self._finished.append(conn)

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.id, None)
        for key, half in zip(conn._keys, conn._halves, strict=True):
            if self._halves.get(key) is half:
                del self._halves[key]
        if conn.quiet:
            for key, half in zip(_raw_keys(conn) or (), conn._halves, strict=False):
                if self._quiet.get(key) is half:
                    del self._quiet[key]

    def _compact(self) -> None:
        """Drop queue entries of connections already forgotten, so the queues stay as small as the table."""
        conns = self._conns
        self._idle = [entry for entry in self._idle if conns.get(entry[1]) is entry[2]]
        heapq.heapify(self._idle)
        self._finished = deque(conn for conn in self._finished if conns.get(conn.id) is conn)

    def _evict(self, frame_no: int, ts: float, events: list[Any]) -> None:
        """Make room for one connection: a finished one if any, else the least recently active one."""
        while self._finished:
            conn = self._finished.popleft()
            if self._conns.get(conn.id) is conn:
                self._forget(conn)
                return
        while self._idle:
            stamp, _, conn = heapq.heappop(self._idle)
            if self._conns.get(conn.id) is not conn:
                continue
            if conn.last_frame > stamp:  # active since it was queued: queue it again at its latest activity
                heapq.heappush(self._idle, (conn.last_frame, conn.id, conn))
                continue
            self.stats["evicted"] += 1
            events.append(TcpProblem(conn, 0, "evicted", f"connection dropped to stay within {self.max_flows} "
                                     "tracked connections; its streams end here", frame_no, ts))
            self._end(conn, "evicted", frame_no, ts, events)
            self._forget(conn)
            return


def _compare(data: bytes | memoryview, offset: int, held: bytes, held_offset: int, start: int, stop: int,
             conflicts: list[tuple[int, int]]) -> None:
    """Note ``(start, size)`` when the new copy of stream bytes [start, stop) differs from the held one."""
    if data[start - offset:stop - offset] != held[start - held_offset:stop - held_offset]:
        conflicts.append((start, stop - start))


SKIP_RUN = 4096
"""Segments a ``QuietSkipper`` drops in a row at most; the next one is handed on (see ``QuietSkipper``)."""


class QuietSkipper:
    """Takes the plain segments of quiet connections straight from the packet reader, before they are Segments.

    A decoder shard reads every packet but reassembles other shards'
    connections only to keep connection numbers, closes and evictions exactly
    those of one decoder (``TcpReassembler.hush``). Most of their packets are
    in-order data or pure ACKs of a known direction with nothing buffered:
    ``TcpReassembler.feed`` then only moves the stream position and makes no
    event. The packet reader (``pcap.PacketDecoder.decode``) looks up
    a packet's raw IPv4 address and port bytes in ``index`` (the quiet
    connections' halves) right after the IP and TCP headers, and ``skip`` does
    that same bookkeeping there: the packet is never made into a ``Segment``,
    never reaches the decoder. Anything else (SYN/FIN/RST, out of order, an
    ACK past a hole of the peer, a direction with bytes waiting) returns False
    and goes the usual way, so the reassembler's state, and every event it
    makes, are those of ``feed``.

    ``count`` is the packets dropped so far (the items the reader did not
    yield), ``last_ts`` the time of the latest, ``after`` whether it came
    after the latest item yielded with a time. At most ``SKIP_RUN`` packets are
    dropped in a row, so a reader that skips a long run of other shards'
    packets still yields an item now and then (a shard's progress, for the merge).
    """

    __slots__ = ("after", "count", "index", "last_ts", "run")

    def __init__(self, index: dict[bytes, _Half]) -> None:
        self.index = index
        self.count = 0
        self.run = 0
        self.last_ts = 0.0
        self.after = False

    def skip(self, half: _Half, flags: int, seq: int, ack: int, size: int, frame_no: int, ts: float) -> bool:
        """True when the segment was taken as ``TcpReassembler.feed`` would take it, with no event: drop it."""
        if not half.fast or flags & 0x07 or self.run >= SKIP_RUN:  # FIN, SYN, RST
            self.run = 0
            return False
        peer = half.peer
        if flags & 0x10 and peer.open:  # the same ACK check as feed's fast path
            delta = (ack - peer.next_seq) & 0xFFFFFFFF
            if delta and delta < 0x40000000:
                self.run = 0
                return False
        if size:
            if seq != half.next_seq:
                self.run = 0
                return False
            offset = half.next_off
            half.next_off = offset + size
            half.next_seq = (seq + size) & 0xFFFFFFFF
            half.last_data = b""  # only compared for overlap conflicts, which a quiet connection does not report
            half.last_off = offset
        conn = half.conn
        conn.last_frame = frame_no
        conn.last_ts = ts
        self.run += 1
        self.count += 1
        self.last_ts = ts
        self.after = True
        return True


def _raw_keys(conn: Connection) -> tuple[bytes, bytes] | None:
    """The bytes an IPv4 packet of each direction of ``conn`` has at IP offset 12: addresses, then ports."""
    (client, cport), (server, sport) = conn.client, conn.server
    if ":" in client or ":" in server:
        return None
    a, b = socket.inet_aton(client), socket.inet_aton(server)
    return (a + b + cport.to_bytes(2, "big") + sport.to_bytes(2, "big"),
            b + a + sport.to_bytes(2, "big") + cport.to_bytes(2, "big"))
