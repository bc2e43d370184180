"""``--jobs N`` (mproxy_scapy/parallel.py): byte-identical to one process on every capture; a dead worker fails it."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import assert_clean_error, mproxy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rotation import pcap_records, rotate
from worker_kill import alive, kill_a_worker

from mproxy_scapy.commands.dissect import Formatter
from mproxy_scapy.commands.stats import summarize
from mproxy_scapy.decoder import flow_shard
from mproxy_scapy.inputs import expand_inputs, open_inputs
from mproxy_scapy.parallel import DecodeOptions, JobRun, decode_shard, decode_shard_keyed, merge_keyed
from mproxy_scapy.sessions import SessionTracker

from support import CAPTURES, REPO

BUNDLED = sorted(p for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def generate(path: Path, size_mb: float, carrier: str = "tcp") -> Path:
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_capture.py"), str(path), "--size-mb",
                    str(size_mb), "--carrier", carrier], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """8 raw-TCP tunnels at once (the benchmark generator at 1 MB): the shards really split them."""
    return generate(tmp_path_factory.mktemp("jobs") / "fleet.pcap", 1)


def keylog_args(capture: Path) -> list[str]:
    keys = capture.with_suffix(".keys")
    return ["--tls-keylog", str(keys)] if keys.is_file() else []


def run_ok(*args: str) -> subprocess.CompletedProcess:
    result = mproxy(*args)
    assert result.returncode == 0, result.stderr
    return result


def a_client(capture: Path) -> str:
    sessions = json.loads(run_ok("stats", "--json", str(capture), *keylog_args(capture)).stdout)["sessions"]
    return sessions[0]["client"]


def test_connections_are_dealt_round_the_shards_by_their_number(generated):
    """The 8 tunnels of the generated capture split 4 and 4 over two shards (a 4-tuple hash split them 5 and 3)."""
    assert [flow_shard(number, 2) for number in range(1, 9)] == [0, 1] * 4
    options = DecodeOptions(keep_closed_tunnels=True)
    tunnels = []
    for index in range(2):
        decoder = options.make_decoder((index, 2))
        for _ in decoder.decode(open_inputs([generated])):
            pass
        tunnels.append(sorted(decoder.tunnels))
    assert tunnels == [[1, 3, 5, 7], [2, 4, 6, 8]]


@pytest.mark.slow
@pytest.mark.parametrize("capture", BUNDLED, ids=lambda p: p.name)
def test_jobs_output_is_byte_identical_on_bundled_captures(capture, tmp_path):
    keys = keylog_args(capture)
    for command in (["dissect", "--json"], ["stats", "--json"], ["dissect"]):
        one = run_ok(*command, str(capture), *keys)
        three = run_ok(*command, "--jobs", "3", str(capture), *keys)
        assert (three.stdout, three.stderr) == (one.stdout, one.stderr), command
    client = a_client(capture)
    one = run_ok("follow", str(capture), "--client", client, *keys)
    assert run_ok("follow", "--jobs", "2", str(capture), "--client", client, *keys).stdout == one.stdout
    run_ok("detunnel", str(capture), "-o", str(tmp_path / "one.pcap"), *keys)
    run_ok("detunnel", "--jobs", "2", str(capture), "-o", str(tmp_path / "two.pcap"), *keys)
    assert (tmp_path / "two.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()


def test_jobs_output_is_byte_identical_with_many_tunnels_and_files(generated, tmp_path):
    _, records = pcap_records(generated)
    rotate(generated, tmp_path / "rot", [200, len(records) // 2, len(records) - 50])
    client = a_client(generated)
    for inputs in ([str(generated)], [str(tmp_path / "rot")]):
        for command in (["dissect", "--json"], ["stats", "--json"], ["follow", "--client", client]):
            one = run_ok(*command, *inputs)
            two = run_ok(*command, "--jobs", "2", *inputs)
            assert two.stdout == one.stdout, (command, inputs)
        run_ok("detunnel", *inputs, "-o", str(tmp_path / "one.pcap"))
        run_ok("detunnel", "--jobs", "0", *inputs, "-o", str(tmp_path / "all.pcap"))
        assert (tmp_path / "all.pcap").read_bytes() == (tmp_path / "one.pcap").read_bytes()


def dissect_args(**kw) -> argparse.Namespace:
    defaults = {"client": None, "service": None, "name": None, "kind": None, "problems_only": False,
                "show_secrets": False, "json": True, "scapy": False}
    return argparse.Namespace(**{**defaults, **kw})


def serial(files, options, transform=None):
    decoder = options.make_decoder()
    inputs = open_inputs(files)
    values = []
    for record in inputs.label(decoder.decode(inputs)):
        value = transform(record, decoder) if transform else record
        if value is not None:
            values.append(value)
    return values, decoder


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.integers(2, 4), cuts=st.lists(st.integers(1, 1200), max_size=4),
       text=st.booleans())
def test_property_any_jobs_any_rotation_same_output(generated, tmp_path_factory, jobs, cuts, text):
    folder = tmp_path_factory.mktemp("prop")
    rotate(generated, folder, cuts)
    files = expand_inputs([folder])
    options = DecodeOptions(keep_closed_tunnels=True)
    formatter = Formatter(dissect_args(json=not text))
    expected, _ = serial(files, options, formatter)
    run = JobRun(files, options, jobs, Formatter(dissect_args(json=not text)))
    assert list(run) == expected
    assert sum(run.totals.extra) == formatter.totals  # frames shown, counted in the workers
    # stats: the parent's tracker over the merged records and the summed totals
    records, decoder = serial(files, options)
    tracker = SessionTracker()
    for record in records:
        tracker.add(record)
    run = JobRun(files, options, jobs)
    merged = SessionTracker()
    for record in run:
        merged.add(record)
    assert json.dumps(summarize(run.totals, merged)) == json.dumps(summarize(decoder, tracker))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=st.integers(2, 4), seed=st.integers(0, 2**32 - 1), max_flows=st.sampled_from([None, 3, 6]))
def test_property_a_damaged_capture_read_by_shards_that_drop_other_shards_packets(generated, tmp_path_factory,
                                                                                   jobs, seed, max_flows):
    """A single input: each shard's reader drops the plain packets of other shards' connections before they are
    Segments (``tcp.QuietSkipper``). With packets lost, swapped, repeated (gaps, out-of-order, retransmissions in
    those connections too) and few flows allowed (evictions), the records, their order and the totals are still
    those of one decoder."""
    import random

    rng = random.Random(seed)
    header, records = pcap_records(generated)
    damaged = []
    for record in records:
        roll = rng.random()
        if roll < 0.03:
            continue
        damaged.append(record)
        if roll > 0.97:
            damaged.append(record)
        elif roll > 0.94 and len(damaged) > 1:
            damaged[-1], damaged[-2] = damaged[-2], damaged[-1]
    path = tmp_path_factory.mktemp("damaged") / "damaged.pcap"
    path.write_bytes(header + b"".join(damaged))
    files = expand_inputs([path])
    options = DecodeOptions(keep_closed_tunnels=True, max_flows=max_flows)
    formatter = Formatter(dissect_args(json=True))
    expected, decoder = serial(files, options, formatter)
    run = JobRun(files, options, jobs, Formatter(dissect_args(json=True)))
    assert list(run) == expected
    assert (run.totals.packets, run.totals.last_ts, run.totals.connections) == (
        decoder.packets, decoder.last_ts, decoder.connections)
    assert list(run.totals.tunnels) == list(decoder.tunnels)  # in the order stats lists them


def test_decode_shard_api_shards_add_up_to_one_decoder(generated):
    options = DecodeOptions()
    whole, _ = serial([generated], options)
    shards = [list(decode_shard([generated], k, 3, options)) for k in range(3)]
    assert sum(map(len, shards)) == len(whole) and all(shards)
    merged = list(merge_keyed([decode_shard_keyed([generated], k, 3, options) for k in range(3)]))
    assert [repr(r) for r in merged] == [repr(r) for r in whole]


def test_capture_problems_appear_once_not_once_per_worker(generated, tmp_path):
    data = generated.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    one = mproxy("dissect", "--json", str(cut))
    four = mproxy("dissect", "--json", "--jobs", "4", str(cut))
    assert_clean_error(four, "truncated or damaged capture")
    assert (four.stdout, four.stderr) == (one.stdout, one.stderr)
    stages = [json.loads(line) for line in four.stdout.splitlines() if '"stage": "capture"' in line]
    assert [s["event"] for s in stages] == ["truncated_record"]


def test_a_worker_that_dies_fails_the_run(tmp_path):
    """Kill one worker while both are certainly mid-run (blocked reading a FIFO that never ends): a clear error,
    exit 2, and no worker left behind."""
    process, workers = kill_a_worker(tmp_path, ["dissect", "--json"], 1)
    assert process.returncode == 2
    lines = process.stderr.strip().splitlines()
    assert "Traceback" not in process.stderr
    assert re.fullmatch(rf"mproxy: error: worker [12] of 2 \(pid {workers[1]}\) was killed by signal SIGKILL before "
                        "it finished: the output is incomplete", lines[-1]), lines
    assert process.stdout == ""
    assert not any(alive(pid) for pid in workers)


def test_standard_input_is_decoded_by_one_process():
    capture = CAPTURES / "raw-tcp.pcap"
    result = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "--json", "--jobs", "2", "-"],
                            input=capture.read_bytes(), capture_output=True, check=False)
    assert result.returncode == 0
    assert b"standard input is decoded by one process" in result.stderr
    assert result.stdout.decode() == run_ok("dissect", "--json", str(capture)).stdout
