"""A small run of the benchmark harness, so it cannot rot: it must run and report every row.

Never a timing: a shared two-core machine makes any threshold flaky. The generator is
also checked for determinism and for decoding cleanly, since every number rests on it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

pytestmark = [pytest.mark.slow, pytest.mark.tshark]


def generate(path: Path, carrier: str) -> None:
    subprocess.run([sys.executable, str(BENCH / "gen_capture.py"), str(path), "--size-mb", "1",
                    "--carrier", carrier], check=True, capture_output=True)


@pytest.mark.parametrize("carrier", ["tcp", "websocket"])
def test_generator_is_deterministic_and_decodes_without_problems(tmp_path: Path, carrier: str) -> None:
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    generate(first, carrier)
    generate(second, carrier)
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    out = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "--json", str(first)],
                         capture_output=True, check=True, text=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) > 100
    assert {r["carrier"] for r in records} == {carrier}
    assert {"connection", "data", "end", "control"} <= {r["kind"] for r in records}
    assert [r for r in records if r["problems"]] == []
    assert max(r["body_len"] for r in records) == 16384


def test_floor_walks_every_packet(tmp_path: Path) -> None:
    capture = tmp_path / "t.pcap"
    generate(capture, "tcp")
    out = subprocess.run([sys.executable, str(BENCH / "floor.py"), str(capture)], capture_output=True, check=True,
                         text=True)
    packets, payload = map(int, out.stdout.split())
    tshark = subprocess.run(["tshark", "-r", str(capture), "-T", "fields", "-e", "tcp.len"], capture_output=True,
                            check=True, text=True)
    lengths = [int(x) for x in tshark.stdout.split()]
    assert (packets, payload) == (len(lengths), sum(lengths))


def test_harness_runs_and_reports_every_row(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--size-mb", "2", "--scapy-mb", "1", "--runs", "1",
         "--workdir", str(tmp_path / "work"), "--output", str(report)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = report.read_text()
    tcp, websocket = text.split("| websocket |")
    dissect_rows = ("(1) `mproxy dissect --json`", "(1b) `mproxy dissect --json --jobs 2`",
                    "(1c) `mproxy dissect --json DIR` (the same capture as 20 rotated files)")
    for row in (*dissect_rows, "(2) tshark + mproxy.lua", "(2b) tshark alone",
                "(3) Scapy TCPSession + MProxy", "(4) floor (pcap walk)", "(5) `mproxy export` (Parquet)",
                "(5b) `mproxy export --scheduler`, LocalCluster of 2 worker processes"):
        assert row in tcp, row
    for row in (*dissect_rows, "(2) tshark + mproxy.lua", "(2b) tshark alone", "(4) floor (pcap walk)"):
        assert row in websocket, row
    for part in (tcp, websocket):
        assert "--jobs 2" in part and "the throughput of --jobs 1" in part and "rotated files take" in part
    assert "Scapy" not in websocket.split("\n\n")[0]
    assert "of the floor's throughput" in tcp and "faster than Scapy" in tcp and "adds" in websocket
    assert "export on a LocalCluster of 2 worker processes" in tcp and "workers' peak RSS" in tcp
    assert "FAILED" not in text
    assert list((tmp_path / "work").glob("*.pcap")) == [] and list((tmp_path / "work").glob("rotated-*")) == []


def test_harness_times_the_lua_dissector_on_every_wireshark_version(tmp_path: Path) -> None:
    """``--wireshark``: tshark + Lua and plain tshark again for each version of the matrix, run as the tests run it."""
    result = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--size-mb", "1", "--runs", "1", "--tools", "tshark_lua,tshark",
         "--carriers", "websocket", "--wireshark", "ws4.0,ws4.4,ws4.6", "--no-check-frames",
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for series, lua in (("4.0", "5.2"), ("4.4", "5.4"), ("4.6", "5.4")):
        assert f"| (2) tshark {series} + mproxy.lua (Lua {lua}) |" in result.stdout
        assert f"| (2b) tshark {series} alone |" in result.stdout
        assert f"tshark {series} + mproxy.lua (Lua {lua}): the Lua dissector adds" in result.stdout
    assert "FAILED" not in result.stdout
