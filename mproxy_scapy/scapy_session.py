"""``MProxySession`` and ``rdmproxy``: the streaming decoder inside Scapy's own ``sniff()`` idiom.

Scapy's ``TCPSession`` needs the tunnel port bound first and concatenates
segments as they come: a retransmission, a reordered or overlapping segment
or a lost one silently corrupts the frames after it. This session hands
every sniffed packet to the analyzer's ``Decoder`` instead (the same TCP
reassembly, carrier detection by content, WebSocket, deflate and TLS as
``mproxy dissect``) and yields one Scapy packet per decoded record, in the
order the decoder finishes them:

- a frame: the link/IP/TCP layers of the packet that completed it, then
  ``MProxy`` (built from the decoder's ``Frame``) with its body dissected as
  ``MProxyControl``, ``MProxyError``, TLS, HTTP or ``Raw``;
- skipped garbage or lost bytes: the same layers, then an empty ``Raw``
  (the decoder counts those bytes, it does not hold them);
- a problem of an earlier stage (a TCP gap, a TLS session it cannot
  decrypt, ...): the layers of the packet where it was seen, no payload;
  a damaged packet (cut short, an impossible IP header) as Scapy reads it.

Every packet made here carries ``mproxy_frame`` (the capture's packet
number: the count of packets this session has seen), ``mproxy_tunnel``,
``mproxy_direction`` (0: tunnel client to server), ``mproxy_kind`` (the
frame kind, ``garbage``, ``gap`` or ``stage``), ``mproxy_problems``
(``kind: detail`` strings) and ``mproxy_record`` (the decoder's
``DecodedFrame`` or ``StageEvent``), and a pcapng comment saying the same.
``time`` is the completing packet's time. IP lengths and checksums are
left unset, so ``bytes(p)`` is a consistent packet whose TCP payload is the
one M-PROXY frame.

The decoder holds only what is in flight; the session keeps the headers of
the last ``MAX_HEADERS_KEPT`` TCP packets to put under records. When the
packet source ends (Scapy's ``EOFError`` at the end of a file), what the
decoder still holds comes out, an incomplete frame marked ``truncated``; a
live ``sniff()`` ends without telling its session, so call ``flush()``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scapy.config import conf
from scapy.error import log_runtime
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import NoPayload, Packet
from scapy.plist import PacketList
from scapy.sessions import DefaultSession
from scapy.utils import PcapReader

from .decoder import DecodedFrame, Decoder, StageEvent
from .layer import MProxy, MProxyControl
from .pcap import LINKTYPE_IPV4, LINKTYPE_IPV6, CaptureStats, PacketDecoder, Segment, SourceProblem
from .secrets import redact_text
from .sessions import SessionTracker
from .tls import load_keylogs

__all__ = ["MAX_HEADERS_KEPT", "MProxySession", "rdmproxy"]

MAX_HEADERS_KEPT = 4096
"""Headers of this many recent TCP packets are kept to go under the records they complete."""


class MProxySession(DefaultSession):
    """A Scapy session that decodes M-PROXY tunnels: ``sniff(offline=..., session=MProxySession)``.

    Pass the class, or an instance to set options:
    ``MProxySession(tls_keylog="keys.log")`` decrypts ``wss://`` tunnels
    (one NSS key log path, or several); ``show_secrets`` leaves tokens in
    problem details (a WebSocket upgrade URL's ``access_token``) and in
    ``MProxyControl.show()`` unredacted, as ``mproxy dissect --show-secrets``
    does. No ``bind()`` is needed: tunnels are found
    by content. ``feed(pkt)`` and ``flush()`` are the same decoding for code
    that has packets from elsewhere.
    """

    def __init__(self, supersession: Any = None, *, tls_keylog: str | Path | Iterable[str | Path] | None = None,
                 show_secrets: bool = False) -> None:
        super().__init__(supersession)
        if isinstance(tls_keylog, (str, Path)):
            tls_keylog = [tls_keylog]
        self._keylog = load_keylogs(tls_keylog) if tls_keylog else None
        if self._keylog is not None:
            for warning in self._keylog.warnings:
                log_runtime.warning("mproxy: %s", warning)
        self._show_secrets = show_secrets
        self.packets = 0
        """Packets seen: the capture's packet number of the last one."""
        self._start()

    def _start(self) -> None:
        self.decoder = Decoder(keylog=self._keylog, show_secrets=self._show_secrets)
        self._tracker = SessionTracker()
        self._packet_decoder = PacketDecoder(CaptureStats())
        self._headers: OrderedDict[int, tuple[type[Packet], bytes]] = OrderedDict()
        self._queue: list[Packet] = []

    # -- Scapy's session interface ---------------------------------------------------------------

    def recv(self, sock: Any) -> Iterator[Packet]:
        """Called by ``sniff()`` per readable socket: the records that socket's next packet completes.

        At the end of a file the records still held come out before the
        ``EOFError`` that tells ``sniff()`` the source is done.
        """
        try:
            pkt = sock.recv()
        except EOFError:
            yield from self.flush()
            raise
        if pkt is None:
            return
        first = self.process(pkt)
        if first is not None:
            yield first
        queue, self._queue = self._queue, []
        yield from queue

    def process(self, pkt: Packet) -> Packet | None:
        """Scapy's one-in, one-out hook: the first record ``pkt`` completes; the others wait in ``recv``."""
        if self.supersession is not None:  # e.g. IPSession: IP fragments put together first
            pkt = self.supersession.process(pkt)
            if pkt is None:
                return None
        records = self.feed(pkt)
        if not records:
            return None
        self._queue.extend(records[1:])
        return records[0]

    # -- decoding --------------------------------------------------------------------------------

    def feed(self, pkt: Packet) -> list[Packet]:
        """One sniffed packet in; the packets of the records it completes out (often none)."""
        self.packets += 1
        frame_no = self.packets
        item = self._capture_item(pkt, frame_no, float(pkt.time))
        if item is None:
            return []
        if type(item) is Segment:
            self._keep_headers(frame_no, pkt, item)
        else:  # a capture problem: the packet it is about, as it is
            self._keep(frame_no, (type(pkt), pkt.original or bytes(pkt)))
        records = self.decoder.feed(item)
        pending = self._packet_decoder.pending  # a segment whose problem (snapped) came first
        while pending:
            segment = pending.pop()
            self._keep_headers(frame_no, pkt, segment)
            records += self.decoder.feed(segment)
        return self._packets_of(records)

    def flush(self) -> PacketList:
        """The source ended: every record the decoder still holds (an incomplete frame marked truncated).

        The session starts afresh after it: the next packet is number 1 of a new source.
        """
        out = PacketList(self._packets_of(self.decoder.close()), "MProxy")
        self.packets = 0
        self._start()
        return out

    def _capture_item(self, pkt: Packet, frame_no: int, ts: float) -> Segment | SourceProblem | None:
        """The decoder's capture item for a Scapy packet: its bytes read as the pcap reader reads them."""
        raw = pkt.original or bytes(pkt)
        linktype = conf.l2types.layer2num.get(type(pkt))
        if linktype is None or not self._packet_decoder.supports(linktype):
            network = pkt.getlayer(IP) or pkt.getlayer(IPv6)
            if network is None:
                return None
            raw = bytes(network)
            linktype = LINKTYPE_IPV4 if isinstance(network, IP) else LINKTYPE_IPV6
        return self._packet_decoder.decode(linktype, raw, 0, len(raw), frame_no, ts)

    def _keep_headers(self, frame_no: int, pkt: Packet, segment: Segment) -> None:
        """The bytes of ``pkt`` up to its TCP payload, to rebuild its link/IP/TCP layers under a record.

        A packet Scapy does not dissect down to TCP (a link type or variant it does not bind, like BSD
        loopback's IPv6 on Linux) gets IP/TCP headers made from what the decoder read instead.
        """
        if TCP not in pkt:
            network = IPv6 if segment.ip_version == 6 else IP
            made = network(src=segment.src, dst=segment.dst) / TCP(
                sport=segment.sport, dport=segment.dport, seq=segment.seq, ack=segment.ack, flags=segment.flags)
            self._keep(frame_no, (network, bytes(made)))
        else:
            layer: Packet = pkt
            size = 0
            while not isinstance(layer, NoPayload):
                cache = layer.raw_packet_cache
                if cache is None:  # a packet built, not dissected: its layers' bytes are not known apart
                    size = len(bytes(pkt)) - len(bytes(pkt[TCP].payload))
                    break
                size += len(cache)
                if isinstance(layer, TCP):
                    break
                layer = layer.payload
            self._keep(frame_no, (type(pkt), (pkt.original or bytes(pkt))[:size]))

    def _keep(self, frame_no: int, headers: tuple[type[Packet], bytes]) -> None:
        self._headers[frame_no] = headers
        if len(self._headers) > MAX_HEADERS_KEPT:
            self._headers.popitem(last=False)

    def _packets_of(self, records: list[Any]) -> list[Packet]:
        out = []
        for record in records:
            if type(record) is DecodedFrame:
                if record.frame.kind == "control":
                    self._tracker.add(record)  # sets reply_to / reply_time on control replies
                out.append(self._frame_packet(record))
            elif isinstance(record, StageEvent) and record.is_problem:
                out.append(self._stage_packet(record))
        return out

    def _frame_packet(self, record: DecodedFrame) -> Packet:
        frame = record.frame
        upper = MProxy.from_frame(frame) if frame.is_frame else conf.raw_layer(b"")
        pkt = self._base(record.pcap_frame, record.src, record.dst) / upper
        if self._show_secrets and MProxyControl in pkt:  # after the "/", which copies its operands
            pkt[MProxyControl].reveal_secrets = True
        problems = [str(p) for p in frame.problems]
        return self._dress(pkt, record, record.pcap_frame, record.ts, frame.kind, problems)

    def _stage_packet(self, event: StageEvent) -> Packet:
        detail = event.detail if self._show_secrets else redact_text(event.detail)
        problems = [f"{event.stage}.{event.kind}: {detail}"]
        base = self._base(event.pcap_frame, event.src, event.dst)
        return self._dress(base, event, event.pcap_frame, event.ts, "stage", problems)

    def _base(self, frame_no: int | None, src: str | None, dst: str | None) -> Packet:
        """The link/IP/TCP layers of packet ``frame_no``, or plain IP/TCP from the endpoints when not kept."""
        kept = self._headers.get(frame_no) if frame_no is not None else None
        if kept is None:
            return _endpoint_layers(src, dst)
        cls, raw = kept
        base = cls(raw)
        network = base.getlayer(IP) or base.getlayer(IPv6)
        if isinstance(network, IP):
            network.len = None
            network.chksum = None
        elif network is not None:
            network.plen = None
        tcp = base.getlayer(TCP)
        if tcp is not None:
            tcp.chksum = None
            tcp.remove_payload()
        return base

    def _dress(self, pkt: Packet, record: Any, frame_no: int | None, ts: float | None, kind: str,
               problems: list[str]) -> Packet:
        if ts is not None:
            pkt.time = ts
        pkt.mproxy_frame = frame_no
        pkt.mproxy_tunnel = record.tunnel
        pkt.mproxy_direction = record.direction
        pkt.mproxy_kind = kind
        pkt.mproxy_problems = problems
        pkt.mproxy_record = record
        note = f"mproxy: packet {frame_no} tunnel {record.tunnel} direction {record.direction} {kind}"
        pkt.comment = ("; ".join([note, *problems])).encode("utf-8", "replace")
        return pkt


def _endpoint_layers(src: str | None, dst: str | None) -> Packet:
    """IP (or IPv6) / TCP between two ``address:port`` texts (an empty ``Raw`` when there are none)."""
    if not src or not dst:
        return conf.raw_layer(b"")
    saddr, _, sport = src.rpartition(":")
    daddr, _, dport = dst.rpartition(":")
    network = IPv6 if ":" in saddr else IP
    return network(src=saddr.strip("[]"), dst=daddr.strip("[]")) / TCP(sport=int(sport), dport=int(dport))


def rdmproxy(path: str | Path, count: int = -1, *, tls_keylog: str | Path | Iterable[str | Path] | None = None,
             show_secrets: bool = False) -> PacketList:
    """The records of a pcap/pcapng file as a ``PacketList``, like ``rdpcap`` (read packet by packet).

    ``count`` stops after that many records (-1: all of them). A file that cannot be read fails as it
    does for ``rdpcap`` (Scapy's ``PcapReader`` raises).
    """
    path = Path(path)
    session = MProxySession(tls_keylog=tls_keylog, show_secrets=show_secrets)
    out: list[Packet] = []
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            out += session.feed(pkt)
            if 0 <= count <= len(out):
                return PacketList(out[:count], path.name)
    out += session.flush()
    return PacketList(out if count < 0 else out[:count], path.name)
