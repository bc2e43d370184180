"""tcpdump on the loopback interface, and the counts the manifest records for each capture."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.utils import PcapNgReader, PcapReader

REQUIRED_TOOLS = {
    "tcpdump": "Debian package tcpdump (records the loopback interface)",
    "editcap": "Debian package wireshark-common (pcapng conversion, TLS secrets)",
    "node": "Node.js 18+ (runs the reference proxy-packer relay)",
    "npm": "npm (installs proxy-packer@2.0.4 into a temporary folder)",
}


def missing_tools() -> list[str]:
    return [f"{tool}: {why}" for tool, why in REQUIRED_TOOLS.items() if shutil.which(tool) is None]


class Tcpdump:
    """``tcpdump -i lo`` limited to the tunnel ports, started before and stopped after a scenario."""

    def __init__(self, path: Path, ports: list[int]) -> None:
        self.path = path
        bpf = " or ".join(f"tcp port {p}" for p in ports)
        self._proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-B", "65536", "-s", "0", "-w", str(path), bpf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._ready = threading.Event()
        self.messages: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self._ready.wait(15):
            self._proc.kill()
            raise RuntimeError("tcpdump did not start: " + " | ".join(self.messages))

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.messages.append(line.strip())
            if "listening on" in line:
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        time.sleep(1.0)
        self._proc.send_signal(signal.SIGINT)
        if self._proc.wait(15) != 0:
            raise RuntimeError("tcpdump failed: " + " | ".join(self.messages))
        folder = self.path.parent.stat()
        os.chown(self.path, folder.st_uid, folder.st_gid)  # tcpdump hands the file to its own user
        dropped = [m for m in self.messages if m.endswith("dropped by kernel") and not m.startswith("0 ")]
        if dropped:
            raise RuntimeError(f"tcpdump lost packets ({dropped[0]}): the capture is incomplete")


def capture_counts(path: Path) -> dict[str, Any]:
    """Packets and TCP conversations (4-tuples) of a capture, read with Scapy."""
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # pcapng TLS secrets: not Scapy's job
    reader = PcapNgReader if path.suffix == ".pcapng" else PcapReader
    packets = 0
    conversations: dict[tuple[str, str], int] = {}
    with reader(str(path)) as packets_in:
        for pkt in packets_in:
            packets += 1
            ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
            tcp = pkt.getlayer(TCP)
            if ip is None or tcp is None:
                continue
            ends = sorted([_endpoint(ip.src, tcp.sport), _endpoint(ip.dst, tcp.dport)])
            key = (ends[0], ends[1])
            conversations[key] = conversations.get(key, 0) + 1
    return {
        "packets": packets,
        "tcp_conversations": [{"a": a, "b": b, "packets": n} for (a, b), n in sorted(conversations.items())],
    }


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
