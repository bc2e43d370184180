"""The two decoders are one product: on every capture, tshark with the plugin shows what `mproxy dissect` finds.

Same count, every record in the same packet and at the same place within it
(``placement``), every field equal; in one pass (plain tshark, as most
people run it) and in two (``-2``, as the GUI shows a capture).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark import matrix
from wireshark.conftest import capture_files, keylog_for
from wireshark.decoders import differences, in_packet_order, lua_records, python_records
from wireshark.matrix import Version
from wireshark.tshark_records import run_tshark


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


def _fields(pcap: Path, home: Path, version: Version, *args: str) -> list[str]:
    result = run_tshark(["-r", str(pcap), *args, "-T", "fields", "-e", "frame.number", "-e", "mproxy.kind", "-e",
                         "mproxy.length"], home, version)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.splitlines() if line.split("\t")[1:2] != [""]]


TWO_PASS_UNFILTERED_BUG = {"false-sync.pcap", "impaired-ws.pcap", "impaired.pcap"}
"""Known bug, found by the statistics (tshark -2 -z mproxy,tunnels counted 40 records where there are 29): after a
capture gap or a false sync, an unfiltered second pass shows garbage records in packets the filtered run does not
(impaired.pcap: packets 120-129 hold 13634-byte garbage records instead of one data record in 125). Strict: the
test fails once it is fixed, so the mark goes with the fix."""


def _unfiltered_params() -> list:
    return [pytest.param(p, id=p.name, marks=[pytest.mark.xfail(strict=True, reason="two-pass unfiltered bug")]
                         if p.name in TWO_PASS_UNFILTERED_BUG else []) for p in capture_files()]


@pytest.mark.tshark
@pytest.mark.parametrize("pcap", _unfiltered_params())
def test_two_passes_without_a_display_filter_show_the_same_records(pcap: Path, tshark_home: Path) -> None:
    """``tshark -2`` with no display filter builds no tree in the first pass (as ``-z mproxy,...`` runs do):
    the records must still be the ones a filtered run shows."""
    keylog = keylog_for(pcap)
    extra = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    version = matrix.HOST
    assert _fields(pcap, tshark_home, version, "-2", *extra) == _fields(pcap, tshark_home, version, "-2", "-Y",
                                                                         "mproxy", *extra)
