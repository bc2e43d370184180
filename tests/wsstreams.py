"""WebSocket byte streams made by independent, well-kept implementations (wsproto, websockets).

The unframer is tested against bytes these libraries write, never against an
encoder of our own; only deliberately malformed frames are built by hand.
"""

from __future__ import annotations

import itertools
import random
import struct

from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
from websockets.frames import Frame, Opcode
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.extensions import PerMessageDeflate

from mproxy_scapy.codec import pack

TUN = {"family": "IPv4", "address": "10.0.0.7", "port": 50123, "service": "https", "serviceport": 443, "name": "a.b"}


def mproxy_stream(seed: int, sizes: tuple[int, ...] = (0, 10, 3000, 70_000, 200)) -> bytes:
    """Real M-PROXY frames (the byte-exact codec) with random bodies."""
    rng = random.Random(seed)
    frames = []
    for i, size in enumerate(sizes):
        tun = dict(TUN, port=50000 + i)
        frames.append(pack(tun, rng.randbytes(size) if size else None))
    return b"".join(frames)


class WsPair:
    """A wsproto client and server that completed a handshake; ``c2s``/``s2c`` collect the wire bytes."""

    def __init__(
        self,
        deflate: dict | None = None,
        target: str = "/?access_token=SECRET.JWT.x&versions=v1",
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.client = WSConnection(ConnectionType.CLIENT)
        self.server = WSConnection(ConnectionType.SERVER)
        offer = [PerMessageDeflate(**deflate)] if deflate is not None else []
        request = Request(host="relay.example", target=target, extensions=offer, extra_headers=extra_headers or [])
        self.c2s = bytearray(self.client.send(request))
        self.server.receive_data(bytes(self.c2s))
        events = list(self.server.events())
        assert isinstance(events[0], Request)
        accept = [PerMessageDeflate(**deflate)] if deflate is not None else []
        self.s2c = bytearray(self.server.send(AcceptConnection(extensions=accept)))
        self.client.receive_data(bytes(self.s2c))
        list(self.client.events())
        self.request_len = len(self.c2s)
        self.response_len = len(self.s2c)

    def client_sends(self, *events) -> None:
        for event in events:
            self.c2s += self.client.send(event)

    def server_sends(self, *events) -> None:
        for event in events:
            self.s2c += self.server.send(event)

    @property
    def client_frames(self) -> bytes:
        """Client-to-server bytes after the upgrade request."""
        return bytes(self.c2s[self.request_len :])

    @property
    def server_frames(self) -> bytes:
        return bytes(self.s2c[self.response_len :])


def websockets_frames(
    messages: list[tuple[Opcode, bytes, bool]], *, mask: bool, deflate: WebsocketsDeflate | None = None
) -> bytes:
    """Frames serialised by the websockets library's low-level API: (opcode, data, fin) each."""
    extensions = [deflate] if deflate is not None else []
    return b"".join(
        Frame(opcode, data, fin).serialize(mask=mask, extensions=extensions) for opcode, data, fin in messages
    )


def raw_frame(b0: int, payload: bytes, *, mask: bytes | None = None, length: int | None = None) -> bytes:
    """A hand-built frame, only for the malformed cases no library will write."""
    length = len(payload) if length is None else length
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes([b0, mask_bit | length])
    elif length < 65536:
        head = bytes([b0, mask_bit | 126]) + struct.pack("!H", length)
    else:
        head = bytes([b0, mask_bit | 127]) + struct.pack("!Q", length)
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the sorted, de-duplicated positions ``cuts``."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]
