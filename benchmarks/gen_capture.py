"""Deterministic large M-PROXY captures for the benchmarks (raw TCP or WebSocket carrier).

Why synthetic: the recorder in ``captures/`` drives real sockets and makes small, exact
captures; a benchmark needs hundreds of megabytes to a gigabyte, the same bytes on every
run, quickly. The frames still come from the project's byte-exact codec (``pack`` and
``pack_header``), and the byte streams are cut the way a kernel cuts them on an Ethernet
link (MSS 1448, a three-way handshake, correct seq/ack, a pure ACK back per burst, FIN at
the end), so every tool under test walks the path a user's capture takes it down.

Traffic model: a few device->relay tunnels (the device opens the TCP connection), ~200
tunneled clients open at any time spread over them, each client a short session:
``connection`` (relay->device), request/response exchanges of mixed sizes (tiny to 16 KB
bodies), now and then ``pause``/``resume``, ``end``; control requests and replies on the
tunnel. Writes of one tunnel direction are sometimes coalesced, so frames start anywhere
in a segment. WebSocket variant: an HTTP Upgrade exchange first, then relay->device binary
messages unmasked with header and body as two messages (as the JS relay sends them), and
device->relay messages masked, one whole frame each.

Packets are written with ``struct`` straight into a buffered file: no Scapy object per
segment, so a gigabyte takes tens of seconds, not hours.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mproxy_scapy.codec import pack, pack_header

MSS = 1448
RAW_PORT = 7900
"""The relay port of the raw-TCP variant; the Scapy benchmark binds the MProxy layer to it."""
WS_PORT = 80
RELAY_IP = "10.9.0.1"
CLIENTS = 200
TUNNELS = 8
BASE_TS_US = 1_750_000_000 * 1_000_000

_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_ETHER = bytes.fromhex("020000000002" "020000000001" "0800")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
CLIENT_TO_SERVER, SERVER_TO_CLIENT = 0, 1
"""Direction 0 is the device (TCP and WebSocket client) to the relay."""


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class PcapStream:
    """Ethernet/IPv4/TCP packets appended to a classic pcap file; counts bytes for the size target."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        out.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.bytes_written = 24
        self.packets = 0
        self.now_us = BASE_TS_US

    def tick(self, rng: random.Random) -> None:
        self.now_us += rng.randint(5, 120)

    def segment(self, flow: TcpFlow, direction: int, flags: int, payload: bytes = b"") -> None:
        src, dst = (flow.client, flow.server) if direction == CLIENT_TO_SERVER else (flow.server, flow.client)
        seq = flow.next_seq[direction]
        ack = flow.next_seq[1 - direction] if flags & ACK else 0
        tcp = _TCP.pack(src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
        flow.ip_id[direction] = (flow.ip_id[direction] + 1) & 0xFFFF
        ip = _IPV4.pack(0x45, 0, 40 + len(payload), flow.ip_id[direction], 0x4000, 64, 6, 0, src[0], dst[0])
        ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
        length = 14 + 40 + len(payload)
        seconds, micros = divmod(self.now_us, 1_000_000)
        self._out.write(_RECORD.pack(seconds, micros, length, length) + _ETHER + ip + tcp)
        if payload:
            self._out.write(payload)
        self.bytes_written += 16 + length
        self.packets += 1
        flow.next_seq[direction] += len(payload) + (1 if flags & (SYN | FIN) else 0)
        self.now_us += 3


class TcpFlow:
    """One tunnel's TCP connection: endpoints, next sequence number and IP id per direction."""

    def __init__(self, client: tuple[bytes, int], server: tuple[bytes, int], rng: random.Random) -> None:
        self.client = client
        self.server = server
        self.next_seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.ip_id = [rng.getrandbits(16), rng.getrandbits(16)]

    def open(self, pcap: PcapStream) -> None:
        pcap.segment(self, CLIENT_TO_SERVER, SYN)
        pcap.segment(self, SERVER_TO_CLIENT, SYN | ACK)
        pcap.segment(self, CLIENT_TO_SERVER, ACK)

    def send(self, pcap: PcapStream, direction: int, data: bytes) -> None:
        """One burst cut at the MSS, PSH on its last segment, then the peer's pure ACK."""
        view = memoryview(data)
        for start in range(0, len(data), MSS):
            chunk = view[start : start + MSS]
            last = start + MSS >= len(data)
            pcap.segment(self, direction, ACK | (PSH if last else 0), bytes(chunk))
        pcap.segment(self, 1 - direction, ACK)

    def close(self, pcap: PcapStream) -> None:
        pcap.segment(self, CLIENT_TO_SERVER, FIN | ACK)
        pcap.segment(self, SERVER_TO_CLIENT, FIN | ACK)
        pcap.segment(self, CLIENT_TO_SERVER, ACK)


def ws_frame(payload: bytes, mask_key: bytes | None) -> bytes:
    """One FIN binary WebSocket frame; masked when a key is given (client to server)."""
    size = len(payload)
    mask_bit = 0x80 if mask_key else 0
    if size < 126:
        head = bytes((0x82, mask_bit | size))
    elif size < 65536:
        head = bytes((0x82, mask_bit | 126)) + struct.pack("!H", size)
    else:
        head = bytes((0x82, mask_bit | 127)) + struct.pack("!Q", size)
    if not mask_key:
        return head + payload
    key = (mask_key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask_key + masked


class Tunnel:
    """One device<->relay connection: its TCP flow, carrier framing and per-direction pending bytes."""

    def __init__(self, index: int, carrier: str, rng: random.Random) -> None:
        device_ip = bytes((10, 0, 0, 10 + index))
        port = WS_PORT if carrier == "websocket" else RAW_PORT
        self.flow = TcpFlow((device_ip, 40000 + index), (bytes(int(p) for p in RELAY_IP.split(".")), port), rng)
        self.carrier = carrier
        self.rng = rng
        self.pending = [bytearray(), bytearray()]
        self.control_id = 0

    def start(self, pcap: PcapStream) -> None:
        self.flow.open(pcap)
        if self.carrier == "websocket":
            request = (
                b"GET /?versions=v1 HTTP/1.1\r\nHost: relay.example.net\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            reply = (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            )
            self.flow.send(pcap, CLIENT_TO_SERVER, request)
            self.flow.send(pcap, SERVER_TO_CLIENT, reply)
        self.control(pcap, SERVER_TO_CLIENT, [1, "hello", 254, ["add_token", "delete_token"]])
        self.control(pcap, CLIENT_TO_SERVER, [-1, None])

    def control(self, pcap: PcapStream, direction: int, message: list[object]) -> None:
        self.write(pcap, direction, *split_frame(pack(None, message, "control")))

    def write(self, pcap: PcapStream, direction: int, header: bytes, body: bytes) -> None:
        """One frame as its sender writes it; flushed now or coalesced with the next write."""
        if self.carrier == "websocket":
            if direction == SERVER_TO_CLIENT:
                data = ws_frame(header, None) + (ws_frame(body, None) if body else b"")
            else:
                data = ws_frame(header + body, self.rng.randbytes(4))
        else:
            data = header + body
        pending = self.pending[direction]
        pending += data
        if len(pending) >= 4 * MSS or self.rng.random() < 0.6:
            self.flush(pcap, direction)

    def flush(self, pcap: PcapStream, direction: int) -> None:
        pending = self.pending[direction]
        if pending:
            self.flow.send(pcap, direction, bytes(pending))
            pending.clear()

    def finish(self, pcap: PcapStream) -> None:
        self.flush(pcap, CLIENT_TO_SERVER)
        self.flush(pcap, SERVER_TO_CLIENT)
        self.flow.close(pcap)


class Client:
    """One tunneled client's session: a scripted list of steps, consumed one per turn."""

    SERVICES = (("https", 443, "www.example.com"), ("http", 80, "api.example.com"), ("ssh", 22, ""),
                ("https", 443, "media.example.org"))

    def __init__(self, slot: int, serial: int, tunnel: Tunnel, rng: random.Random) -> None:
        service, serviceport, name = self.SERVICES[rng.randrange(len(self.SERVICES))]
        self.tunnel = tunnel
        self.address = {
            "family": "IPv4",
            "address": f"198.51.{100 + slot // 250}.{1 + slot % 250}",
            "port": 1024 + (serial * 7919 + slot) % 64000,
            "service": service,
            "serviceport": serviceport,
            "name": name,
        }
        self.steps = self._script(rng)

    def _script(self, rng: random.Random) -> Iterator[tuple[int, str, int]]:
        """(direction, kind, body size) steps: connection, exchanges, maybe pause/resume, end."""
        yield SERVER_TO_CLIENT, "connection", 0
        for _ in range(rng.randint(1, 12)):
            yield SERVER_TO_CLIENT, "data", _request_size(rng)
            for _ in range(rng.randint(1, 4)):
                yield CLIENT_TO_SERVER, "data", _response_size(rng)
            if rng.random() < 0.05:
                yield SERVER_TO_CLIENT, "pause", 0
                yield SERVER_TO_CLIENT, "resume", 0
        yield (CLIENT_TO_SERVER if rng.random() < 0.5 else SERVER_TO_CLIENT), "end", 0


def _request_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.4:
        return rng.randint(1, 64)
    if roll < 0.9:
        return rng.randint(65, 1500)
    return rng.randint(1501, 16384)


def _response_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.2:
        return rng.randint(1, 64)
    if roll < 0.5:
        return rng.randint(65, 1500)
    if roll < 0.7:
        return rng.randint(1501, 8192)
    return 16384 if rng.random() < 0.6 else rng.randint(8193, 16384)


class BodyPool:
    """Deterministic body bytes, sliced from one pool instead of generated per frame."""

    def __init__(self, rng: random.Random, size: int = 1 << 20) -> None:
        text = b"GET /assets/app.js HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"
        self._pool = (text * 64)[:4096] + rng.randbytes(size)

    def take(self, rng: random.Random, size: int) -> bytes:
        start = rng.randrange(len(self._pool) - size)
        return self._pool[start : start + size]


def frame_parts(client: Client, kind: str, size: int, bodies: BodyPool, rng: random.Random) -> tuple[bytes, bytes]:
    """Header and body of one frame, made by the project's codec.

    ``end`` comes both ways it occurs in real traffic: ``pack`` (one padding space,
    datalen 1) and ``pack_header`` (datalen 0, no body).
    """
    if kind == "data":
        whole = pack(client.address, bodies.take(rng, size))
    elif kind in ("pause", "resume"):
        whole = pack(client.address, str(rng.randint(65536, 1 << 20)).encode(), kind)
    elif kind == "end" and rng.random() < 0.5:
        return pack_header(client.address, None, kind), b""
    else:
        whole = pack(client.address, None, kind)
    return split_frame(whole)


def split_frame(whole: bytes) -> tuple[bytes, bytes]:
    header_end = 2 + whole[1]
    return whole[:header_end], whole[header_end:]


def generate(out: BinaryIO, size_bytes: int, carrier: str, seed: int = 1) -> dict[str, int]:
    """Write a capture of about ``size_bytes`` (it ends after the turn that crosses the size)."""
    rng = random.Random(seed)
    bodies = BodyPool(rng)
    pcap = PcapStream(out)
    tunnels = [Tunnel(i, carrier, rng) for i in range(TUNNELS)]
    for tunnel in tunnels:
        tunnel.start(pcap)
    serials = [0] * CLIENTS
    clients = [Client(slot, 0, tunnels[slot % TUNNELS], rng) for slot in range(CLIENTS)]
    frames = 0
    while pcap.bytes_written < size_bytes:
        slot = rng.randrange(CLIENTS)
        client = clients[slot]
        step = next(client.steps, None)
        if step is None:
            serials[slot] += 1
            clients[slot] = Client(slot, serials[slot], tunnels[slot % TUNNELS], rng)
            continue
        direction, kind, size = step
        header, body = frame_parts(client, kind, size, bodies, rng)
        client.tunnel.write(pcap, direction, header, body)
        frames += 1
        if rng.random() < 0.002:
            tunnel = tunnels[rng.randrange(TUNNELS)]
            tunnel.control_id += 1
            tunnel.control(pcap, SERVER_TO_CLIENT, [tunnel.control_id + 1, "hello", 254, []])
            tunnel.control(pcap, CLIENT_TO_SERVER, [-(tunnel.control_id + 1), None])
            frames += 2
        pcap.tick(rng)
    for tunnel in tunnels:
        tunnel.finish(pcap)
    return {"bytes": pcap.bytes_written, "packets": pcap.packets, "frames": frames + 2 * TUNNELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="pcap file to write")
    parser.add_argument("--size-mb", type=float, default=200.0, help="approximate size in MB (10^6 bytes)")
    parser.add_argument("--carrier", choices=("tcp", "websocket"), default="tcp")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with args.output.open("wb", buffering=1 << 20) as out:
        counts = generate(out, int(args.size_mb * 1_000_000), args.carrier, args.seed)
    print(json.dumps({"file": str(args.output), "carrier": args.carrier, **counts}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
