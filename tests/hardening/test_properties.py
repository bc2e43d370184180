"""Property and stateful tests the stage suites did not have yet (issue 7).

tests/test_websocket.py, test_carrier.py and test_tcp.py already check that
arbitrary input never raises and that well-formed input survives any
segmentation; tests/test_parser.py checks the parser's byte accounting.
Added here: the accounting of the WebSocket unframer and the carrier on
arbitrary bytes and gaps (payload + skipped + gap == bytes in), and the TCP
reassembler driven by a state machine through arbitrary segments of several
connections (any flags, sequence numbers, orders): ``feed`` never raises,
every direction's Data and Gap events are contiguous from offset 0, and no
connection delivers after it closed.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mproxy_scapy.carrier import Carrier, MproxyBytes, MproxyGap, Skipped
from mproxy_scapy.pcap import Segment
from mproxy_scapy.tcp import Closed, Data, Gap, TcpReassembler
from mproxy_scapy.websocket import WebSocketUnframer, WsGap, WsPayload, WsSkipped

ws_bytes = st.one_of(
    st.binary(max_size=300),
    # frame-shaped: a binary/continuation/control byte, a length byte, then anything
    st.tuples(st.sampled_from([0x82, 0x02, 0x80, 0x81, 0x88, 0x89, 0x8A, 0xC2]), st.integers(0, 255),
              st.binary(max_size=200)).map(lambda t: bytes([t[0], t[1]]) + t[2]),
)


def ws_accounted(events) -> int:
    return sum(len(e.data) if isinstance(e, WsPayload) else e.nbytes if isinstance(e, WsSkipped)
               else e.length if isinstance(e, WsGap) else 0 for e in events)


def compressed(events) -> bool:
    """RSV1 frames are inflated even unnegotiated: their wire bytes are not counted one for one."""
    return any(getattr(e, "kind", "").startswith("rsv1") for e in events)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(ws_bytes, st.integers(min_value=1, max_value=500)), max_size=14),
       st.sampled_from([True, False, None]), st.booleans())
def test_websocket_unframer_accounts_for_every_byte_of_arbitrary_input(items, from_client, synced):
    """Uncompressed: every byte fed comes out once as payload or skipped; a lost byte as a gap, or inside
    a skipped payload (a text message's lost bytes are not M-PROXY bytes lost)."""
    unframer = WebSocketUnframer(from_client=from_client, synced=synced)
    events, fed, lost = [], 0, 0
    for item in items:
        if isinstance(item, int):
            events += unframer.gap(item)
            lost += item
        else:
            events += unframer.feed(item)
            fed += len(item)
    events += unframer.close()
    if not compressed(events):
        assert fed <= ws_accounted(events) <= fed + lost


def carrier_accounted(events, direction: int) -> int:
    return sum(len(e.data) if isinstance(e, MproxyBytes) else e.nbytes if isinstance(e, Skipped)
               else e.length if isinstance(e, MproxyGap) else 0
               for e in events if getattr(e, "direction", None) == direction)


UPGRADE = (b"GET /?versions=v1 HTTP/1.1\r\nHost: r\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
ACCEPT = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"", b"\xfe", UPGRADE]),
       st.lists(st.tuples(st.integers(0, 1), st.one_of(ws_bytes, st.integers(min_value=1, max_value=400))),
                max_size=14))
def test_carrier_accounts_for_every_byte_of_arbitrary_input(prefix, items):
    """Uncompressed, per direction once the connection closes: every byte fed is M-PROXY bytes or skipped,
    once; lost bytes are gaps at most (a connection that is not a tunnel leaves its gaps to the TCP stage)."""
    carrier = Carrier()
    events = []
    fed, lost = [0, 0], [0, 0]
    if prefix:
        events += carrier.feed(0, prefix, 1, 0.0)
        fed[0] += len(prefix)
        if prefix == UPGRADE:
            events += carrier.feed(1, ACCEPT, 2, 0.0)
            fed[1] += len(ACCEPT)
    for frame_no, (direction, item) in enumerate(items, start=3):
        if isinstance(item, int):
            events += carrier.gap(direction, item)
            lost[direction] += item
        else:
            events += carrier.feed(direction, item, frame_no, 0.0)
            fed[direction] += len(item)
    events += carrier.close()
    if not compressed(events):
        for direction in (0, 1):
            assert fed[direction] <= carrier_accounted(events, direction) <= fed[direction] + lost[direction]


# -- the TCP reassembler as a state machine -------------------------------------------------------

ENDPOINTS = [(("10.0.0.1", 1000 + n), ("10.0.0.9", 443)) for n in range(3)]
FLAG_CHOICES = [0x18, 0x10, 0x02, 0x12, 0x11, 0x19, 0x04, 0x14, 0x00, 0x3F]


class ReassemblerMachine(RuleBasedStateMachine):
    """Arbitrary segments of three connections; a tiny flow and buffer limit so eviction and caps happen."""

    @initialize()
    def start(self) -> None:
        self.tcp = TcpReassembler(max_flows=2, max_buffered_per_flow=300)
        self.frame = 0
        self.position: dict[tuple[int, int], int] = {}
        self.closed: set[tuple[int, int]] = set()

    def check(self, events) -> None:
        for event in events:
            if isinstance(event, Data | Gap):
                key = (event.conn.id, event.direction)
                assert key not in self.closed, f"{event!r} after its direction closed"
                assert event.offset == self.position.get(key, 0), (event, self.position.get(key, 0))
                size = len(event.data) if isinstance(event, Data) else event.length
                assert size > 0
                self.position[key] = event.offset + size
            elif isinstance(event, Closed):
                self.closed.add((event.conn.id, event.direction))

    @rule(flow=st.integers(0, 2), direction=st.integers(0, 1), flags=st.sampled_from(FLAG_CHOICES),
          seq=st.one_of(st.integers(0, 3000), st.integers(0, 0xFFFFFFFF), st.integers(0xFFFFFF00, 0xFFFFFFFF)),
          ack=st.one_of(st.integers(0, 3000), st.integers(0, 0xFFFFFFFF)), payload=st.binary(max_size=400))
    def segment(self, flow, direction, flags, seq, ack, payload) -> None:
        self.frame += 1
        client, server = ENDPOINTS[flow]
        (src, sport), (dst, dport) = (client, server) if direction == 0 else (server, client)
        segment = Segment(self.frame, float(self.frame), src, dst, sport, dport, seq, ack, flags, payload, 4)
        self.check(self.tcp.feed(segment))

    @rule()
    def capture_ends(self) -> None:
        """The capture ends; the next segments belong to a new capture (a fresh reassembler)."""
        self.check(self.tcp.close())
        self.start()

    @invariant()
    def flows_stay_bounded(self) -> None:
        assert len(self.tcp._conns) <= 2


ReassemblerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_tcp_reassembler_state_machine = ReassemblerMachine.TestCase


# -- the reference-faithful codec -----------------------------------------------------------------

def frame_shaped(header: bytes, body: bytes) -> bytes:
    return b"\xfe" + bytes([len(header) & 0xFF]) + header + body


header_fields = st.lists(st.one_of(st.sampled_from([b"IPv4", b"IPv6", b"1.2.3.4", b"5", b"0", b"-1", b"10",
                                                    b"control", b"error", b"connection", b"end", b"http", b""]),
                                   st.binary(max_size=6)), min_size=0, max_size=8).map(b",".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), st.builds(frame_shaped, header_fields, st.binary(max_size=60))),
                max_size=10), st.lists(st.integers(1, 50), max_size=10))
def test_codec_unpacker_never_raises_on_arbitrary_bytes(chunks, sizes):
    from mproxy_scapy.codec import Unpacker

    calls: list = []
    unpacker = Unpacker({name: calls.append for name in ("onmessage", "oncontrol", "onconnection", "onerror",
                                                         "onend", "onpause", "onresume")})
    wire = b"".join(chunks)
    position = 0
    for size in [*sizes, len(wire)]:
        unpacker.feed(wire[position : position + size])
        position += size


def test_codec_unpacker_error_body_nested_5000_deep():
    """onerror parses the body as JSON: nesting past Python's recursion limit is not JSON, never an exception."""
    from mproxy_scapy.codec import Unpacker, pack_header

    errors: list = []
    unpacker = Unpacker({"onmessage": errors.append, "onerror": errors.append})
    tun = {"family": "IPv4", "address": "192.0.2.1", "port": 5, "service": "http"}
    unpacker.feed(pack_header(tun, b"[" * 5000 + b"]" * 5000, "error", True))
    assert len(errors) == 1 and errors[0]["code"] == "E_UNKNOWN_ERR"
