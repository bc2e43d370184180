"""``mproxy export``: real DuckDB SQL over the Parquet tables gives what ``stats --json`` and ``dissect --json`` give.

Every bundled capture (wss decrypted with its key log, found next to it) and a
generated capture with 8 tunnels and ~200 clients (unmatched control replies
too), exported in small row groups so the streaming writer and the tracker's
pruning run many times per table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from cli_run import assert_clean_error, build_sample, mproxy
from tunnel_capture import HTTP_REQUEST, JWT
from worker_kill import alive, kill_a_worker

from mproxy_scapy.export_schema import SCHEMA_VERSION, TABLES, VERSION_KEY, arrow_schema
from mproxy_scapy.render import FRAME_KEYS
from mproxy_scapy.secrets import mask_bytes

from support import CAPTURES, REPO

BUNDLED = sorted(p.name for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The benchmark generator's WebSocket capture at 3 MB: 8 tunnels, 201 clients, replies to no request."""
    path = tmp_path_factory.mktemp("gen") / "fleet.pcap"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_capture.py"), str(path), "--size-mb", "3",
                    "--carrier", "websocket"], check=True, capture_output=True)
    return path


def names(capture: Path | list[Path]) -> list[str]:
    return [str(p) for p in (capture if isinstance(capture, list) else [capture])]


def export(capture: Path | list[Path], out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = mproxy("export", *names(capture), "-o", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return result


def sql(query: str) -> list[tuple]:
    return duckdb.sql(query).fetchall()


def table(out: Path, name: str) -> str:
    return f"read_parquet('{out}/{name}/*.parquet')"


def stats_json(capture: Path | list[Path]) -> dict:
    result = mproxy("stats", *names(capture), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dissect_json(capture: Path | list[Path]) -> list[dict]:
    result = mproxy("dissect", "--json", *names(capture))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


TWO_RELAYS = "raw-tcp.pcap+go-dialect.pcap"
"""Two captures of different relays, read as one capture merged by time (records name their file)."""


def capture_path(name: str, generated: Path) -> Path | list[Path]:
    if name == TWO_RELAYS:
        return [CAPTURES / part for part in name.split("+")]
    return generated if name == "generated" else CAPTURES / name


@pytest.mark.parametrize("name", [*BUNDLED, "generated", TWO_RELAYS])
def test_sql_per_client_totals_equal_stats(name, generated, tmp_path):
    capture = capture_path(name, generated)
    out = tmp_path / "out"
    export(capture, out, "--row-group", "7")
    summary = stats_json(capture)
    clients = table(out, "clients")
    rows = sql(f"SELECT tunnel, client, service, name, serviceport, frames_in, frames_out, bytes_in, bytes_out, "
               f"round(duration, 6), ended_by, error, pauses, resumes FROM {clients}")
    keys = ("tunnel", "client", "service", "name", "serviceport", "frames_in", "frames_out", "bytes_in", "bytes_out",
            "duration", "ended_by", "error", "pauses", "resumes")
    assert sorted(rows, key=repr) == sorted((tuple(s[k] for k in keys) for s in summary["sessions"]), key=repr)
    assert len(rows) == len(summary["sessions"]) > 0
    totals = sql(f"SELECT client, count(*), sum(bytes_in), sum(bytes_out), sum(frames_in + frames_out) "
                 f"FROM {clients} GROUP BY client ORDER BY client")
    expected: dict[str, list[int]] = {}
    for s in summary["sessions"]:
        acc = expected.setdefault(s["client"], [0, 0, 0, 0])
        for i, value in enumerate((1, s["bytes_in"], s["bytes_out"], s["frames_in"] + s["frames_out"])):
            acc[i] += value
    assert totals == [(client, *acc) for client, acc in sorted(expected.items())]
    first = sql(f"SELECT min(ts) FROM {table(out, 'frames')}")[0][0]
    assert first is not None

    tunnels = sql(f"SELECT tunnel, client, server, carrier, frames_c2s, frames_s2c, bytes_c2s, bytes_s2c, sessions, "
                  f"round(duration, 6), closed, map_entries(carrier_info) FROM {table(out, 'tunnels')} ORDER BY tunnel")
    assert [t[:11] for t in tunnels] == [
        (t["tunnel"], t["client"], t["server"], t["carrier"], *t["frames"], *t["stream_bytes"], t["sessions"],
         t["duration"], t["closed"]) for t in sorted(summary["tunnels"], key=lambda t: t["tunnel"])]
    assert [{e["key"]: e["value"] for e in t[11]} for t in tunnels] == [
        t["carrier_info"] for t in sorted(summary["tunnels"], key=lambda t: t["tunnel"])]

    problems = dict(sql(f"SELECT kind, count(*) FROM {table(out, 'problems')} GROUP BY kind"))
    assert problems == summary["problems"]

    control = sql(f"SELECT tunnel, id, command, request, request_frame, reply_frame, round(latency, 6), outcome "
                  f"FROM {table(out, 'control')} WHERE request_frame IS NOT NULL")
    assert sorted(control, key=repr) == sorted(
        ((c["tunnel"], c["id"], c["command"], json.dumps(c["request"], ensure_ascii=False), c["request_frame"],
          c["reply_frame"], c["latency"], c["outcome"]) for c in summary["control"]), key=repr)
    unmatched = sql(f"SELECT reply_frame FROM {table(out, 'control')} WHERE outcome = 'unmatched_reply' "
                    "ORDER BY reply_frame")
    assert [u[0] for u in unmatched] == sorted(summary["unmatched_replies"])
    if name == "generated":
        assert len(summary["tunnels"]) == 8 and summary["unmatched_replies"]
    files = {f for (f,) in sql(f"SELECT DISTINCT first_file FROM {clients}")}
    assert files == set(names(capture))


@pytest.mark.parametrize("name", [*BUNDLED, "generated", TWO_RELAYS])
def test_frames_and_problems_rows_match_dissect_json(name, generated, tmp_path):
    capture = capture_path(name, generated)
    out = tmp_path / "out"
    export(capture, out, "--row-group", "5")
    records = dissect_json(capture)
    frames = [r for r in records if r["kind"] != "stage"]
    rows = pq.read_table(out / "frames").to_pylist()
    assert len(rows) == len(frames) > 0
    for row, record in zip(rows, frames, strict=True):
        assert {k: row[k] for k in FRAME_KEYS} == {k: record[k] for k in FRAME_KEYS}
        assert row["pcap_file"] == record.get("pcap_file", str(capture))
        assert (json.loads(row["control"]) if row["control"] else None) == record.get("control")
        assert (json.loads(row["error"]) if row["error"] else None) == record.get("error")
        assert (row["reply_to"], row["reply_time"]) == (record.get("reply_to"), record.get("reply_time"))
        assert row["body"] is None
    problems = Counter(p["kind"] for r in records for p in r["problems"])
    assert dict(Counter(k for (k,) in sql(f"SELECT kind FROM {table(out, 'problems')}"))) == dict(problems)
    groups = pq.ParquetFile(next((out / "frames").iterdir())).metadata.num_row_groups
    assert groups == -(-len(frames) // 5)


def test_schema_version_and_types_are_in_every_file(tmp_path):
    out = tmp_path / "out"
    result = export(CAPTURES / "websocket.pcap", out)
    assert f"(schema version {SCHEMA_VERSION})" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(TABLES)
    for name, spec in TABLES.items():
        (part,) = (out / name).iterdir()
        schema = pq.read_schema(part)
        assert schema.metadata[VERSION_KEY.encode()] == SCHEMA_VERSION.encode()
        assert schema.equals(arrow_schema(name))
        assert [(f.name, f.nullable) for f in schema] == [(c.name, c.nullable) for c in spec.columns]
        assert schema.field(spec.columns[0].name).metadata[b"description"] == spec.columns[0].meaning.encode()


def test_a_table_without_rows_is_still_a_table(tmp_path):
    out = tmp_path / "out"
    export(CAPTURES / "go-dialect.pcap", out)
    assert sql(f"SELECT count(*) FROM {table(out, 'problems')}") == [(0,)]
    assert sql(f"SELECT count(*) FROM {table(out, 'control')}") == [(0,)]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("sample"))


def test_bodies_only_when_asked_and_redacted(sample, tmp_path):
    plain = tmp_path / "plain"
    export(sample, plain)
    assert sql(f"SELECT count(*) FROM {table(plain, 'frames')} WHERE body IS NOT NULL") == [(0,)]

    redacted = tmp_path / "redacted"
    export(sample, redacted, "--bodies")
    bodies = sql(f"SELECT kind, client_id, body, control FROM {table(redacted, 'frames')} "
                 'ORDER BY pcap_frame, "offset"')
    assert all(JWT.encode() not in (body or b"") and JWT not in (control or "") for _, _, body, control in bodies)
    request = next(body for kind, client, body, _ in bodies if kind == "data" and client == "IPv4,203.0.113.7,50123")
    assert request == mask_bytes(HTTP_REQUEST) and len(request) == len(HTTP_REQUEST) and request != HTTP_REQUEST
    auth = [json.loads(body) for kind, _, body, control in bodies if kind == "control" and '"auth"' in control]
    assert auth == [[2, "auth", "<redacted>"]]

    shown = tmp_path / "shown"
    export(sample, shown, "--bodies", "--show-secrets")
    bodies = dict(sql(f"SELECT client_id, body FROM {table(shown, 'frames')} WHERE kind = 'data' "
                      "AND client_id LIKE 'IPv4%' AND direction = 1"))
    assert bodies["IPv4,203.0.113.7,50123"] == HTTP_REQUEST
    controls = [c for (c,) in sql(f"SELECT request FROM {table(shown, 'control')}")]
    assert any(JWT in c for c in controls)


def test_failed_run_leaves_nothing_and_keeps_the_previous_export(tmp_path):
    out = tmp_path / "out"
    export(CAPTURES / "raw-tcp.pcap", out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    data = (CAPTURES / "websocket.pcap").read_bytes()
    truncated = tmp_path / "truncated.pcap"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    assert_clean_error(mproxy("export", str(truncated), "-o", str(out)), "truncated or damaged capture")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in out.iterdir()) == sorted(TABLES)

    fresh = tmp_path / "fresh"
    assert_clean_error(mproxy("export", str(truncated), "-o", str(fresh)), "truncated or damaged capture")
    assert not fresh.exists()


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_clean_error(mproxy("export", str(CAPTURES / "raw-tcp.pcap"), "-o", str(blocker)), "not a folder")
    assert_clean_error(mproxy("export", str(CAPTURES / "raw-tcp.pcap"), "-o", str(blocker / "out")),
                       "cannot write the export")
    assert blocker.read_text() == "not a folder"
    (tmp_path / "dir" / "frames").mkdir(parents=True)
    (tmp_path / "dir" / "clients").write_text("mine")
    assert_clean_error(mproxy("export", str(CAPTURES / "raw-tcp.pcap"), "-o", str(tmp_path / "dir")),
                       "not a table folder")
    assert (tmp_path / "dir" / "clients").read_text() == "mine"


def test_without_pyarrow_one_line_error(tmp_path):
    code = ("import sys; sys.modules['pyarrow'] = None; from mproxy_scapy.cli import main; "
            f"sys.exit(main(['export', {str(CAPTURES / 'raw-tcp.pcap')!r}, '-o', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert_clean_error(result, "mproxy export needs pyarrow: pip install 'mproxy-scapy[export]'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", [*BUNDLED, "generated", TWO_RELAYS])
def test_jobs_write_one_part_per_shard_with_the_serial_rows(name, generated, tmp_path):
    capture = capture_path(name, generated)
    serial, sharded = tmp_path / "serial", tmp_path / "sharded"
    export(capture, serial)
    export(capture, sharded, "--jobs", "3", "--row-group", "6")
    for table in TABLES:
        parts = sorted(p.name for p in (sharded / table).iterdir())
        assert parts == [f"part-0000{k}.parquet" for k in range(3)]
        assert sorted(pq.read_table(sharded / table).to_pylist(), key=repr) == sorted(
            pq.read_table(serial / table).to_pylist(), key=repr), table


def test_a_worker_killed_mid_run_fails_the_export_and_writes_nothing(tmp_path):
    """The input is a FIFO that never ends: both workers are certainly mid-run (blocked reading it) when one is
    killed, however fast the machine. The export fails with one line, and nothing of it is left: not DIR, not the
    staging folder, not the other worker."""
    out = tmp_path / "out"
    run, workers = kill_a_worker(tmp_path, ["export", "-o", str(out)], 0)
    assert_clean_error(run, "a worker process died before it finished")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.pcap"]
    assert not any(alive(pid) for pid in workers)


def test_the_export_process_does_without_pandas(tmp_path):
    """pyarrow would load pandas (about 45 MB) only to ask whether a list is a pandas object."""
    code = ("import sys; from mproxy_scapy.cli import main; "
            f"main(['export', {str(CAPTURES / 'raw-tcp.pcap')!r}, '-o', {str(tmp_path / 'out')!r}]); "
            "print('pandas' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert sql(f"SELECT count(*) FROM {table(tmp_path / 'out', 'frames')}") == [(56,)]


def test_an_export_shard_sends_back_counts_and_totals_not_its_tunnels(generated, tmp_path):
    """A Dask worker writes its parts itself; what goes back to the client stays small whatever the capture."""
    import pickle

    from mproxy_scapy.export import ExportOptions
    from mproxy_scapy.inputs import expand_inputs
    from mproxy_scapy.parallel import DecodeOptions
    from mproxy_scapy.shards import export_shard

    for name in TABLES:
        (tmp_path / name).mkdir()
    result = export_shard(expand_inputs([generated]), 0, 2, DecodeOptions(keep_closed_tunnels=True), ExportOptions(),
                          str(tmp_path))
    assert result["summary"]["tunnel_count"] == 4 and result["summary"]["tunnels"] == []
    assert result["counts"]["tunnels"] == 4 == pq.read_table(tmp_path / "tunnels").num_rows
    assert len(pickle.dumps(result)) < 4096
