"""``probe.why_not``: each reason the dissector does not load, and the one thing to do about it.

The real tshark cases (a folder tshark does not read, a broken plugin, root with the system's
Wireshark) run in tests/commands/test_wireshark.py; here the reasons that need another
Wireshark build than the machine's (no Lua, 4.2+ as root) are checked on what such a tshark reports.
"""

from __future__ import annotations

from pathlib import Path

from mproxy_scapy.wireshark.probe import LoadCheck, Tshark, listed_protocol, why_not

PERSONAL = Path("/home/u/.local/lib/wireshark/plugins")
GLOBAL = Path("/usr/lib/x86_64-linux-gnu/wireshark/plugins")
NOT_LOADED = LoadCheck(False, "", [])


def tshark(version: tuple[int, int, int], lua: str | None = "5.4.6") -> Tshark:
    return Tshark("/usr/bin/tshark", f"TShark (Wireshark) {'.'.join(map(str, version))}.", version, lua,
                  {"Personal Lua Plugins": PERSONAL, "Global Lua Plugins": GLOBAL})


def test_root_with_wireshark_4_2_or_later_and_the_personal_folder():
    reason = why_not(tshark((4, 2, 0)), PERSONAL, NOT_LOADED, as_root=True)
    assert "Wireshark 4.2 and later ignore Lua plugins in the personal folder" in reason
    assert "Run Wireshark as a normal user" in reason and "mproxy wireshark install --global" in reason


def test_root_with_an_older_wireshark_is_not_blamed_on_root():
    reason = why_not(tshark((4, 0, 17)), PERSONAL, NOT_LOADED, as_root=True)
    assert "root" not in reason and "tshark -G plugins" in reason


def test_the_global_folder_as_root_is_not_blamed_on_root():
    assert "root" not in why_not(tshark((4, 4, 7)), GLOBAL, NOT_LOADED, as_root=True)


def test_a_normal_user_is_not_blamed_on_root():
    assert "root" not in why_not(tshark((4, 4, 7)), PERSONAL, NOT_LOADED, as_root=False)


def test_built_without_lua():
    reason = why_not(tshark((4, 4, 7), lua=None), PERSONAL, NOT_LOADED, as_root=False)
    assert "built without Lua" in reason and "install a Wireshark with Lua" in reason


def test_tshark_s_load_error_is_quoted():
    check = LoadCheck(False, "", ['Lua: Error during loading: [string "/x/mproxy.lua"]:1: syntax error'])
    reason = why_not(tshark((4, 0, 17)), PERSONAL, check, as_root=False)
    assert reason.endswith('could not load it: Lua: Error during loading: [string "/x/mproxy.lua"]:1: syntax error')


def test_protocol_lines_of_wireshark_4_0_and_of_4_2_and_later():
    """4.0 lists name, short name, filter; 4.2+ adds three enabled flags (seen on Debian 13's 4.4.19)."""
    assert listed_protocol("M-PROXY tunnel protocol\tMPROXY\tmproxy\n") == "M-PROXY tunnel protocol (mproxy)"
    newer = ("M-PROXY stream end\tMPROXY_END\tmproxy_end\tT\tT\tT\n"
             "M-PROXY tunnel protocol\tMPROXY\tmproxy\tT\tT\tT\n")
    assert listed_protocol(newer) == "M-PROXY tunnel protocol (mproxy)"
    assert listed_protocol("Bluetooth Mesh Proxy\tBT Mesh proxy\tbtmproxy\n") is None
