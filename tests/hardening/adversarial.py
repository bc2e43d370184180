"""Builders and runners for the adversarial catalogue: hostile captures made in the test, both decoders run on them.

Captures are written with ``mproxy_scapy.pcapwriter`` (through
tests/tunnel_capture.py) or, for damage no writer makes, byte by byte here.
The Python decoder runs as a user runs it (``mproxy dissect``); the Lua
dissector under real tshark of each Wireshark version of the matrix
(tests/wireshark/matrix.py: unprivileged, the plugin checked to be registered)
with an empty profile (``WIRESHARK_CONFIG_DIR`` and ``HOME`` in a fresh folder),
its stderr and ``-V`` tree checked for Lua errors.
"""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cli_run import mproxy
from tunnel_capture import SERVER, Conversation, simple_tunnel, write_pcap
from wireshark import matrix

from mproxy_scapy.codec import pack

REPO = Path(__file__).resolve().parents[2]
DISSECTOR = REPO / "dissectors" / "mproxy.lua"
DATA = Path(__file__).resolve().parent / "data"
TUNNEL_PORT = SERVER[1]
TUN = {"family": "IPv4", "address": "192.0.2.10", "port": 5000, "service": "http", "serviceport": 80,
       "name": "a.example"}
BEFORE = pack(TUN, b"before")
AFTER = pack(TUN, b"after")
"""Good frames put around a hostile one: the first lets the Lua heuristic claim the stream, the last shows
that decoding went on."""


def header(text: str | bytes, *, version: int = 0xFE, hdrlen: int | None = None) -> bytes:
    """A frame header built by hand (the codec refuses to write broken ones): version, hdrlen, text."""
    raw = text.encode() if isinstance(text, str) else text
    return bytes([version, len(raw) if hdrlen is None else hdrlen]) + raw


def tunnel(path: Path, to_device: bytes, to_relay: bytes = b"", *, chunk: int = 1000) -> Path:
    """A raw-TCP tunnel (handshake, both streams cut every ``chunk`` bytes, FIN from both sides)."""
    return simple_tunnel(path, to_device, to_relay, chunk=chunk)


def ws_tunnel(path: Path, c2s: bytes, s2c: bytes, request_len: int, response_len: int, *,
              chunk: int = 1400) -> Path:
    """A WebSocket tunnel: the upgrade request, its response, then each side's frames, ``chunk`` bytes a segment."""
    conversation = Conversation()
    conversation.handshake()
    t = conversation.start + 0.01
    for direction, stream, start, end in ((0, c2s, 0, request_len), (1, s2c, 0, response_len),
                                          (0, c2s, request_len, len(c2s)), (1, s2c, response_len, len(s2c))):
        cuts = [start, end, *range(start + chunk, end, chunk)]
        conversation.packets += [p for p in conversation.segments(direction, stream, cuts, t)
                                 if start <= p.seq - conversation.isn[direction] - 1 < end]
        t += 0.1
    conversation.close((len(c2s), len(s2c)), t)
    return write_pcap(path, conversation)


PCAP_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")


def pcap_bytes(records: list[bytes], *, snaplen: int = 262144, linktype: int = 101,
               caplens: dict[int, int] | None = None) -> bytes:
    """A pcap file whose record ``i`` may claim ``caplens[i]`` bytes whatever it holds."""
    out = PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)
    for i, record in enumerate(records):
        caplen = (caplens or {}).get(i, len(record))
        out += RECORD_HEADER.pack(1700000000 + i, 0, caplen, max(caplen, len(record))) + record
    return out


def pcapng_block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def pcapng_bytes(packets: list[bytes], *, extra_blocks: dict[int, bytes] | None = None) -> bytes:
    """Section header, one raw-IP interface, an EPB per packet (``extra_blocks[i]`` before packet i)."""
    out = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += pcapng_block(1, struct.pack("<HHI", 101, 0, 262144))
    for i, packet in enumerate(packets):
        out += (extra_blocks or {}).get(i, b"")
        out += pcapng_block(6, struct.pack("<IIIII", 0, 0, i, len(packet), len(packet)) + packet)
    return out


def packets_of(pcap: Path) -> list[bytes]:
    """The packets of a pcap written by ``PcapWriter`` (little-endian, microseconds)."""
    data = pcap.read_bytes()
    out, pos = [], 24
    while pos < len(data):
        caplen = RECORD_HEADER.unpack_from(data, pos)[2]
        out.append(data[pos + 16 : pos + 16 + caplen])
        pos += 16 + caplen
    return out


# -- the Python decoder -------------------------------------------------------------------------------


@dataclass
class Dissected:
    returncode: int
    records: list[dict]
    stderr: str

    def frames(self) -> list[dict]:
        """The M-PROXY frames (not garbage, lost bytes or stage events)."""
        return [r for r in self.records if r["kind"] not in ("garbage", "gap", "stage")]

    def problems(self) -> list[tuple[str, str]]:
        """(kind, detail) of every problem, frames' and stages' (``tcp.gap``, ``carrier.bad_opcode``, ...)."""
        return [(p["kind"], p["detail"]) for r in self.records for p in r.get("problems") or []]

    def problem_kinds(self) -> list[str]:
        return [kind for kind, _ in self.problems()]


def dissect(path: Path, *args: str, timeout: float = 300) -> Dissected:
    """``mproxy dissect --json PATH ARGS``; never a traceback, whatever the exit status."""
    result = mproxy("dissect", "--json", str(path), *args, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return Dissected(result.returncode, [json.loads(line) for line in result.stdout.splitlines()], result.stderr)


def dissect_text(path: Path, *args: str) -> subprocess.CompletedProcess:
    result = mproxy("dissect", str(path), *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result


# -- the Lua dissector --------------------------------------------------------------------------------


@dataclass
class Tshark:
    returncode: int
    stdout: str
    stderr: str

    def lua_errors(self) -> list[str]:
        return [line for line in (self.stdout + "\n" + self.stderr).splitlines() if "Lua Error" in line
                or ("lua_script" in line.lower() and "error" in line.lower())]


@dataclass(frozen=True)
class Profile:
    """An empty tshark profile folder and the Wireshark version (matrix entry) it runs on."""

    path: Path
    version: matrix.Version


def tshark(pcap: Path, home: Profile, *args: str, timeout: float = 120) -> Tshark:
    """tshark with the generated dissector, an empty profile under ``home``, two passes; a hang fails the test."""
    result = matrix.run(home.version, ["-X", f"lua_script:{DISSECTOR}", "-r", str(pcap), "-2", *args], home.path,
                        timeout=timeout)
    return Tshark(result.returncode, result.stdout, result.stderr)


def lua_records(pcap: Path, home: Profile, *args: str) -> tuple[list[tuple[int, list[str], list[str]]], Tshark]:
    """Per packet with M-PROXY records: (frame number, the record kinds, the expert messages); no Lua error."""
    result = tshark(pcap, home, "-Y", "mproxy", "-T", "fields", "-E", "separator=/t", "-E", "aggregator=\x1f",
                    "-e", "frame.number", "-e", "mproxy.kind", "-e", "_ws.expert.message", *args)
    assert result.returncode == 0 and not result.lua_errors(), result.stderr
    rows = []
    for line in result.stdout.splitlines():
        number, kinds, experts = ([*line.split("\t"), "", ""])[:3]
        rows.append((int(number), [k for k in kinds.split("\x1f") if k], [e for e in experts.split("\x1f") if e]))
    return rows, result


def lua_experts(pcap: Path, home: Profile, *args: str) -> list[str]:
    """Every expert message tshark shows for M-PROXY packets (plus the TCP ones on them)."""
    rows, _ = lua_records(pcap, home, *args)
    return [expert for _, _, experts in rows for expert in experts]


def lua_kinds(pcap: Path, home: Profile, *args: str) -> list[str]:
    rows, _ = lua_records(pcap, home, *args)
    return [kind for _, kinds, _ in rows for kind in kinds]
