"""The committed captures: real tshark sees what the recorder says it recorded.

captures/manifest.json is the recorder's own summary (packets, TCP conversations,
frames and writes per direction); the truth files are what the sending side logged.
These tests hold the files, the manifest and tshark to each other, and (slow, live)
regenerate everything with the recorder's one command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from wireshark import matrix

from support import CAPTURES, REPO

NAMES = ("raw-tcp.pcap", "websocket.pcap", "wss.pcapng", "wss-tls12.pcapng", "go-dialect.pcap", "reference-js.pcap",
         "impaired.pcap", "junk.pcap", "false-sync.pcap", "deflate.pcap", "impaired-ws.pcap", "impaired-ack.pcap")
TRUTH_KEYS = (
    "src", "dst", "direction", "seq", "carrier", "offset", "length", "version", "hdrlen", "header", "family",
    "address", "port", "datalen", "service", "serviceport", "name", "servicename", "kind", "dialect", "body_len",
    "body_sha256", "packer", "ts", "write_index", "writes",
)
MESSAGE_KINDS = {"control", "connection", "end", "error", "pause", "resume"}
MAX_TOTAL_BYTES = 2 * 1024 * 1024


def manifest(directory: Path = CAPTURES) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def truth(name: str, directory: Path = CAPTURES) -> list[dict]:
    lines = (directory / f"{name}.truth.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


@pytest.fixture(scope="module")
def tshark_env() -> None:
    """tshark (this machine's, unprivileged, an empty profile: tests/wireshark/matrix.py) must be there."""
    try:
        matrix.installed(matrix.HOST)
    except matrix.MatrixError as error:
        pytest.fail(str(error), pytrace=False)


def tshark(_env: None, *args: str) -> str:
    return matrix.reference(args).stdout


def endpoint(text: str) -> str:
    host, port = text.rsplit(":", 1)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tshark_conversations(env: dict, path: Path) -> dict[tuple[str, str], int]:
    """``-z conv,tcp`` as {(endpoint, endpoint) sorted: total frames}."""
    rows = {}
    for line in tshark(env, "-r", str(path), "-q", "-z", "conv,tcp").splitlines():
        tokens = line.split()
        if len(tokens) > 9 and tokens[1] == "<->":
            a, b = sorted([endpoint(tokens[0]), endpoint(tokens[2])])
            rows[(a, b)] = int(tokens[9])
    return rows


def tunnel_port(name: str) -> int:
    """The relay's tunnel port: the server side of the capture's one conversation."""
    (conv,) = manifest()[name]["tcp_conversations"]
    ports = [int(conv[side].rsplit(":", 1)[1]) for side in ("a", "b")]
    server = {r["src"] for r in truth(name) if r["direction"] == "relay->device"}
    return next(p for p in ports if any(s.endswith(f":{p}") for s in server))


def check_truth(name: str, entry: dict, records: list[dict]) -> None:
    assert len(records) == entry["frames"]
    assert dict(Counter(r["direction"] for r in records)) == entry["frames_by_direction"]
    assert dict(Counter(r["kind"] for r in records)) == entry["frames_by_kind"]
    conversation = {entry["tcp_conversations"][0]["a"], entry["tcp_conversations"][0]["b"]}
    for direction in ("relay->device", "device->relay"):
        mine = [r for r in records if r["direction"] == direction]
        assert [r["seq"] for r in mine] == list(range(len(mine))), (name, direction)
        assert len({(r["src"], r["dst"]) for r in mine}) == 1
        assert {mine[0]["src"], mine[0]["dst"]} == conversation
        offset = 0
        junk = {j["offset"]: j["length"] for j in entry.get("junk", []) if j["direction"] == direction}
        for r in mine:
            assert set(TRUTH_KEYS) <= set(r), (name, sorted(set(TRUTH_KEYS) - set(r)))
            while offset in junk:  # bytes the recorder wrote that are not M-PROXY
                offset += junk.pop(offset)
            assert r["offset"] == offset, (name, direction, r["seq"])
            offset += r["length"]
            assert r["length"] == 2 + r["hdrlen"] + r["body_len"]
            assert r["hdrlen"] == len(r["header"].encode())
            assert r["version"] == 0xFE and r["datalen"] == r["body_len"]
            assert r["kind"] == (r["service"] if r["service"] in MESSAGE_KINDS else "data")
            assert r["dialect"] == ("go" if r["header"].endswith(",\n") else "js") == entry["dialect"]
            assert re.fullmatch(r"[0-9a-f]{64}", r["body_sha256"])
        writes = max(r["write_index"] + r["writes"] for r in mine)
        assert writes == entry["writes_by_direction"][direction]


def test_manifest_lists_every_capture_and_its_size():
    entries = manifest()
    assert sorted(entries) == sorted(NAMES)
    for name, entry in entries.items():
        assert entry["file"] == name
        assert (CAPTURES / name).stat().st_size == entry["bytes"], name
    total = sum(p.stat().st_size for p in CAPTURES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < MAX_TOTAL_BYTES, total


@pytest.mark.parametrize("name", NAMES)
def test_truth_parses_and_matches_the_manifest(name):
    check_truth(name, manifest()[name], truth(name))


@pytest.mark.tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_sees_the_recorded_packets_and_conversations(name, tshark_env):
    entry = manifest()[name]
    packets = tshark(tshark_env, "-r", str(CAPTURES / name), "-T", "fields", "-e", "frame.number").split()
    assert len(packets) == entry["packets"]
    want = {(c["a"], c["b"]): c["packets"] for c in entry["tcp_conversations"]}
    assert tshark_conversations(tshark_env, CAPTURES / name) == want


def binary_messages(env: dict, path: Path, *options: str) -> Counter:
    """WebSocket binary messages per direction ('masked' = sent by the client, the device)."""
    out = tshark(env, "-r", str(path), *options, "-Y", "websocket.opcode == 2", "-T", "fields", "-e", "websocket.mask")
    return Counter("device->relay" if mask in ("1", "True") else "relay->device" for mask in out.split())


@pytest.mark.tshark
def test_websocket_capture_shows_one_binary_message_per_write(tshark_env):
    entry = manifest()["websocket.pcap"]
    port = tunnel_port("websocket.pcap")
    messages = binary_messages(tshark_env, CAPTURES / "websocket.pcap", "-d", f"tcp.port=={port},http")
    assert dict(messages) == entry["writes_by_direction"]
    upgrade = tshark(tshark_env, "-r", str(CAPTURES / "websocket.pcap"), "-d", f"tcp.port=={port},http",
                     "-Y", "http.request", "-T", "fields", "-e", "http.request.uri", "-e", "http.authorization")
    uri, authorization = upgrade.strip().split("\t")
    token = uri.split("access_token=", 1)[1].split("&", 1)[0]
    assert uri.endswith("&versions=v1") and authorization == f"Bearer {token}"


@pytest.mark.tshark
def test_wss_capture_decrypts_with_its_key_log(tshark_env):
    entry = manifest()["wss.pcapng"]
    path = CAPTURES / "wss.pcapng"
    assert dict(binary_messages(tshark_env, path)) == entry["writes_by_direction"], "embedded secrets"
    keylog = f"tls.keylog_file:{CAPTURES / 'wss.keys'}"
    assert dict(binary_messages(tshark_env, path, "-o", keylog)) == entry["writes_by_direction"]
    sni = tshark(tshark_env, "-r", str(path), "-Y", "tls.handshake.type == 1",
                 "-T", "fields", "-e", "tls.handshake.extensions_server_name")
    assert sni.split() == ["relay.example.test"]


def test_control_and_error_scenarios_are_recorded():
    records = truth("websocket.pcap")
    controls = [(r["direction"], r["header"]) for r in records if r["kind"] == "control"]
    assert [d for d, _ in controls] == ["relay->device", "device->relay", "device->relay", "relay->device",
                                        "relay->device"]
    kinds = Counter(r["kind"] for r in records)
    assert kinds["pause"] == kinds["resume"] == kinds["error"] == 1
    ends = {r["datalen"] for r in records if r["kind"] == "end"}
    assert ends == {0, 1}, "both padding styles"
    names = {r["name"] for r in records if r["kind"] == "connection"}
    assert {"web.example.test", "secure.example.test", "echo.example.test", "closed.example.test"} <= names
    assert {r["family"] for r in records if r["kind"] == "connection"} == {"IPv4", "IPv6"}


def test_go_dialect_and_reference_js_come_from_their_packers():
    go = truth("go-dialect.pcap")
    assert all(r["header"].endswith(",\n") and r["packer"] == "recorder.packers.go_pack" for r in go)
    assert {r["datalen"] for r in go if r["kind"] in ("end", "error")} == {0}
    js = truth("reference-js.pcap")
    relay = {r["packer"] for r in js if r["direction"] == "relay->device"}
    assert relay == {"proxy-packer@2.0.4 Packer.pack", "proxy-packer@2.0.4 Packer.packHeader"}


@pytest.mark.tshark
def test_impaired_capture_has_the_damage_its_truth_describes(tshark_env):
    entry = manifest()["impaired.pcap"]
    details = entry["impairments"]
    lost = details["lost_segment"]
    records = truth("impaired.pcap")
    hit = [r for r in records if r["lost"]]
    assert len(hit) == details["frames_lost"] >= 1
    start, end = lost["stream_offset"], lost["stream_offset"] + lost["length"]
    for r in hit:
        (cut,) = r["lost_ranges"]
        assert r["direction"] == lost["direction"] and start <= cut[0] < cut[1] <= end
    assert sum(b - a for r in hit for a, b in r["lost_ranges"]) == lost["length"]
    assert [{k: v for k, v in r.items() if k not in ("lost", "lost_ranges")} for r in records] == truth("raw-tcp.pcap")
    flags = tshark(tshark_env, "-r", str(CAPTURES / "impaired.pcap"), "-T", "fields",
                   "-e", "tcp.analysis.lost_segment", "-e", "tcp.analysis.retransmission",
                   "-e", "tcp.analysis.spurious_retransmission", "-e", "tcp.analysis.out_of_order")
    seen = Counter(i for line in flags.splitlines() for i, v in enumerate(line.split("\t")) if v)
    assert seen[0] >= 1 and seen[1] + seen[2] >= 3 and seen[3] >= 1, seen
    whats = Counter(c["what"] for c in details["changes"])
    assert whats["reordered"] >= 2 and whats["retransmission"] >= 3 and whats["overlapping retransmission"] == 1


@pytest.mark.tshark
def test_impaired_ack_capture_acknowledges_each_lost_segment_before_the_next(tshark_env):
    """Nothing of the direction comes between a lost segment and the first ACK that passes it: only the ACK shows the
    loss (the last one by the device's reply, whose own frame then shares the packet)."""
    entry = manifest()["impaired-ack.pcap"]
    details = entry["impairments"]
    records = truth("impaired-ack.pcap")
    assert len([r for r in records if r["lost"]]) == details["frames_lost"] == len(details["lost_segments"]) == 3
    assert [lost["acked_with_data"] for lost in details["lost_segments"]] == [False, False, True]
    rows = tshark(tshark_env, "-r", str(CAPTURES / "impaired-ack.pcap"), "-o", "tcp.relative_sequence_numbers:TRUE",
                  "-T", "fields", "-e", "frame.number", "-e", "tcp.srcport", "-e", "tcp.seq", "-e", "tcp.len",
                  "-e", "tcp.ack").splitlines()
    packets = [tuple(int(v) for v in row.split("\t")) for row in rows]
    relay = tunnel_port("impaired-ack.pcap")
    for lost in details["lost_segments"]:
        start, end = lost["stream_offset"], lost["stream_offset"] + lost["length"]
        assert any(r["lost_ranges"] == [[max(start, r["offset"]), min(end, r["offset"] + r["length"])]]
                   for r in records if r["lost"])
        ack = packets[lost["acked_in"] - 1]
        assert ack[1] != relay and ack[4] - 1 >= end and bool(ack[3]) == lost["acked_with_data"]
        assert all(p[1] == relay or p[4] - 1 < end for p in packets[:lost["acked_in"] - 1])
        before = [p for p in packets[:lost["acked_in"] - 1] if p[1] == relay and p[3]]
        assert max(p[2] - 1 + p[3] for p in before) == start, "the hole is the last thing before the ACK"
        assert all(p[2] - 1 >= end for p in packets[lost["acked_in"]:] if p[1] == relay and p[3])


@pytest.mark.slow
@pytest.mark.live
@pytest.mark.tshark
@pytest.mark.node
def test_recorder_regenerates_every_capture(tmp_path, tshark_env):
    """The one command, on real loopback: every capture again, consistent with its own manifest."""
    result = subprocess.run([sys.executable, str(REPO / "captures" / "record.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    fresh, committed = manifest(tmp_path), manifest()
    assert sorted(fresh) == sorted(NAMES)
    for name in NAMES:
        entry = fresh[name]
        check_truth(name, entry, truth(name, tmp_path))
        conversations = tshark_conversations(tshark_env, tmp_path / name)
        assert conversations == {(c["a"], c["b"]): c["packets"] for c in entry["tcp_conversations"]}
        fixed = {k: v for k, v in entry["frames_by_kind"].items() if k != "data"}
        assert fixed == {k: v for k, v in committed[name]["frames_by_kind"].items() if k != "data"}, name


def test_recorder_names_missing_tools_and_records_nothing(tmp_path):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    result = subprocess.run(
        [sys.executable, str(REPO / "captures" / "record.py"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PATH": str(empty_path)},
    )
    assert result.returncode == 2
    for tool in ("tcpdump", "editcap", "node", "npm"):
        assert f"{tool}:" in result.stderr
    assert not (tmp_path / "out").exists()


def test_readme_table_matches_the_manifest():
    """captures/README.md quotes the manifest's counts; re-recording must update both."""
    rows = {}
    for line in (CAPTURES / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[2].isdigit():
            rows[cells[0].split("`")[1]] = (int(cells[2]), int(cells[3]), cells[4])
    entries = manifest()
    assert sorted(rows) == sorted(NAMES)
    for name, (packets, conversations, frames) in rows.items():
        entry = entries[name]
        by_direction = entry["frames_by_direction"]
        assert (packets, conversations, frames) == (
            entry["packets"], len(entry["tcp_conversations"]),
            f"{by_direction['relay->device']} + {by_direction['device->relay']}",
        ), name
