"""The two decoders are one product: on every capture, tshark with the plugin shows what `mproxy dissect` finds.

Same count, same order (packet order: see ``in_packet_order``), every field equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark.conftest import WSS_KEYS, capture_files
from wireshark.decoders import differences, in_packet_order, lua_records, python_records
from wireshark.matrix import Version


def _params() -> list:
    out = []
    for path in capture_files():
        out.append(pytest.param(path, id=path.name, marks=[pytest.mark.tshark, pytest.mark.slow]))
    return out


def test_there_are_captures_to_compare() -> None:
    assert len(capture_files()) >= 5


@pytest.mark.parametrize("pcap", _params())
def test_tshark_shows_the_frames_mproxy_dissect_finds(pcap: Path, tshark_home: Path, wireshark: Version) -> None:
    keylog = WSS_KEYS if pcap.suffix == ".pcapng" or pcap.stem.startswith("wss") else None
    python = in_packet_order(python_records(pcap, keylog))
    lua, result = lua_records(pcap, tshark_home, wireshark, keylog)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert python, "the decoder found no frames"
    assert differences(lua, python) == []
