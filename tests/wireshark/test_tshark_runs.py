"""tshark runs the generated dissector on real captures: exit code, stdout and stderr checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from wireshark.conftest import CAPTURES, WSS_KEYS, capture_files
from wireshark.matrix import Version
from wireshark.tshark_records import run_tshark

from mproxy_scapy import spec

pytestmark = pytest.mark.tshark


@pytest.mark.parametrize("pcap", capture_files(), ids=lambda p: p.name)
def test_verbose_dissection_is_clean(pcap: Path, tshark_home: Path, wireshark: Version) -> None:
    result = run_tshark(["-r", str(pcap), "-o", f"tls.keylog_file:{WSS_KEYS}", "-V"], tshark_home, wireshark)
    assert result.returncode == 0
    assert result.stderr == ""
    assert "Lua Error" not in result.stdout
    assert "M-PROXY tunnel protocol, " in result.stdout
    assert "[Malformed Packet" not in result.stdout


def test_summary_lines_name_the_frames(tshark_home: Path, wireshark: Version) -> None:
    """Info column texts as users see them: control #1 hello, connection <client> <service> <name>, data N bytes."""
    result = run_tshark(["-r", str(CAPTURES / "raw-tcp.pcap"), "-Y", "mproxy"], tshark_home, wireshark)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout
    assert re.search(r"M-PROXY \d+ control #1 hello$", lines, re.M)
    assert re.search(r"control reply #-1$", lines, re.M)
    assert re.search(r"connection IPv[46],[0-9a-f.:]+,\d+ https? \S+", lines)
    assert re.search(r"data \d+ bytes IPv[46],", lines)


def test_tokens_are_redacted_unless_asked(tshark_home: Path, wireshark: Version) -> None:
    pcap = str(CAPTURES / "raw-tcp.pcap")
    hidden = run_tshark(["-r", pcap, "-Y", "mproxy.control.command == \"add_token\"", "-T", "fields",
                         "-e", "mproxy.control.args"], tshark_home, wireshark)
    shown = run_tshark(["-r", pcap, "-o", "mproxy.show_tokens:TRUE", "-Y", "mproxy.control.command == \"add_token\"",
                        "-T", "fields", "-e", "mproxy.control.args"], tshark_home, wireshark)
    assert hidden.stdout.split(",")[0] == spec.REDACTED
    assert shown.stdout.startswith('["eyJ')
    assert "eyJ" not in hidden.stdout


def test_control_replies_link_to_their_requests(tshark_home: Path, wireshark: Version) -> None:
    pcap = str(CAPTURES / "raw-tcp.pcap")
    result = run_tshark(["-2", "-R", "frame", "-r", pcap, "-Y", "mproxy.control.id", "-T", "fields", "-e",
                         "frame.number", "-e", "mproxy.control.id", "-e", "mproxy.control.reply_to", "-e",
                         "mproxy.control.replied_in"], tshark_home, wireshark)
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    replies = [row for row in rows if row[1].startswith("-")]
    assert replies and all(row[2] for row in replies)
    requests = {row[0] for row in rows if row[3]}
    assert {row[2] for row in replies} <= requests


def test_expert_infos_carry_the_problem_names(tshark_home: Path, wireshark: Version) -> None:
    """impaired.pcap lost a segment inside a body: the frame keeps its place with problem "gap"."""
    pcap = CAPTURES / "impaired.pcap"
    result = run_tshark(["-r", str(pcap), "-Y", "_ws.expert", "-T", "fields", "-e", "_ws.expert.message"],
                        tshark_home, wireshark)
    assert "1400 body bytes lost in the capture" in result.stdout
    filtered = run_tshark(["-r", str(pcap), "-Y", f"{spec.PROBLEM_EXPERT_PREFIX}gap"], tshark_home, wireshark)
    assert filtered.returncode == 0 and len(filtered.stdout.splitlines()) == 1


def test_wss_decodes_with_the_key_log(tshark_home: Path, wireshark: Version) -> None:
    """Every frame the wss capture's senders wrote (manifest.json) shows, as for the plain WebSocket capture."""
    manifest = json.loads((CAPTURES / "manifest.json").read_text())
    for name, extra in (("wss.pcapng", ["-o", f"tls.keylog_file:{WSS_KEYS}"]), ("websocket.pcap", [])):
        result = run_tshark(["-r", str(CAPTURES / name), *extra, "-Y", "mproxy", "-T", "fields", "-e", "mproxy.kind"],
                            tshark_home, wireshark)
        kinds = [k for line in result.stdout.split() for k in line.split(",") if k != "garbage"]
        assert len(kinds) == manifest[name]["frames"], name


def test_bodies_go_to_their_service_dissector(tshark_home: Path, wireshark: Version) -> None:
    result = run_tshark(["-r", str(CAPTURES / "raw-tcp.pcap"), "-Y", "mproxy && tls.handshake.type == 1",
                         "-T", "fields", "-e", "tls.handshake.extensions_server_name"], tshark_home, wireshark)
    assert "secure.example.test" in result.stdout


@pytest.mark.parametrize("how", ["preference", "decode_as"])
def test_port_preference_and_decode_as_work_with_the_heuristic_off(how: str, tshark_home: Path,
                                                                    wireshark: Version) -> None:
    pcap = str(CAPTURES / "raw-tcp.pcap")
    (tshark_home / "config" / "heuristic_protos").write_text("mproxy_tcp,0\nmproxy_ws,0\n")
    off = run_tshark(["-r", pcap, "-Y", "mproxy"], tshark_home, wireshark)
    assert off.returncode == 0 and off.stdout.strip() == ""
    port = run_tshark(["-r", pcap, "-c", "1", "-T", "fields", "-e", "tcp.dstport"], tshark_home,
                      wireshark).stdout.strip()
    option = ["-o", f"mproxy.tcp_ports:{port}"] if how == "preference" else ["-d", f"tcp.port=={port},mproxy"]
    on = run_tshark(["-r", pcap, *option, "-Y", "mproxy"], tshark_home, wireshark)
    assert on.returncode == 0 and on.stderr == ""
    assert len(on.stdout.splitlines()) > 40
