"""Wireshark's M-PROXY statistics (``tshark -z mproxy,clients|tunnels|control``) show what ``mproxy stats`` shows.

On every bundled capture and every Wireshark version of the matrix, the three
tables tshark prints are parsed and compared row for row with
``mproxy stats --json``: every count and text equal, times (seconds since the
capture's first packet, printed to the microsecond) within a microsecond, since
the two round differently computed floats.

The GUI's Statistics > M-PROXY menu runs the same tables through a TextWindow
after a retap. tshark has no GUI, so ``GUI_STANDIN`` plays its part around the
dissector (gui_enabled, register_menu, TextWindow, retap_packets), opens each
menu entry as a user would, and prints what the window is given; in two passes,
as the GUI dissects a capture again for a retap, it must be the text ``-z``
prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wireshark.conftest import capture_files, keylog_for
from wireshark.matrix import Version
from wireshark.tshark_records import DISSECTOR, run_tshark

pytestmark = [pytest.mark.tshark]

RULE = "=" * 80
TABLES = {"clients": "M-PROXY tunneled connections", "tunnels": "M-PROXY tunnels",
          "control": "M-PROXY control round-trips"}
TIME_COLUMNS = ("start", "duration", "latency")
COLUMN = re.compile(rb"\S+(?: \S+)*")
"""A column title: words one space apart (columns are two or more spaces apart; widths count bytes)."""


def parse_tables(stdout: str) -> dict[str, list[dict[str, str]]]:
    """Each table tshark printed, by title: rows as {column: cell}, cut at the header's column starts."""
    tables: dict[str, list[dict[str, str]]] = {}
    blocks = stdout.split(RULE)
    for block in blocks:
        lines = [line for line in block.split("\n") if line]
        if not lines or not lines[0].startswith("M-PROXY "):
            continue
        columns = list(COLUMN.finditer(lines[1].encode()))
        names = [m.group().decode() for m in columns]
        starts = [m.start() for m in columns]
        rows = []
        for line in lines[2:]:
            raw = line.encode()
            cells = [raw[a:b].decode().rstrip() for a, b in zip(starts, [*starts[1:], len(raw)], strict=True)]
            rows.append(dict(zip(names, cells, strict=True)))
        tables[lines[0]] = rows
    return tables


def python_stats(pcap: Path, keylog: Path | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "mproxy_scapy.cli", "stats", str(pcap), "--json"]
    if keylog is not None:
        command += ["--tls-keylog", str(keylog)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout)


def python_tables(summary: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """`mproxy stats --json` as the cells Wireshark's tables show (the decoder's own table texts)."""
    clients = [{
        "tunnel": str(s["tunnel"]), "client": s["client"], "service": s["service"], "name": s["name"],
        "port": "" if s["serviceport"] is None else str(s["serviceport"]),
        "frames in/out": f"{s['frames_in']}/{s['frames_out']}", "bytes in/out": f"{s['bytes_in']}/{s['bytes_out']}",
        "start": f"{s['start']:.6f}", "duration": f"{s['duration']:.6f}",
        "pause/resume": f"{s['pauses']}/{s['resumes']}",
        "ended by": s["ended_by"] + (f" ({s['error']})" if s["error"] else ""),
    } for s in summary["sessions"]]
    tunnels = [{
        "tunnel": str(t["tunnel"]), "endpoints": f"{t['client']} <-> {t['server']}",
        "carrier": t["carrier"] + "".join(f" {k}={v}" for k, v in t["carrier_info"].items() if k in ("path", "url")),
        "sessions": str(t["sessions"]), "frames c->s/s->c": f"{t['frames'][0]}/{t['frames'][1]}",
        "bytes c->s/s->c": f"{t['stream_bytes'][0]}/{t['stream_bytes'][1]}",
        "start": "" if t["start"] is None else f"{t['start']:.6f}", "duration": f"{t['duration']:.6f}",
        "closed": t["closed"],
    } for t in summary["tunnels"]]
    control = [{
        "tunnel": str(c["tunnel"]), "id": str(c["id"]), "command": c["command"], "request": f"#{c['request_frame']}",
        "reply": f"#{c['reply_frame']}" if c["reply_frame"] else "",
        "latency": "" if c["latency"] is None else f"{c['latency']:.6f}", "outcome": c["outcome"],
    } for c in summary["control"]]
    return {TABLES["clients"]: clients, TABLES["tunnels"]: tunnels, TABLES["control"]: control}


def _order(row: dict[str, str]) -> tuple:
    return (int(row["tunnel"]), row.get("start", ""), row.get("request", ""), row.get("id", ""), row.get("client", ""))


def differences(ours: list[dict[str, str]], python: list[dict[str, str]]) -> list[str]:
    out = []
    if len(ours) != len(python):
        out.append(f"{len(ours)} rows from tshark, {len(python)} from mproxy stats")
    for a, b in zip(sorted(ours, key=_order), sorted(python, key=_order), strict=False):
        for column, want in b.items():
            got = a.get(column)
            if column in TIME_COLUMNS and got and want:
                if abs(float(got) - float(want)) > 1.5e-6:
                    out.append(f"{column}: tshark {got}, python {want} (row {b})")
            elif got != want:
                out.append(f"{column}: tshark {got!r}, python {want!r} (row {b})")
    return out


def tshark_tables(pcap: Path, home: Path, version: Version, keylog: Path | None) -> dict[str, list[dict[str, str]]]:
    extra = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    result = run_tshark(["-r", str(pcap), *extra, "-q", *[a for name in TABLES for a in ("-z", f"mproxy,{name}")]],
                        home, version)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return parse_tables(result.stdout)


@pytest.mark.parametrize("pcap", capture_files(), ids=lambda p: p.name)
def test_tshark_statistics_match_mproxy_stats(pcap: Path, tshark_home: Path, wireshark: Version) -> None:
    keylog = keylog_for(pcap)
    python = python_tables(python_stats(pcap, keylog))
    ours = tshark_tables(pcap, tshark_home, wireshark, keylog)
    assert set(ours) == set(TABLES.values())
    assert python[TABLES["clients"]], "mproxy stats found no tunneled connection"
    for title in TABLES.values():
        assert differences(ours[title], python[title]) == [], title


def test_the_table_parser_cuts_at_the_header_columns() -> None:
    text = "\n".join([RULE, "M-PROXY control round-trips", "tunnel  id  command  frames in/out  outcome",
                      "1       12  hello    3/2            E_CODE (with spaces)",
                      "10      1   é" + " " * 5 + "  0/0            ok", RULE])
    assert parse_tables(text) == {"M-PROXY control round-trips": [
        {"tunnel": "1", "id": "12", "command": "hello", "frames in/out": "3/2", "outcome": "E_CODE (with spaces)"},
        {"tunnel": "10", "id": "1", "command": "é", "frames in/out": "0/0", "outcome": "ok"}]}


GUI_STANDIN = """
do
    local opened = {}
    _G.mproxy_gui_menus = opened
    gui_enabled = function() return true end
    register_menu = function(name, action) opened[#opened + 1] = { name = name, action = action } end
    retap_packets = function() end
    TextWindow = { new = function(title)
        local window = {}
        function window:set(text) print("GUI window " .. title .. "\\n" .. text .. "\\nGUI window end") end
        function window:set_atclose(action) assert(type(action) == "function") end
        return window
    end }
end
"""
"""Stands in for the GUI before the dissector loads (the dissector registers its menus when it loads)."""

GUI_OPEN = """
for _, menu in ipairs(_G.mproxy_gui_menus) do
    print("GUI menu " .. menu.name)
    menu.action()
end
"""
"""After it: every M-PROXY menu entry is opened, as a click would."""

GUI_WINDOW = re.compile(r"GUI window M-PROXY: (.*?)\n(.*?)\nGUI window end\n", re.S)


def gui_run(pcap: Path, home: Path, version: Version, keylog: Path | None, script: Path) -> str:
    script.write_text(GUI_STANDIN + DISSECTOR.read_text() + GUI_OPEN)
    extra = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    result = run_tshark(["-r", str(pcap), *extra, "-2", "-q"], home, version, lua=script)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


@pytest.mark.parametrize("pcap", capture_files(), ids=lambda p: p.name)
def test_the_statistics_menu_shows_what_tshark_prints(pcap: Path, tshark_home: Path, wireshark: Version,
                                                      tmp_path: Path) -> None:
    keylog = keylog_for(pcap)
    extra = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    printed = run_tshark(["-r", str(pcap), *extra, "-2", "-q",
                          *[a for name in TABLES for a in ("-z", f"mproxy,{name}")]], tshark_home, wireshark)
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr
    gui = gui_run(pcap, tshark_home, wireshark, keylog, tmp_path / "gui.lua")
    menus = [line.split(" ", 2)[2] for line in gui.splitlines() if line.startswith("GUI menu ")]
    assert menus == ["M-PROXY/Tunneled connections", "M-PROXY/Tunnels", "M-PROXY/Control round-trips"]
    windows = dict(GUI_WINDOW.findall(gui))
    assert sorted(windows) == sorted(name.split("/", 1)[1] for name in menus)
    assert sorted(windows.values()) == sorted(block.strip("\n") for block in printed.stdout.split(RULE)
                                              if block.strip("\n"))
    python = python_tables(python_stats(pcap, keylog))
    tables = parse_tables(RULE + RULE.join(windows.values()) + RULE)
    for title in TABLES.values():
        assert differences(tables[title], python[title]) == [], title
