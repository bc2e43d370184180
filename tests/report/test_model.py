"""ReportModel on the recorded captures: the same per-client numbers as ``mproxy stats``, plus ends and pauses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import mproxy

from mproxy_scapy.commands._filters import client_matcher
from mproxy_scapy.decoder import Decoder
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.report.model import ReportModel

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def build(name: str, **kwargs):
    decoder = Decoder(keep_closed_tunnels=True)
    model = ReportModel(**kwargs)
    for record in decoder.decode(open_capture(str(CAPTURES / name))):
        model.add(record)
    return model.finish(decoder)


@pytest.mark.parametrize("name", ["websocket.pcap", "impaired.pcap", "raw-tcp.pcap", "go-dialect.pcap"])
def test_same_numbers_as_stats(name):
    stats = json.loads(mproxy("stats", "--json", str(CAPTURES / name)).stdout)
    data = build(name)
    assert data["clients_total"] == len(stats["sessions"]) == len(data["clients"])
    key = ("tunnel", "client", "bytes_in", "bytes_out", "ended_by", "start")
    assert sorted(tuple(c[k] for k in key) for c in data["clients"]) == sorted(
        tuple(s[k] for k in key) for s in stats["sessions"])
    assert data["problems"] == stats["problems"]
    assert sum(data["problems"].values()) == len(data["problem_rows"])
    assert [c["request_frame"] for c in data["unanswered"]] == [c["request_frame"] for c in stats["unanswered"]]
    assert data["packets"] == stats["packets"]
    # every byte of every tunnel stream is in one record; a record also counts the bytes the capture lost
    lost = 1400 if name == "impaired.pcap" else 0
    tunnel_bytes = sum(sum(t["stream_bytes"]) for t in stats["tunnels"])
    assert sum(r["bytes"] for r in data["throughput"]) == tunnel_bytes + lost


def test_bars_end_at_the_end_or_error_frame_and_pauses_are_periods():
    data = build("websocket.pcap")
    by_client = {c["client"]: c for c in data["clients"]}
    refused = by_client["IPv4,127.0.0.1,49342"]
    assert (refused["ended_by"], refused["end_packet"], refused["error"]) == (
        "error", 24, "connect ECONNREFUSED 127.0.0.1:48665")
    assert refused["stop"] == pytest.approx(0.008647, abs=1e-6)  # the error frame's time, as dissect prints it
    echo = by_client["IPv6,::1,40910"]
    assert echo["pauses"] == 1
    ((paused, resumed, packet),) = echo["pause_periods"]
    assert echo["start"] < paused < resumed <= echo["stop"]
    assert packet > echo["first_packet"]
    assert [c["row"] for c in data["clients"]] == list(range(len(data["clients"])))


def test_busiest_clients_drawn_the_rest_summarised():
    decoder = Decoder(keep_closed_tunnels=True)
    model = ReportModel()
    for record in decoder.decode(open_capture(str(CAPTURES / "websocket.pcap"))):
        model.add(record)
    data = model.finish(decoder, max_clients=2)
    assert data["clients_total"] == 6 and len(data["clients"]) == 2
    assert {c["client"] for c in data["clients"]} == {"IPv6,::1,43096", "IPv4,127.0.0.1,35954"}
    everyone = build("websocket.pcap")["clients"]
    hidden = data["clients_hidden"]
    assert hidden["count"] == 4
    assert hidden["bytes_in"] + sum(c["bytes_in"] for c in data["clients"]) == sum(c["bytes_in"] for c in everyone)


def test_filter_keeps_only_the_selected_frames():
    matches = client_matcher("[::1]:40910")
    data = build("websocket.pcap", keep=lambda r: matches(r.frame.client_id), stage_events=False)
    assert [c["client"] for c in data["clients"]] == ["IPv6,::1,40910"]
    assert data["control"] == [] and data["frames"] == 11


def test_problems_listed_with_packet_numbers():
    data = build("impaired.pcap")
    rows = data["problem_rows"]
    assert {(r["packet"], r["kind"]) for r in rows} >= {(125, "tcp.gap"), (125, "gap")}
    assert sum(r["count"] for r in data["problem_bins"]) == sum(data["problems"].values())
