"""The page's own text: text from the wire cannot break out of its element, long file lists are counted."""

from __future__ import annotations

from tunnel_capture import HTTP_CLIENT, simple_tunnel

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import Decoder
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.report.charts import chart_specs
from mproxy_scapy.report.model import ReportModel
from mproxy_scapy.report.page import MAX_NAMED_FILES, render_page

HOSTILE = "</script><img src=x onerror=alert(1)>&amp;"


def test_hostile_names_stay_text(tmp_path):
    client = dict(HTTP_CLIENT, name=HOSTILE)
    capture = simple_tunnel(tmp_path / "hostile.pcap", pack(client, None, "connection") + pack(client, b"x"),
                            pack(client, None, "end"))
    decoder = Decoder(keep_closed_tunnels=True)
    model = ReportModel()
    for record in decoder.decode(open_capture(str(capture))):
        model.add(record)
    data = model.finish(decoder)
    assert data["clients"][0]["name"] == HOSTILE
    page = render_page(data, chart_specs(data), files=["hostile.pcap"], vega_js="/* runtime */", show_secrets=False)
    assert HOSTILE not in page and "<img" not in page
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&amp;amp;" in page  # in the clients table
    assert "\\u003c/script\\u003e\\u003cimg" in page  # in the timeline's data
    assert page.count("</script>") == page.count("<script")


def test_many_files_are_counted_not_listed():
    data = {"first_ts": None, "span": 0.0, "packets": 0, "connections": 0, "frames": 0, "tunnels": [],
            "carriers": {}, "clients_total": 0, "clients_hidden": {"count": 0}, "client_bytes": [0, 0],
            "problems": {}}
    files = [f"relay-{i:03}.pcap.gz" for i in range(MAX_NAMED_FILES + 30)]
    page = render_page(data, {}, files=files, vega_js="", show_secrets=False)
    assert f"<title>M-PROXY report: {MAX_NAMED_FILES + 30} capture files</title>" in page
    assert f"relay-{MAX_NAMED_FILES - 1:03}.pcap.gz and 30 more" in page and f"relay-{MAX_NAMED_FILES:03}" not in page
    assert "holds no TCP packets" in page
