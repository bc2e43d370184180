"""Tunneled connections and control round-trips, built from decoded frames as they stream past.

A tunnel multiplexes many client connections; what an analyst asks is per
client: when did it start, what went each way, how did it end. A session is
keyed by (tunnel, ``family,address,port``) as the reference's ``addrToId``;
after an ``end`` or ``error`` a new ``connection`` frame for the same key
starts a new session (ports are reused), and so does any frame more than
``ENDED_LINGER`` seconds (capture time) after the end: bytes still in flight
when one side ended arrive within round trips, not minutes, and a bound on
how long an ended session can still change is what lets a streaming writer
give it up (``take_finished``) on a tunnel that lives for days. Control requests (``id > 0``)
are matched to replies (``id < 0``) coming the other way on the same
tunnel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .decoder import DecodedFrame

OPEN = "open at capture end"
ENDED_LINGER = 60.0
"""Seconds of capture time after its ``end``/``error`` during which a frame still belongs to the ended session."""


class Session:
    """One tunneled client connection.

    ``inbound`` is the tunnel direction that carries the client's own bytes
    (the direction of its ``connection`` frame, else of its first frame);
    ``frames``/``data_bytes`` are indexed by tunnel direction.
    """

    __slots__ = (
        "address",
        "client_id",
        "data_bytes",
        "end_detail",
        "end_ts",
        "ended_by",
        "family",
        "first_frame",
        "first_ts",
        "frames",
        "inbound",
        "last_frame",
        "last_ts",
        "name",
        "pauses",
        "port",
        "relay",
        "resumes",
        "saw_connection",
        "service",
        "servicename",
        "serviceport",
        "tunnel",
    )

    def __init__(self, record: DecodedFrame) -> None:
        frame = record.frame
        self.tunnel = record.tunnel
        self.client_id = frame.client_id or ""
        self.family = frame.family or ""
        self.address = frame.address or ""
        self.port = frame.port
        self.service = ""
        self.servicename = ""
        self.name = ""
        self.serviceport: int | None = None
        self.inbound = record.direction
        self.relay = record.src
        self.saw_connection = False
        self.frames = [0, 0]
        self.data_bytes = [0, 0]
        self.first_ts = record.ts
        self.last_ts = record.ts
        self.first_frame = record.pcap_frame
        self.last_frame = record.pcap_frame
        self.ended_by: str | None = None
        self.end_ts = 0.0
        self.end_detail = ""
        self.pauses = 0
        self.resumes = 0

    @property
    def outcome(self) -> str:
        """How the session ended: ``end``, ``error`` or ``open at capture end``."""
        return self.ended_by or OPEN

    @property
    def duration(self) -> float:
        return self.last_ts - self.first_ts

    @property
    def label(self) -> str:
        """The service the client reached: the connection frame's servicename, else the data's service."""
        return self.servicename or self.service

    def add(self, record: DecodedFrame) -> None:
        frame = record.frame
        direction = record.direction
        self.frames[direction] += 1
        self.last_ts = record.ts
        self.last_frame = record.pcap_frame
        kind = frame.kind
        if kind == "data":
            self.data_bytes[direction] += frame.body_len
            if not self.service and frame.service:
                self.service = frame.service
        elif kind == "connection":
            self.saw_connection = True
            self.inbound = direction
            self.relay = record.src
            self.servicename = frame.servicename or ""
        elif kind in ("end", "error") and self.ended_by is None:
            self.ended_by = kind
            self.end_ts = record.ts
            if kind == "error":
                message = frame.control
                self.end_detail = str(message.get("message", "")) if isinstance(message, dict) else ""
        elif kind == "pause":
            self.pauses += 1
        elif kind == "resume":
            self.resumes += 1
        if frame.name and not self.name:
            self.name = frame.name
        if frame.serviceport is not None and self.serviceport is None:
            self.serviceport = frame.serviceport


class ControlExchange:
    """A control request and, once seen, its reply."""

    __slots__ = ("command", "direction", "id", "reply", "request", "tunnel")

    def __init__(self, request: DecodedFrame, message_id: int, command: Any) -> None:
        self.request = request
        self.tunnel = request.tunnel
        self.direction = request.direction
        self.id = message_id
        self.command = command if isinstance(command, str) else ""
        self.reply: DecodedFrame | None = None

    @property
    def latency(self) -> float | None:
        return None if self.reply is None else self.reply.ts - self.request.ts

    @property
    def outcome(self) -> str:
        """``ok``, the error code or message of a failed reply, or ``unanswered``."""
        if self.reply is None:
            return "unanswered"
        body = self.reply.frame.control
        result = body[1] if isinstance(body, list) and len(body) > 1 else None
        if isinstance(result, dict) and ("code" in result or "message" in result):
            return str(result.get("code") or result.get("message"))
        return "ok"


class SessionTracker:
    """Feed it every decoded record (``add``); read ``sessions``, ``exchanges`` and ``unanswered()``."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.exchanges: list[ControlExchange] = []
        self.unmatched_replies: list[DecodedFrame] = []
        self.out_of_band: list[DecodedFrame] = []
        self._live: dict[tuple[int, str], Session] = {}
        self._pending: dict[tuple[int, int, int], ControlExchange] = {}
        self.latest_ts = 0.0
        """The latest frame time seen: ended sessions more than ``ENDED_LINGER`` before it are finished."""

    def add(self, record: Any) -> Session | None:
        """Account for one record; returns the session it belongs to (None for control and non-frames)."""
        if type(record) is not DecodedFrame:
            return None
        frame = record.frame
        if not frame.is_frame:
            return None
        if frame.kind == "control":
            self._control(record)
            return None
        key = (record.tunnel, frame.client_id or "")
        session = self._live.get(key)
        ts = record.ts
        if ts > self.latest_ts:
            self.latest_ts = ts
        if session is None or (session.ended_by is not None and self._starts_anew(session, frame.kind, ts)):
            session = self._live[key] = Session(record)
            self.sessions.append(session)
        session.add(record)
        return session

    @staticmethod
    def _starts_anew(ended: Session, kind: str, ts: float) -> bool:
        """After an end or error, does this frame open a new session for the same client id?

        A ``connection`` frame always does, and so does any frame more than
        ``ENDED_LINGER`` after the end. Within it, data does only on tunnels
        that announce no connections: otherwise it is the ended session's bytes
        still in flight when the other side ended it (they are counted there).
        """
        return (kind == "connection" or (kind == "data" and not ended.saw_connection)
                or ts - ended.end_ts > ENDED_LINGER)

    def track(self, records: Iterable[Any]) -> Iterator[Any]:
        """Pass records through, tracking each: for streaming outputs that also want reply times."""
        add = self.add
        for record in records:
            add(record)
            yield record

    def _control(self, record: DecodedFrame) -> None:
        message = record.frame.control
        if not isinstance(message, list) or not message or type(message[0]) is not int:
            return
        message_id = message[0]
        if message_id > 0:
            exchange = ControlExchange(record, message_id, message[1] if len(message) > 1 else None)
            self.exchanges.append(exchange)
            self._pending[(record.tunnel, record.direction, message_id)] = exchange
        elif message_id < 0:
            exchange = self._pending.pop((record.tunnel, 1 - record.direction, -message_id), None)
            if exchange is None:
                self.unmatched_replies.append(record)
                return
            exchange.reply = record
            record.reply_to = exchange.request.pcap_frame
            record.reply_time = record.ts - exchange.request.ts
        else:
            self.out_of_band.append(record)

    def unanswered(self) -> list[ControlExchange]:
        return [e for e in self.exchanges if e.reply is None]

    def take_finished(self, tunnel_open: Callable[[int], bool]) -> tuple[list[Session], list[ControlExchange]]:
        """Remove and return the sessions and exchanges that no later record can change.

        A session is finished when its tunnel is closed, a newer session
        took its client id, or it ended more than ``ENDED_LINGER`` before the
        latest frame; an exchange when it has its reply or its tunnel is
        closed. A streaming writer (``mproxy export``) calls this now and
        then, so the tracker holds only what is still open, not a whole
        fleet's sessions. Each list keeps the order things were first seen.
        """
        live = self._live
        expired = self.latest_ts - ENDED_LINGER
        for key in [k for k, s in live.items()
                    if not tunnel_open(k[0]) or (s.ended_by is not None and s.end_ts < expired)]:
            del live[key]
        for key in [k for k in self._pending if not tunnel_open(k[0])]:
            del self._pending[key]
        done: list[Session] = []
        kept: list[Session] = []
        for session in self.sessions:
            (kept if live.get((session.tunnel, session.client_id)) is session else done).append(session)
        self.sessions = kept
        answered: list[ControlExchange] = []
        waiting: list[ControlExchange] = []
        for exchange in self.exchanges:
            finished = exchange.reply is not None or not tunnel_open(exchange.tunnel)
            (answered if finished else waiting).append(exchange)
        self.exchanges = waiting
        return done, answered
