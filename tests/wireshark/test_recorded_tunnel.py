"""A tunnel we record ourselves (real sockets on 127.0.0.1, tcpdump): cut where we choose, with bad bytes.

Several frames in one segment, frames across segments, a frame held back by
the parser's look-ahead, garbage between frames and a damaged frame: tshark
with the plugin and ``mproxy dissect`` must still agree record for record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark.decoders import differences, in_packet_order, lua_records, python_records
from wireshark.matrix import Version
from wireshark.recording import free_port, raw_tunnel, record, tunnel_chunks

pytestmark = [pytest.mark.tshark, pytest.mark.live]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    port = free_port()
    relay, device = tunnel_chunks()
    path = tmp_path_factory.mktemp("recorded") / "tunnel.pcap"
    return record(path, port, lambda: raw_tunnel(port, relay, device))


def test_both_decoders_agree_on_a_recorded_tunnel(recorded: Path, tshark_home: Path, wireshark: Version) -> None:
    python = in_packet_order(python_records(recorded))
    lua, result = lua_records(recorded, tshark_home, wireshark)
    assert result.returncode == 0 and result.stderr == ""
    assert differences(lua, python) == []
    kinds = [r["kind"] for r in lua]
    assert kinds.count("garbage") == 1
    assert {"control", "connection", "data", "pause", "resume", "end", "error"} <= set(kinds)
    assert [p["kind"] for r in lua for p in r["problems"]] == ["garbage_skipped"]


def test_single_pass_shows_the_same_frames(recorded: Path, tshark_home: Path, wireshark: Version) -> None:
    """One pass (plain tshark, pyshark) shows every record too, in the packet that completed it."""
    python = in_packet_order(python_records(recorded))
    lua, result = lua_records(recorded, tshark_home, wireshark, passes="one-pass")
    assert result.returncode == 0 and result.stderr == ""
    assert differences(lua, python) == []
