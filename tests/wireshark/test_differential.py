"""The two decoders are one product: on every capture, tshark with the plugin shows what `mproxy dissect` finds.

Same count, every record in the same packet and at the same place within it
(``placement``), every field equal; in one pass (plain tshark, as most
people run it) and in two (``-2``, as the GUI shows a capture).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark.conftest import capture_files, keylog_for
from wireshark.decoders import differences, in_packet_order, lua_records, python_records
from wireshark.matrix import Version


def _params() -> list:
    out = []
    for path in capture_files():
        out.append(pytest.param(path, id=path.name, marks=[pytest.mark.tshark, pytest.mark.slow]))
    return out


def test_there_are_captures_to_compare() -> None:
    assert len(capture_files()) >= 5


@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
@pytest.mark.parametrize("pcap", _params())
def test_tshark_shows_the_frames_mproxy_dissect_finds(pcap: Path, two_pass: bool, tshark_home: Path,
                                                      wireshark: Version) -> None:
    keylog = keylog_for(pcap)
    python = in_packet_order(python_records(pcap, keylog))
    lua, result = lua_records(pcap, tshark_home, wireshark, keylog, two_pass=two_pass)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert python, "the decoder found no frames"
    assert differences(lua, python) == []
