"""Tunneled connections rewritten as ordinary TCP conversations, so Wireshark dissects what they carried.

Each session (tunnel, ``family,address,port``) becomes one TCP connection
between the client's address:port and the relay's serviceport: a three-way
handshake at the session's first frame, the client's bytes (frames in the
session's inbound direction) and the service's bytes as segments with
consistent sequence and acknowledgement numbers, and a FIN exchange for
``end`` or a RST for ``error``, all with the original timestamps. Sessions
still open at the end of the capture are left open, as they were.
"""

from __future__ import annotations

import ipaddress
import zlib
from typing import BinaryIO

from .decoder import DecodedFrame
from .pcapwriter import ACK, FIN, MAX_SEGMENT, PSH, RST, SYN, PcapWriter, tcp_packet
from .secrets import mask_bytes
from .sessions import Session, SessionTracker

_DEFAULT_PORTS = {"https": 443, "tls": 443, "http": 80, "ssh": 22}
_RELAY_STAND_IN = {4: "192.0.2.1", 6: "2001:db8::1"}
_CLIENT_STAND_IN = {4: "192.0.2.2", 6: "2001:db8::2"}
"""Documentation addresses (RFC 5737 / RFC 3849) for a side whose real address is not in the capture."""


def _host(endpoint: str) -> str:
    """The IP of ``ip:port`` / ``[v6]:port`` text."""
    host = endpoint.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def _port(number: int | None) -> int | None:
    """A header's port if it fits TCP's 16 bits; a hostile header's 99999 does not."""
    return number if number is not None and 0 < number <= 0xFFFF else None


def _ip_version(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


class _Conversation:
    """The TCP state of one written conversation: addresses, ports and the next sequence number each way."""

    __slots__ = ("client", "closed", "next_seq", "ports", "server")

    def __init__(self, session: Session, record: DecodedFrame) -> None:
        client = session.address
        version = _ip_version(client)
        if version is None:
            version = 6 if session.family == "IPv6" else 4
            client = _CLIENT_STAND_IN[version]
        relay = _host(record.src if record.direction == session.inbound else record.dst)
        if _ip_version(relay) != version:
            relay = _RELAY_STAND_IN[version]
        self.client = client
        self.server = relay
        service_port = _port(session.serviceport) or _DEFAULT_PORTS.get(session.label, 0) or 9
        self.ports = (_port(session.port) or 0, service_port)
        seed = zlib.crc32(f"{session.tunnel},{session.client_id},{record.pcap_frame}".encode()) & 0x7FFFFFFF
        self.next_seq = [seed, (seed * 7919) & 0x7FFFFFFF]
        self.closed = False


class Detunneler:
    """Feed decoded records (``add``); each session's bytes go out as a TCP conversation in ``writer``."""

    def __init__(self, stream: BinaryIO, *, show_secrets: bool = False) -> None:
        self.writer = PcapWriter(stream)
        self.tracker = SessionTracker()
        self.show_secrets = show_secrets
        self._conversations: dict[int, _Conversation] = {}
        self.conversations = 0
        self.bytes_missing = 0
        """Body bytes of data frames that could not be written (lost in the capture or not held)."""

    def add(self, record: object) -> None:
        session = self.tracker.add(record)
        if session is None:
            return
        assert isinstance(record, DecodedFrame)
        conversation = self._conversations.get(id(session))
        if conversation is None:
            conversation = self._conversations[id(session)] = _Conversation(session, record)
            self.conversations += 1
            self._handshake(conversation, record.ts)
        if conversation.closed:
            return
        frame = record.frame
        from_client = record.direction == session.inbound
        if frame.kind == "data" and frame.body:
            body = frame.body if self.show_secrets else mask_bytes(frame.body)
            self._send(conversation, from_client, body, record.ts)
        elif frame.kind == "data" and frame.datalen:
            # the body was lost or not held: leave a hole in the sequence space, which Wireshark shows
            # as a segment not captured, rather than splice the bytes either side together
            side = 0 if from_client else 1
            conversation.next_seq[side] = (conversation.next_seq[side] + frame.datalen) & 0xFFFFFFFF
            self.bytes_missing += frame.datalen
        elif frame.kind == "end":
            self._finish(conversation, from_client, record.ts)
        elif frame.kind == "error":
            self._segment(conversation, from_client, RST | ACK, b"", record.ts)
            conversation.closed = True

    def _segment(self, conversation: _Conversation, from_client: bool, flags: int, payload: bytes,
                 ts: float) -> None:
        side = 0 if from_client else 1
        if from_client:
            src, dst = conversation.client, conversation.server
            sport, dport = conversation.ports
        else:
            src, dst = conversation.server, conversation.client
            dport, sport = conversation.ports
        seq = conversation.next_seq[side]
        ack = conversation.next_seq[1 - side]
        self.writer.write(ts, tcp_packet(src, dst, sport, dport, seq, ack, flags, payload))
        conversation.next_seq[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF

    def _handshake(self, conversation: _Conversation, ts: float) -> None:
        client_isn = conversation.next_seq[0]
        self.writer.write(ts, tcp_packet(conversation.client, conversation.server, *conversation.ports,
                                         client_isn, 0, SYN))
        conversation.next_seq[0] = client_isn + 1
        self._segment(conversation, False, SYN | ACK, b"", ts)
        self._segment(conversation, True, ACK, b"", ts)

    def _send(self, conversation: _Conversation, from_client: bool, data: bytes, ts: float) -> None:
        for start in range(0, len(data), MAX_SEGMENT):
            self._segment(conversation, from_client, PSH | ACK, data[start:start + MAX_SEGMENT], ts)

    def _finish(self, conversation: _Conversation, from_client: bool, ts: float) -> None:
        self._segment(conversation, from_client, FIN | ACK, b"", ts)
        self._segment(conversation, not from_client, FIN | ACK, b"", ts)
        self._segment(conversation, from_client, ACK, b"", ts)
        conversation.closed = True
