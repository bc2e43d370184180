"""impaired.pcap: raw-tcp.pcap replayed through a bad network, with truth about what was lost.

The rewrite works on the device->relay direction of the tunnel (the big transfer):
adjacent segments swapped, exact retransmissions (one relay->device too), one
retransmission that overlaps two segments, and one segment dropped. The truth is
raw-tcp's, each frame marked with the stream bytes it lost.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter, rdpcap

SEED = 7


def _refresh(pkt: Packet) -> Packet:
    """Rebuild lengths and checksums after the payload changed."""
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    if isinstance(ip, IP):
        del ip.len, ip.chksum
    else:
        del ip.plen
    del pkt[TCP].chksum
    return pkt.__class__(bytes(pkt))


def impair(source: Path, source_truth: Path, out: Path, out_truth: Path) -> dict[str, Any]:
    packets = list(rdpcap(str(source)))
    syn = next(p for p in packets if p[TCP].flags & 0x02 and not p[TCP].flags & 0x10)
    client = (syn[TCP].sport, syn[TCP].dport)
    isn = {True: syn[TCP].seq}
    synack = next(p for p in packets if p[TCP].flags & 0x12 == 0x12)
    isn[False] = synack[TCP].seq

    def from_client(p: Packet) -> bool:
        return (p[TCP].sport, p[TCP].dport) == client

    def data_positions(up: bool) -> list[int]:
        return [i for i, p in enumerate(packets) if len(p[TCP].payload) and from_client(p) == up]

    rng = random.Random(SEED)
    up = data_positions(True)
    big = [i for i in up if len(packets[i][TCP].payload) == 1400]
    third = len(big) // 3
    lost_at = big[third]
    swaps = sorted(rng.sample(range(third + 3, len(big) - 3, 4), 2))
    overlap_at = big[2 * third]
    duplicates = [big[third // 2], big[third + 1], big[2 * third + 4]]
    down = data_positions(False)

    order: list[tuple[Packet, str]] = [(p, "original") for p in packets]
    events: list[dict[str, Any]] = []
    for index in swaps:
        a, b = big[index], big[index + 1]
        order[a], order[b] = order[b], order[a]
    lost_pkt = packets[lost_at]
    lost_start = (lost_pkt[TCP].seq - isn[True] - 1) & 0xFFFFFFFF
    lost_len = len(lost_pkt[TCP].payload)

    extra: dict[int, list[tuple[Packet, str]]] = {}
    for index in [*duplicates, down[len(down) // 2]]:
        extra.setdefault(index + 3, []).append((packets[index].copy(), "retransmission"))
    first, second = packets[overlap_at], packets[_next_up(overlap_at, up)]
    half = len(first[TCP].payload) // 2
    overlap = first.copy()
    overlap[TCP].remove_payload()
    overlap[TCP].add_payload(Raw(bytes(first[TCP].payload)[half:] + bytes(second[TCP].payload)[:half]))
    overlap[TCP].seq = (first[TCP].seq + half) & 0xFFFFFFFF
    extra.setdefault(_next_up(overlap_at, up) + 1, []).append((_refresh(overlap), "overlapping retransmission"))

    times = [p.time for p in packets]
    result: list[tuple[Packet, str]] = []
    for position, item in enumerate(order):
        result.extend(extra.get(position, []))
        if position == lost_at:
            continue
        pkt = item[0].copy()
        pkt.time = times[position]
        result.append((pkt, "reordered" if item[0] is not packets[position] else item[1]))
    last = times[0]
    with PcapWriter(str(out), linktype=1, sync=True) as writer:
        for number, (pkt, label) in enumerate(result, start=1):
            if label in ("retransmission", "overlapping retransmission"):
                pkt.time = last
            last = pkt.time
            writer.write(pkt)
            if label != "original":
                tcp = pkt[TCP]
                events.append({
                    "pcap_frame": number,
                    "what": label,
                    "direction": "device->relay" if from_client(pkt) else "relay->device",
                    "stream_offset": (tcp.seq - isn[from_client(pkt)] - 1) & 0xFFFFFFFF,
                    "length": len(tcp.payload),
                })
    lost = {"direction": "device->relay", "stream_offset": lost_start, "length": lost_len,
            "original_pcap_frame": lost_at + 1}
    frames = _mark_truth(source_truth, out_truth, lost)
    return {"source": source.name, "seed": SEED, "lost_segment": lost, "changes": events, "frames_lost": frames}


def _next_up(position: int, up: list[int]) -> int:
    return up[up.index(position) + 1]


def _mark_truth(source_truth: Path, out_truth: Path, lost: dict[str, Any]) -> int:
    """Copy raw-tcp's truth, marking each frame with the stream bytes the capture lost."""
    start, end = lost["stream_offset"], lost["stream_offset"] + lost["length"]
    count = 0
    with source_truth.open(encoding="utf-8") as lines, out_truth.open("w", encoding="utf-8") as out:
        for line in lines:
            record = json.loads(line)
            lo, hi = record["offset"], record["offset"] + record["length"]
            cut = (max(lo, start), min(hi, end))
            hit = record["direction"] == lost["direction"] and cut[0] < cut[1]
            record["lost"] = hit
            record["lost_ranges"] = [list(cut)] if hit else []
            count += hit
            out.write(json.dumps(record) + "\n")
    return count
