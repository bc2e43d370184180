"""A raw-TCP tunnel with thousands of short tunneled clients, more than the timeline draws by default."""

from __future__ import annotations

from pathlib import Path

from tunnel_capture import simple_tunnel

from mproxy_scapy.codec import pack


def client(i: int) -> dict:
    return {"family": "IPv4", "address": f"198.51.{i // 250}.{i % 250 + 1}", "port": 40000 + i % 20000,
            "service": "https" if i % 3 else "http", "serviceport": 443, "name": f"host{i % 40}.example.test"}


def data_bytes(i: int) -> int:
    """Client i moves i // 10 + 1 bytes each way: the least busy are the first ones, in groups of ten."""
    return i // 10 + 1


def many_clients_capture(path: Path, count: int) -> Path:
    to_device, to_relay = [], []
    for i in range(count):
        meta = client(i)
        body = b"x" * data_bytes(i)
        to_device += [pack(meta, None, "connection"), pack(meta, body)]
        to_relay += [pack(meta, body), pack(meta, None, "end")]
    return simple_tunnel(path, b"".join(to_device), b"".join(to_relay), chunk=1400)
