"""The heuristics claim M-PROXY only: ordinary HTTP, TLS, SSH and WebSocket traffic on loopback stays theirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from wireshark.matrix import Version
from wireshark.recording import free_port, http_exchange, record, ssh_exchange, tls_exchange
from wireshark.tshark_records import run_tshark

pytestmark = [pytest.mark.tshark, pytest.mark.live]


def _record(tmp_path: Path, name: str, traffic: Callable[[int], None]) -> Path:
    port = free_port()
    return record(tmp_path / f"{name}.pcap", port, lambda: traffic(port))


def _assert_not_claimed(pcap: Path, home: Path, version: Version) -> str:
    result = run_tshark(["-r", str(pcap), "-V"], home, version)
    assert result.returncode == 0 and result.stderr == ""
    assert "Lua Error" not in result.stdout
    assert "M-PROXY" not in result.stdout
    packets = run_tshark(["-r", str(pcap), "-Y", "tcp.len > 0"], home, version).stdout.splitlines()
    assert len(packets) >= 2, "the recording holds no payload"
    return result.stdout


def test_http_is_not_claimed(tmp_path: Path, tshark_home: Path, wireshark: Version) -> None:
    _assert_not_claimed(_record(tmp_path, "http", http_exchange), tshark_home, wireshark)


def test_tls_is_not_claimed(tmp_path: Path, tshark_home: Path, wireshark: Version) -> None:
    pcap = _record(tmp_path, "tls", lambda port: tls_exchange(port, tmp_path))
    out = _assert_not_claimed(pcap, tshark_home, wireshark)
    assert "Handshake Protocol: Client Hello" in out


def test_ssh_is_not_claimed(tmp_path: Path, tshark_home: Path, wireshark: Version) -> None:
    _assert_not_claimed(_record(tmp_path, "ssh", ssh_exchange), tshark_home, wireshark)


def test_the_raw_heuristic_needs_a_header_that_parses(tmp_path: Path, tshark_home: Path, wireshark: Version) -> None:
    """0xFE followed by a sane length is not enough: the header text must have the shape packers write."""

    def fake(port: int) -> None:
        from wireshark.recording import raw_tunnel

        raw_tunnel(port, [b"\xfe\x10" + b"\x00\x01binary junk\xff\xfe" + bytes(200)], [b"\xfe\x05hello" * 10])

    _assert_not_claimed(_record(tmp_path, "fe", fake), tshark_home, wireshark)


def test_an_ordinary_websocket_goes_to_wiresharks_websocket_dissector(tmp_path: Path, tshark_home: Path,
                                                                       wireshark: Version) -> None:
    from wireshark.recording import websocket_exchange

    out = _assert_not_claimed(_record(tmp_path, "ws", websocket_exchange), tshark_home, wireshark)
    assert "WebSocket" in out
    assert "Text [FIN]" in out or "Opcode: Text" in out
