"""Captures with random byte errors (editcap -E, fixed rates and seeds): no Lua error, no hang.

tshark checksums nothing by default, so damaged bytes reach the dissector as
they are: in headers, lengths, JSON bodies and WebSocket framing. Each capture
runs once on each Wireshark version of the matrix, the three mutations dealt
out over the versions (capture i, version v: mutation (i + v) mod 3): every
version sees every capture and every mutation on some capture, at a third of
the runs of all pairs (tests/hardening/test_lua_fuzz.py adds more seeds).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from wireshark import matrix
from wireshark.conftest import WSS_KEYS, capture_files, keylog_for
from wireshark.matrix import Version
from wireshark.tshark_records import run_tshark

pytestmark = [pytest.mark.tshark, pytest.mark.slow]

MUTATIONS = ((0.001, 11), (0.01, 23), (0.05, 37))
"""(byte error probability, seed): recorded here so a failure can be replayed with the same file."""

TIMEOUT = 240


DECRYPTION_SECRETS_BLOCK = 0x0000000A


def without_secrets(pcapng: Path, folder: Path) -> Path:
    """The same pcapng without its decryption secrets block, which editcap 4.0 cannot write back.

    (The tests pass the key log to tshark instead.) Little-endian pcapng, as ours are.
    """
    data = pcapng.read_bytes()
    out, offset = bytearray(), 0
    while offset + 8 <= len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        if block_type != DECRYPTION_SECRETS_BLOCK:
            out += data[offset : offset + length]
        offset += length
    path = folder / pcapng.name
    path.write_bytes(out)
    return path


def mutated(pcap: Path, rate: float, seed: int, folder: Path) -> Path:
    if pcap.suffix == ".pcapng":
        pcap = without_secrets(pcap, folder)
    out = folder / f"{pcap.stem}-E{rate}-s{seed}.pcap"
    subprocess.run(["editcap", "-F", "pcap", "-E", str(rate), "--seed", str(seed), str(pcap), str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


def _dealt() -> list:
    out = []
    for index, pcap in enumerate(capture_files()):
        for place, version in enumerate(matrix.MATRIX):
            rate, seed = MUTATIONS[(index + place) % len(MUTATIONS)]
            out.append(pytest.param(pcap, rate, seed, version, id=f"{version.id}-{pcap.name}-E{rate}-seed{seed}"))
    return out


@pytest.mark.parametrize(("pcap", "rate", "seed", "wireshark"), _dealt(), indirect=["wireshark"])
def test_mutated_capture_decodes_without_lua_errors(pcap: Path, rate: float, seed: int, tmp_path: Path,
                                                   tshark_home: Path, wireshark: Version) -> None:
    damaged = mutated(pcap, rate, seed, tmp_path)
    for passes in ([], ["-2", "-R", "frame"]):
        result = run_tshark(["-r", str(damaged), "-o", f"tls.keylog_file:{keylog_for(pcap) or WSS_KEYS}", *passes,
                             "-V"], tshark_home, wireshark, timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert "Lua Error" not in result.stdout
        assert "Lua" not in result.stderr
        if rate <= 0.001:
            assert "M-PROXY tunnel protocol" in result.stdout
