"""wss-tls12.pcapng: a relay capped at TLS 1.2; tshark decrypts it with the key log and shows the decoder's records."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from wireshark.conftest import CAPTURES
from wireshark.decoders import differences, in_packet_order, lua_records, python_records
from wireshark.matrix import Version

CAPTURE = CAPTURES / "wss-tls12.pcapng"
KEYS = CAPTURES / "wss-tls12.keys"


def without_embedded_secrets(directory: Path) -> Path:
    """The capture as plain pcap (tcpdump drops the pcapng's secrets block), so only ``-o`` can decrypt it.

    editcap 4.0 refuses to rewrite a pcapng that holds a decryption secrets block.
    """
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is needed to strip the embedded TLS secrets (apt-get install tcpdump)")
    out = directory / "wss-tls12.pcap"
    subprocess.run(["tcpdump", "-r", str(CAPTURE), "-w", str(out)], capture_output=True, check=True, timeout=60)
    return out


@pytest.mark.tshark
def test_tshark_with_the_key_log_shows_the_records_mproxy_dissect_decrypts(tmp_path: Path, tshark_home: Path,
                                                                          wireshark: Version) -> None:
    manifest = json.loads((CAPTURES / "manifest.json").read_text())["wss-tls12.pcapng"]
    python = in_packet_order(python_records(CAPTURE, KEYS))
    assert len(python) == manifest["frames"] == 47
    plain = without_embedded_secrets(tmp_path)
    lua, result = lua_records(plain, tshark_home, wireshark, KEYS)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert differences(lua, python) == []
    unkeyed, result = lua_records(plain, tshark_home, wireshark)
    assert result.returncode == 0 and unkeyed == []  # it was the key log that opened it
