"""The floor: the least work any pure-Python capture tool must do.

Reads every record of a classic pcap (Ethernet, IPv4/IPv6) in large streaming chunks,
locates each TCP payload (one ``unpack_from`` per header) and does nothing else. What
``mproxy dissect`` achieves is measured against this: the gap between the two is the cost
of reassembly, carrier decoding, frame parsing and output.

Prints ``packets tcp_payload_bytes`` so the walk cannot be optimised away and the
harness can check that it saw the capture.
"""

from __future__ import annotations

import struct
import sys

_RECORD = struct.Struct("<IIII")
_CHUNK = 1 << 20


def walk(path: str) -> tuple[int, int]:
    """(packets, TCP payload bytes) of a classic little-endian pcap with Ethernet link type."""
    packets = payload_bytes = 0
    unpack_record = _RECORD.unpack_from
    with open(path, "rb", buffering=0) as f:
        head = f.read(24)
        if head[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", head, 20)[0] != 1:
            raise SystemExit(f"{path}: floor.py reads little-endian Ethernet pcap only")
        buf = b""
        pos = 0
        while True:
            if len(buf) - pos < 16:
                more = f.read(_CHUNK)
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                continue
            _, _, incl, _ = unpack_record(buf, pos)
            end = pos + 16 + incl
            if end > len(buf):
                more = f.read(max(_CHUNK, end - len(buf)))
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                continue
            start = pos + 16
            pos = end
            packets += 1
            ethertype = buf[start + 12] << 8 | buf[start + 13]
            ip = start + 14
            if ethertype == 0x0800:
                if buf[ip + 9] != 6:
                    continue
                ip_end = ip + (buf[ip + 2] << 8 | buf[ip + 3])
                tcp = ip + (buf[ip] & 0x0F) * 4
            elif ethertype == 0x86DD:
                if buf[ip + 6] != 6:
                    continue
                tcp = ip + 40
                ip_end = tcp + (buf[ip + 4] << 8 | buf[ip + 5])
            else:
                continue
            data = tcp + (buf[tcp + 12] >> 4) * 4
            payload_bytes += min(ip_end, end) - data
    return packets, payload_bytes


def main() -> int:
    packets, payload_bytes = walk(sys.argv[1])
    print(packets, payload_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
