"""The two decoders are one product: on every capture, tshark with the plugin shows what `mproxy dissect` finds.

Same count, every record in the same packet and at the same place within it
(``placement``), every field equal; in one pass (plain tshark, as most
people run it) and in two (``-2``, as the GUI shows a capture), with and
without a protocol tree in the first pass (``decoders.PASSES``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark.conftest import capture_files, keylog_for
from wireshark.decoders import PASSES, differences, in_packet_order, lua_records, python_records
from wireshark.matrix import Version
from wireshark.tshark_records import run_tshark


def _params() -> list:
    out = []
    for path in capture_files():
        out.append(pytest.param(path, id=path.name, marks=[pytest.mark.tshark, pytest.mark.slow]))
    return out


def test_there_are_captures_to_compare() -> None:
    assert len(capture_files()) >= 5


@pytest.mark.parametrize("passes", list(PASSES))
@pytest.mark.parametrize("pcap", _params())
def test_tshark_shows_the_frames_mproxy_dissect_finds(pcap: Path, passes: str, tshark_home: Path,
                                                      wireshark: Version) -> None:
    keylog = keylog_for(pcap)
    python = in_packet_order(python_records(pcap, keylog))
    lua, result = lua_records(pcap, tshark_home, wireshark, keylog, passes=passes)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert python, "the decoder found no frames"
    assert differences(lua, python) == []


def _fields(pcap: Path, home: Path, version: Version, *args: str) -> list[str]:
    result = run_tshark(["-r", str(pcap), *args, "-T", "fields", "-e", "frame.number", "-e", "mproxy.kind", "-e",
                         "mproxy.offset", "-e", "mproxy.length"], home, version)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.splitlines() if line.split("\t")[1:2] != [""]]


@pytest.mark.tshark
@pytest.mark.parametrize("pcap", _params())
def test_a_display_filter_does_not_change_the_records(pcap: Path, tshark_home: Path, wireshark: Version) -> None:
    """``-Y mproxy`` keeps exactly the packets with records, and the same records in them, in one pass and in two.

    Found by the statistics: ``tshark -2`` with no filter builds no tree in its first pass (as ``-z mproxy,...``
    runs do), and garbage records filled packets a filtered run did not show.
    """
    keylog = keylog_for(pcap)
    extra = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    for passes in (["-2"], []):
        assert _fields(pcap, tshark_home, wireshark, *passes, *extra) == _fields(
            pcap, tshark_home, wireshark, *passes, "-Y", "mproxy", *extra)
