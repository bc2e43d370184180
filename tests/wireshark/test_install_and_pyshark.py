"""`mproxy wireshark install` puts the dissector where tshark loads it; the pyshark API reads captures with it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from wireshark import matrix
from wireshark.conftest import CAPTURES
from wireshark.matrix import Version

from mproxy_scapy import spec
from mproxy_scapy.cli import main
from mproxy_scapy.wireshark import file_capture, generate_lua, personal_plugin_dir

pytestmark = pytest.mark.tshark


def test_install_uses_the_folder_tshark_reports_and_tshark_then_loads_it(
        tshark_home: Path, wireshark: Version, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Installed as a personal plugin (no -X lua_script:), every version of the matrix loads it."""
    monkeypatch.setenv("HOME", str(tshark_home))
    monkeypatch.setenv("WIRESHARK_CONFIG_DIR", str(tshark_home / "config"))
    folder = personal_plugin_dir()
    assert folder.is_relative_to(tshark_home)
    assert main(["wireshark", "install"]) == 0
    out = capsys.readouterr().out
    assert f"installed {folder / 'mproxy.lua'}" in out
    assert "Reload Lua Plugins" in out
    assert (folder / "mproxy.lua").read_text(encoding="utf-8") == generate_lua()
    fields = matrix.run(wireshark, ["-G", "fields"], tshark_home, check_registered=None)
    assert fields.returncode == 0, fields.stderr
    for field in spec.ALL_FIELDS:
        assert f"\t{field.filter}\t" in fields.stdout
    protocols = matrix.run(wireshark, ["-G", "protocols"], tshark_home, check_registered=None)
    assert re.search(r"^M-PROXY tunnel protocol\tMPROXY\tmproxy(\t|$)", protocols.stdout, re.M)
    assert main(["wireshark", "install", "--uninstall"]) == 0
    assert not (folder / "mproxy.lua").exists()
    assert "removed" in capsys.readouterr().out
    gone = matrix.run(wireshark, ["-G", "protocols"], tshark_home, check_registered=None)
    assert gone.returncode == 0 and "\tMPROXY\t" not in gone.stdout


def test_uninstall_when_nothing_is_installed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wireshark", "install", "--uninstall", "--folder", str(tmp_path)]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_file_capture_yields_packets_with_the_mproxy_layer(wireshark: Version, tmp_path: Path) -> None:
    """pyshark drives tshark of each version of the matrix (unprivileged, through the matrix's wrapper)."""
    before = dict(os.environ)
    capture = file_capture(CAPTURES / "raw-tcp.pcap", display_filter="mproxy.kind == \"connection\"",
                           tshark_path=str(matrix.wrapper(wireshark, tmp_path)))
    try:
        packets = list(capture)
    finally:
        capture.close()
    assert packets
    layer = packets[0].mproxy
    assert layer.kind == "connection"
    assert layer.family in ("IPv4", "IPv6")
    assert int(layer.port) > 0
    assert layer.client_id.startswith(layer.family + ",")
    assert dict(os.environ) == before


def test_file_capture_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_capture(tmp_path / "nope.pcap")
