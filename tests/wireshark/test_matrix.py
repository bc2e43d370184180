"""The Wireshark matrix's runner (matrix.py): unprivileged, plugin checked, inputs staged, nothing left mounted."""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark import matrix
from wireshark.matrix import Version

WRAPPED_40 = """TShark (Wireshark) 4.0.17 (Git v4.0.17 packaged as 4.0.17-0+deb12u3).

Compiled (64-bit) using GCC 12.2.0, with GLib 2.74.6, with PCRE2, with zlib
1.2.13, with libpcap, with POSIX capabilities (Linux), with libnl 3, with Lua
5.2.4, with GnuTLS 3.7.9 and PKCS #11 support, with Gcrypt 1.10.1, with Kerberos
"""
LISTED_46 = """TShark (Wireshark) 4.6.9.

  +libxml2 2.15.4              +zlib 1.3.2
  +Lua 5.4.9                   +Zstandard 1.5.7
"""


def test_versions_are_read_from_both_version_texts() -> None:
    assert matrix.version_text(WRAPPED_40) == ("4.0.17", "5.2.4")
    assert matrix.version_text(LISTED_46) == ("4.6.9", "5.4.9")


def test_inputs_are_staged_and_outputs_copied_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "a.pcap").write_bytes(b"pcap")
    (private / "keys").write_text("keys")
    (private / "x.lua").write_text("-- lua")
    (private / "x.lua").chmod(0o600)
    monkeypatch.chdir(private)
    with matrix.stage() as staged:
        args = staged.args(["-r", "a.pcap", "-X", f"lua_script:{private / 'x.lua'}", "-o", "tls.keylog_file:keys",
                            "-o", "mproxy.tcp_ports:9999", "-Y", "mproxy", "-w", str(private / "out.pcap")])
        for arg in (args[1], args[3].split(":", 1)[1], args[5].split(":", 1)[1]):
            path = Path(arg)
            assert path.parent == staged.dir and path.stat().st_mode & 0o044 == 0o044
        assert Path(args[3].split(":", 1)[1]).read_text() == "-- lua"
        assert args[6:10] == ["-o", "mproxy.tcp_ports:9999", "-Y", "mproxy"]
        Path(args[11]).write_bytes(b"written")
        assert Path(args[11]).parent == staged.dir
    assert (private / "out.pcap").read_bytes() == b"written"
    assert not staged.dir.exists()


def test_a_root_that_is_not_built_fails_with_the_command_that_builds_it(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matrix, "ROOTS", tmp_path)
    with pytest.raises(matrix.MatrixError, match="make wireshark-matrix"):
        matrix.installed(Version("ws9.9", "9.9", "5.4", "nowhere", "Debian nowhere"))


@pytest.mark.tshark
def test_every_version_runs_as_nobody_and_leaves_nothing_mounted(wireshark: Version) -> None:
    who = matrix.tool(wireshark, "id", ["-u"])
    assert who.returncode == 0, who.stderr
    assert int(who.stdout) == matrix.NOBODY if matrix.is_root() else int(who.stdout) != 0
    mounts = Path("/proc/self/mounts").read_text()
    assert str(matrix.ROOTS) not in mounts


@pytest.mark.tshark
def test_a_lua_file_that_registers_no_mproxy_protocol_fails_the_check(wireshark: Version, tmp_path: Path) -> None:
    """The check every dissector run starts with can fail: "no Lua error" alone would pass here."""
    empty = tmp_path / "nothing.lua"
    empty.write_text("-- registers nothing\n")
    with pytest.raises(matrix.MatrixError, match="did not register the 'mproxy' protocol"):
        matrix.assert_registered(wireshark, empty)
