"""The chart specs: one row per session even when a client id comes back, rows in the specs' datasets."""

from __future__ import annotations

import json

from tunnel_capture import HTTP_CLIENT, simple_tunnel

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import Decoder
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.report.charts import chart_specs
from mproxy_scapy.report.model import ReportModel


def report_data(path):
    decoder = Decoder(keep_closed_tunnels=True)
    model = ReportModel()
    for record in decoder.decode(open_capture(str(path))):
        model.add(record)
    return model.finish(decoder)


def test_a_reused_client_id_gets_a_row_per_session(tmp_path):
    session = [pack(HTTP_CLIENT, None, "connection"), pack(HTTP_CLIENT, b"GET / HTTP/1.1\r\n\r\n"),
               pack(HTTP_CLIENT, None, "end")]
    capture = simple_tunnel(tmp_path / "reuse.pcap", b"".join(session * 2), pack(HTTP_CLIENT, b"HTTP/1.1 200 OK"))
    data = report_data(capture)
    assert [c["client"] for c in data["clients"]] == ["IPv4,203.0.113.7,50123"] * 2
    bars = chart_specs(data)["timeline"]["datasets"]["clients"]
    assert [b["label"] for b in bars] == ["t1 IPv4,203.0.113.7,50123", "t1 IPv4,203.0.113.7,50123 (2)"]


def test_specs_carry_their_rows_and_stable_mark_names(tmp_path):
    from report.many_clients import many_clients_capture

    data = report_data(many_clients_capture(tmp_path / "many.pcap", 70))
    specs = chart_specs(data)
    assert sorted(specs) == ["throughput", "timeline", "top_clients"]  # no control requests, no problems
    timeline = specs["timeline"]
    assert len(timeline["datasets"]["clients"]) == 70
    assert len({b["label"] for b in timeline["datasets"]["clients"]}) == 70
    assert [layer["name"] for layer in timeline["layer"]][:1] == ["client_bars"]
    text = json.dumps(specs)
    assert '"values"' not in text  # every row is in a top-level dataset, none inline in a mark's data


def test_many_control_requests_are_sampled_and_the_title_says_so():
    from mproxy_scapy.report import charts

    control = [{"time": i / 1000, "latency": 0.001, "command": "ping", "id": i, "tunnel": 1, "request_frame": i,
                "reply_frame": i + 1, "outcome": "ok"} for i in range(12001)]
    sets = charts.Datasets()
    spec = charts.control_latency({"control": control}, sets).to_dict()
    assert len(sets["latency"]) == 4001 <= charts.MAX_LATENCY_POINTS
    assert spec["vconcat"][0]["title"].endswith("(one in 3 of 12,001 answered requests)")
