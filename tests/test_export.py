"""The export module in-process: the tracker gives finished clients up as it streams, and a failure writes nothing."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from tunnel_capture import simple_tunnel

from mproxy_scapy import sessions
from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import Decoder
from mproxy_scapy.export import Exporter, ExportOptions, Staging, export_part, parquet_sinks
from mproxy_scapy.export_schema import TABLES
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.sessions import SessionTracker

from support import CAPTURES


@pytest.fixture(scope="module")
def many_clients(tmp_path_factory):
    """One raw-TCP tunnel carrying 400 short client connections one after another, 1 ms per segment."""
    stream = b"".join(
        pack(client, payload, kind)
        for port in range(40000, 40400)
        for client in [{"family": "IPv4", "address": "203.0.113.9", "port": port, "service": "http",
                        "serviceport": 80, "name": "many.example.test"}]
        for payload, kind in ((None, "connection"), (b"GET / HTTP/1.1\r\n\r\n", "data"), (None, "end")))
    return simple_tunnel(tmp_path_factory.mktemp("many") / "many.pcap", stream, b"", chunk=300)


def test_only_open_clients_stay_in_memory(many_clients, tmp_path, monkeypatch):
    """The capture lasts 0.4 s, so the linger after an end is cut to 5 ms to make it matter."""
    monkeypatch.setattr(sessions, "ENDED_LINGER", 0.005)
    decoder = Decoder(keep_closed_tunnels=True)
    exporter = Exporter(decoder, parquet_sinks(tmp_path, 0), ExportOptions(batch_rows=50), source=str(many_clients))
    unpruned = SessionTracker()
    held = []
    for record in decoder.decode(open_capture(str(many_clients))):
        exporter.add(record)
        unpruned.add(record)
        held.append(len(exporter.tracker.sessions))
    counts = exporter.close()
    assert counts["clients"] == len(unpruned.sessions) == 400
    assert max(held) < 40, "finished clients were not given up while streaming"
    assert decoder.tunnels == {}
    rows = pq.read_table(tmp_path / "clients").to_pylist()
    assert sorted((r["tunnel"], r["client"], r["first_frame"], r["bytes_in"], r["bytes_out"], r["ended_by"])
                  for r in rows) == sorted(
        (s.tunnel, s.client_id, s.first_frame, s.data_bytes[s.inbound], s.data_bytes[1 - s.inbound], s.outcome)
        for s in unpruned.sessions)
    assert pq.ParquetFile(tmp_path / "clients" / "part-00000.parquet").metadata.num_row_groups > 1


class Boom(Exception):
    pass


def failing(records, after):
    for number, record in enumerate(records):
        if number == after:
            raise Boom
        yield record


def test_a_failure_mid_run_leaves_no_table_and_no_staging(tmp_path):
    out = tmp_path / "out"
    decoder = Decoder(keep_closed_tunnels=True)
    records = failing(decoder.decode(open_capture(str(CAPTURES / "raw-tcp.pcap"))), after=30)
    with pytest.raises(Boom), Staging(out) as staging:
        export_part(records, decoder, staging.path, 0, ExportOptions(batch_rows=4))
        staging.commit()
    assert not out.exists()

    out.mkdir()
    (out / "notes.txt").write_text("kept")
    with pytest.raises(Boom), Staging(out) as staging:
        export_part(failing(Decoder(keep_closed_tunnels=True).decode(open_capture(str(CAPTURES / "raw-tcp.pcap"))),
                            after=30), decoder, staging.path, 0, ExportOptions(batch_rows=4))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_commit_replaces_every_table(tmp_path):
    out = tmp_path / "out"
    for capture in ("raw-tcp.pcap", "go-dialect.pcap"):
        decoder = Decoder(keep_closed_tunnels=True)
        with Staging(out) as staging:
            export_part(decoder.decode(open_capture(str(CAPTURES / capture))), decoder, staging.path, 0,
                        ExportOptions())
            staging.commit()
    assert sorted(p.name for p in out.iterdir()) == sorted(TABLES)
    assert pq.read_table(out / "frames").num_rows == 25
