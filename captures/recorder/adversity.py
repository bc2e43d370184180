"""Small captures of what tunnels meet besides clean frames: junk, false syncs, compressed messages, a lost segment.

Each is a real connection on 127.0.0.1 recorded by tcpdump, as the other captures,
but with a fixed script instead of browsers: the relay side writes frames (the
project's codec) and, where the script says so, bytes that are not M-PROXY, each
write one paced segment (or several for a long one), so junk lands in a segment of
its own or between frames inside one. The truth lists the frames as written;
``junk`` in the manifest lists every stretch of other bytes with its stream offset.

- ``junk.pcap`` (raw TCP): HTTP and plain text between frames, in their own
  segment and inside a segment with frames; binary junk.
- ``false-sync.pcap`` (raw TCP): 0xFE with a small hdrlen and a header that is
  not text, a short header of plain text, a stray 0xFE whose header is cut short.
- ``deflate.pcap`` (WebSocket, permessage-deflate): messages of several frames,
  some spanning segments, so a frame is whole before its message ends.
- ``impaired-ws.pcap`` (WebSocket): a small tunnel with one relay->device
  segment that starts a message dropped, so the framing must be found again.
- ``impaired-ack.pcap`` (raw TCP): three relay->device segments dropped (the tail
  of a frame, two frames whole), each acknowledged by the device before the relay
  writes again: the acknowledgement, not a later segment, shows the bytes are lost;
  the last one by the device's reply, its pure ACKs dropped too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scapy.layers.inet import TCP
from scapy.utils import PcapWriter, rdpcap
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from . import pacing
from .capture import Tcpdump
from .links import Link, Packed, RawLink, WsLink
from .packers import JsPacking
from .truth import TruthLog

TUN = {"family": "IPv4", "address": "127.0.0.1", "port": 50321, "service": "http", "serviceport": 80,
       "name": "web.example.test"}
SEED = 14
Part = Packed | tuple[bytes, str]
"""One piece of a write: a frame, or (bytes, what) that is not M-PROXY."""
PAUSE = 0.2
"""Seconds a script waits where it pauses: far longer than a delayed ACK (40 ms), so the peer acknowledges first."""


class Script:
    """The writes of one direction, each a list of parts sent as one write (one WebSocket message)."""

    def __init__(self) -> None:
        self.writes: list[list[Part] | float] = []
        self.packing = JsPacking()
        self.rng = random.Random(SEED)

    def frame(self, port: int, body: bytes) -> Packed:
        return self.packing.data(dict(TUN, port=port), body, "pack")

    def text(self, size: int) -> bytes:
        words = [b"tunnel", b"frame", b"relay", b"device", b"segment", b"message", b"header", b"body"]
        return b" ".join(self.rng.choice(words) for _ in range(size // 6))[:size]

    def write(self, *parts: Part) -> None:
        self.writes.append(list(parts))

    def pause(self) -> None:
        """Wait before the next write (``PAUSE``), so everything written so far is acknowledged first."""
        self.writes.append(PAUSE)


def send_script(link: Link, script: Script, junk: list[dict[str, Any]]) -> None:
    """Write the script; frames go to the truth, other bytes to ``junk`` (with their stream offsets)."""
    for parts in script.writes:
        if isinstance(parts, float):
            time.sleep(parts)
            continue
        with link._lock:
            data = b""
            for part in parts:
                if isinstance(part, Packed):
                    whole = part.header + part.body
                    link.truth.record(direction=link.direction, src=link.src, dst=link.dst, carrier=link.carrier,
                                      offset=link.offset, frame=whole, packer=part.packer,
                                      write_index=link.write_count, writes=1)
                else:
                    whole = part[0]
                    junk.append({"direction": link.direction, "offset": link.offset, "length": len(whole),
                                 "what": part[1]})
                link.offset += len(whole)
                data += whole
            link.write_count += 1
            link._write(data)


def drain(link: Link) -> None:
    while link.recv() is not None:
        pass


def junk_script() -> tuple[Script, Script]:
    relay, device = Script(), Script()
    relay.write(relay.frame(50001, b"GET / HTTP/1.1\r\nHost: web.example.test\r\n\r\n"))
    relay.write((b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "HTTP text in its own segment"))
    relay.write(relay.frame(50002, b"first"), relay.frame(50003, b"second"))
    relay.write(relay.frame(50004, b"before the junk"), (b"plain text junk inside a segment\n", "text between frames"),
                relay.frame(50005, b"after the junk"))
    relay.write(relay.frame(50006, relay.text(3000)))
    relay.write((bytes(range(64)), "binary junk in its own segment"))
    relay.write(relay.frame(50007, b"x" * 700), (b"\x00\x01\x02junk\x7f", "binary junk inside a segment"),
                relay.frame(50008, b"y" * 500))
    relay.write(relay.frame(50009, b"last"))
    device.write(device.frame(60001, b"HTTP/1.1 200 OK\r\n\r\nhello"), device.frame(60002, b"bye"))
    return relay, device


def false_sync_script() -> tuple[Script, Script]:
    relay, device = Script(), Script()
    relay.write(relay.frame(50101, b"the first frame"))
    relay.write((b"\xfe\x05ab\x01de then more bytes after a false sync",
                 "0xFE, hdrlen 5, a header with a control byte"))
    relay.write(relay.frame(50102, b"found again"), relay.frame(50103, b"and the next"))
    relay.write(relay.frame(50104, b"frame"), (b"\xfe\x10not,a,header\x00xx", "a false sync inside a segment"),
                relay.frame(50105, b"frame after it"))
    relay.write((b"\xfe\x05abcde", "0xFE, hdrlen 5, a short text header"))
    relay.write((b"plain words after it", "text after the short header"))
    relay.write(relay.frame(50106, relay.text(2500)))
    relay.write((b"junk \xfe\xf0\x01", "a stray 0xFE whose long header is cut short"),
                relay.frame(50107, b"not held back"))
    relay.write(relay.frame(50108, b"last"))
    device.write(device.frame(60101, b"reply"))
    return relay, device


def deflate_script() -> tuple[Script, Script]:
    relay, device = Script(), Script()
    relay.write(relay.frame(50201, b"small one"), relay.frame(50202, b"small two"),
                relay.frame(50203, relay.rng.randbytes(4000)))
    relay.write(relay.frame(50204, relay.text(6000)), relay.frame(50205, b"after the text"))
    relay.write(relay.frame(50206, b"alone"))
    relay.write(relay.frame(50207, b"a"), relay.frame(50208, relay.rng.randbytes(3000)),
                relay.frame(50209, b"b"), relay.frame(50210, relay.rng.randbytes(2000)))
    device.write(device.frame(60201, b"one"), device.frame(60202, device.text(2000)))
    device.write(device.frame(60203, b"two"))
    return relay, device


def ws_script() -> tuple[Script, Script]:
    relay, device = Script(), Script()
    for index in range(8):
        relay.write(relay.frame(50300 + index, relay.text(200 + 500 * (index % 3))))
    relay.write(relay.frame(50310, relay.text(4000)))
    for index in range(4):
        relay.write(relay.frame(50320 + index, b"after %d" % index))
    device.write(device.frame(60301, b"device"))
    return relay, device


def acked_hole_script() -> tuple[Script, Script]:
    relay, device = Script(), Script()
    relay.write(relay.frame(50401, b"before the holes"))
    relay.pause()
    relay.write(relay.frame(50402, relay.text(3000)))  # three segments: the last, the frame's tail, is dropped
    relay.pause()
    relay.write(relay.frame(50403, b"after the lost tail"))
    relay.pause()
    relay.write(relay.frame(50404, b"a frame lost whole"))  # one segment, dropped
    relay.pause()
    relay.write(relay.frame(50405, b"found again"), relay.frame(50406, b"and the next"))
    relay.pause()
    relay.write(relay.frame(50407, b"lost before the reply"))  # dropped, with the device's pure ACKs of it
    relay.pause()
    device.write(device.frame(60401, b"reply"))
    return relay, device


def _raw(out: Path, script: Callable[[], tuple[Script, Script]]) -> tuple[TruthLog, list[dict[str, Any]]]:
    truth, junk = TruthLog(), []
    listener = pacing.listen("127.0.0.1")
    dump = Tcpdump(out, [listener.getsockname()[1]])
    try:
        device_sock = pacing.connect("127.0.0.1", listener.getsockname()[1])
        relay_sock, _ = listener.accept()
        listener.close()
        relay_link = RawLink(relay_sock, truth, "relay->device")
        device_link = RawLink(device_sock, truth, "device->relay")
        _exchange(relay_link, device_link, script(), junk)
    finally:
        dump.stop()
    return truth, junk


def _exchange(relay_link: Link, device_link: Link, scripts: tuple[Script, Script], junk: list[dict[str, Any]]) -> None:
    """The relay writes its script, then the device its own; each side reads everything; the device closes."""
    relay_script, device_script = scripts
    readers = [threading.Thread(target=drain, args=(link,), daemon=True) for link in (relay_link, device_link)]
    for reader in readers:
        reader.start()
    send_script(relay_link, relay_script, junk)
    send_script(device_link, device_script, junk)
    device_link.close()
    relay_link.close()
    for reader in readers:
        reader.join(10)


def _ws(out: Path, script: Callable[[], tuple[Script, Script]], compression: str | None) -> TruthLog:
    truth: TruthLog = TruthLog()
    junk: list[dict[str, Any]] = []
    listener = pacing.listen("127.0.0.1")
    port = listener.getsockname()[1]
    dump = Tcpdump(out, [port])
    linked = threading.Event()
    holder: dict[str, Any] = {}

    def handler(conn: Any) -> None:
        holder["relay"] = WsLink(conn, truth, "relay->device")
        linked.set()
        holder["done"].wait(30)

    holder["done"] = threading.Event()
    server = ws_serve(handler, sock=listener, compression=compression, ping_interval=None, server_header=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = ws_connect(f"ws://127.0.0.1:{port}/?access_token=FAKE.TOKEN.x&versions=v1",
                          sock=pacing.connect("127.0.0.1", port), compression=compression, ping_interval=None,
                          user_agent_header="mproxy-scapy-recorder device")
        if not linked.wait(10):
            raise RuntimeError("the WebSocket relay never got the device")
        _exchange(holder["relay"], WsLink(conn, truth, "device->relay"), script(), junk)
        holder["done"].set()
    finally:
        server.shutdown()
        dump.stop()
    return truth


def record_junk(out: Path) -> tuple[TruthLog, list[dict[str, Any]]]:
    return _raw(out, junk_script)


def record_false_sync(out: Path) -> tuple[TruthLog, list[dict[str, Any]]]:
    return _raw(out, false_sync_script)


def record_deflate(out: Path) -> TruthLog:
    return _ws(out, deflate_script, "deflate")


def record_impaired_ws(out: Path, work: Path) -> tuple[TruthLog, dict[str, Any]]:
    """A WebSocket tunnel recorded whole, then rewritten without one relay->device segment that starts a message."""
    whole = work / "ws-whole.pcap"
    truth = _ws(whole, ws_script, None)
    packets = list(rdpcap(str(whole)))
    relay_port = int(truth.records[0]["src"].rsplit(":", 1)[1])
    down = [i for i, p in enumerate(packets) if p[TCP].sport == relay_port and len(p[TCP].payload)]
    # the 4th message on: a segment that begins with a WebSocket header (FIN + binary, unmasked)
    victim = next(i for i in down[4:] if bytes(packets[i][TCP].payload)[:1] == b"\x82")
    lost = packets[victim]
    synack = next(p for p in packets if p[TCP].flags & 0x12 == 0x12)
    detail = {"direction": "relay->device", "original_pcap_frame": victim + 1, "length": len(lost[TCP].payload),
              "stream_offset": (lost[TCP].seq - synack[TCP].seq - 1) & 0xFFFFFFFF}
    with PcapWriter(str(out), linktype=1, sync=True) as writer:
        for index, packet in enumerate(packets):
            if index != victim:
                writer.write(packet)
    response = bytes(packets[down[0]][TCP].payload)
    detail["frames_lost"] = _mark_lost(truth, detail, response.index(b"\r\n\r\n") + 4)
    return truth, {"seed": SEED, "lost_segment": detail}


def record_impaired_ack(out: Path, work: Path) -> tuple[TruthLog, dict[str, Any]]:
    """A raw tunnel recorded whole, then rewritten without three relay->device segments (a frame's tail, a frame
    whole, a last frame whole), each acknowledged by the device before the relay's next segment: the first two by
    pure ACKs, the last by the device's reply (its pure ACKs are dropped too), whose records then share a packet."""
    whole = work / "ack-whole.pcap"
    truth, _ = _raw(whole, acked_hole_script)
    packets = list(rdpcap(str(whole)))
    relay_port = int(truth.records[0]["src"].rsplit(":", 1)[1])
    synack = next(p for p in packets if p[TCP].flags & 0x12 == 0x12)

    def offset(packet: Any) -> int:
        return (packet[TCP].seq - synack[TCP].seq - 1) & 0xFFFFFFFF

    def end(index: int) -> int:
        return offset(packets[index]) + len(packets[index][TCP].payload)

    def acknowledged(index: int) -> int:
        return (packets[index][TCP].ack - synack[TCP].seq - 1) & 0xFFFFFFFF

    relay = [r for r in truth.records if r["direction"] == "relay->device"]
    down = [i for i, p in enumerate(packets) if p[TCP].sport == relay_port and len(p[TCP].payload)]
    up = [i for i, p in enumerate(packets) if p[TCP].dport == relay_port]
    tail_end = relay[1]["offset"] + relay[1]["length"]
    victims = [next(i for i in down if offset(packets[i]) > relay[1]["offset"] and end(i) == tail_end),
               next(i for i in down if offset(packets[i]) == relay[3]["offset"]),
               next(i for i in down if offset(packets[i]) == relay[6]["offset"])]
    reply = next(i for i in up if i > victims[2] and len(packets[i][TCP].payload))
    dropped = {*victims, *(i for i in up if victims[2] < i < reply)}
    lost = []
    for victim in victims:
        ack = next(i for i in up if i > victim and i not in dropped and packets[i][TCP].flags & 0x10
                   and acknowledged(i) >= end(victim))
        if any(i in down for i in range(victim + 1, ack)):
            raise RuntimeError(f"the relay wrote again before the device acknowledged frame {victim + 1}: record again")
        lost.append({"direction": "relay->device", "original_pcap_frame": victim + 1,
                     "stream_offset": offset(packets[victim]), "length": end(victim) - offset(packets[victim]),
                     "acked_in": ack + 1 - len([i for i in dropped if i < ack]),
                     "acked_with_data": bool(len(packets[ack][TCP].payload))})
    with PcapWriter(str(out), linktype=1, sync=True) as writer:
        for index, packet in enumerate(packets):
            if index not in dropped:
                writer.write(packet)
    count = 0
    for record in truth.records:
        ranges = []
        if record["direction"] == "relay->device":
            for segment in lost:
                lo = max(segment["stream_offset"], record["offset"])
                hi = min(segment["stream_offset"] + segment["length"], record["offset"] + record["length"])
                if lo < hi:
                    ranges.append([lo, hi])
        record["lost"] = bool(ranges)
        record["lost_ranges"] = ranges
        count += bool(ranges)
    acks = sorted(i + 1 for i in dropped - set(victims))
    return truth, {"seed": SEED, "lost_segments": lost, "frames_lost": count, "acks_dropped": acks}


def _ws_header_size(length: int) -> int:
    return 2 if length < 126 else 4 if length < 65536 else 10


def _mark_lost(truth: TruthLog, lost: dict[str, Any], response_len: int) -> int:
    """Mark each relay frame with the M-PROXY stream bytes the lost wire bytes held (unmasked, uncompressed
    messages: the wire is the 101 response, then per message its header and payload)."""
    relay = [r for r in truth.records if r["direction"] == lost["direction"]]
    messages: dict[int, list[dict[str, Any]]] = {}
    for record in relay:
        messages.setdefault(record["write_index"], []).append(record)
    start, end = lost["stream_offset"], lost["stream_offset"] + lost["length"]
    cut: list[tuple[int, int]] = []
    wire = response_len
    for index in sorted(messages):
        frames = messages[index]
        payload = sum(r["length"] for r in frames)
        body = wire + _ws_header_size(payload)
        low, high = max(start, body), min(end, body + payload)
        if low < high:
            first = frames[0]["offset"]
            cut.append((first + low - body, first + high - body))
        wire = body + payload
    count = 0
    for record in truth.records:
        ranges = []
        if record["direction"] == lost["direction"]:
            for a, b in cut:
                lo, hi = max(a, record["offset"]), min(b, record["offset"] + record["length"])
                if lo < hi:
                    ranges.append([lo, hi])
        record["lost"] = bool(ranges)
        record["lost_ranges"] = ranges
        count += bool(ranges)
    return count
