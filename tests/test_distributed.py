"""Shards on a real Dask cluster of worker processes give what one decoder gives.

A ``distributed.LocalCluster`` with two worker processes (not threads, not the
synchronous scheduler): ``read_frames`` is the serial export's frames table,
``mproxy stats --json --scheduler`` prints byte for byte what ``mproxy stats
--json`` prints, and ``mproxy export --scheduler`` writes the same rows. Once
more through a real ``dask scheduler`` and ``dask worker`` on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_run import assert_clean_error, mproxy
from distributed import Client, LocalCluster

from mproxy_scapy.distributed import frames_meta, read_frames
from mproxy_scapy.export_schema import TABLES
from mproxy_scapy.parallel import DecodeOptions

from support import CAPTURES, REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as local:
        yield local


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """8 tunnels, 201 clients, control replies to no request: shards get tunnels of their own."""
    path = tmp_path_factory.mktemp("gen") / "fleet.pcap"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_capture.py"), str(path), "--size-mb", "3",
                    "--carrier", "websocket"], check=True, capture_output=True)
    return path


def capture_path(name: str, generated: Path) -> Path:
    return generated if name == "generated" else CAPTURES / name


def rows(folder: Path) -> list[dict]:
    """A table's rows from all its parts, in one order whatever the parts."""
    return sorted(pq.read_table(folder).to_pylist(), key=repr)


def test_workers_are_processes(cluster):
    with Client(cluster) as client:
        pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


@pytest.mark.parametrize("name", ["wss.pcapng", "impaired.pcap", "generated"])
def test_read_frames_is_the_serial_frames_table(cluster, generated, name, tmp_path):
    capture = capture_path(name, generated)
    serial = tmp_path / "serial"
    assert mproxy("export", str(capture), "-o", str(serial)).returncode == 0
    keylog = capture.with_suffix(".keys")
    options = DecodeOptions(keylog=str(keylog) if keylog.is_file() else None)
    with Client(cluster):
        frames = read_frames([capture], shards=2, options=options)
        assert frames.npartitions == 2
        assert list(frames.dtypes) == list(frames_meta().dtypes)
        parts = [frames.get_partition(k).compute() for k in range(2)]
    expected = pq.read_table(serial / "frames").to_pandas(types_mapper=pd.ArrowDtype)
    together = pd.concat(parts, ignore_index=True)
    key = ["tunnel", "direction", "offset"]
    pd.testing.assert_frame_equal(together.sort_values(key, ignore_index=True),
                                  expected.sort_values(key, ignore_index=True))
    if name == "generated":
        assert all(len(part) for part in parts), "both shards should hold tunnels of the 8"
        assert not set(parts[0]["tunnel"]) & set(parts[1]["tunnel"])


@pytest.mark.parametrize("name", ["wss.pcapng", "impaired.pcap", "generated"])
def test_stats_on_the_cluster_prints_what_one_decoder_prints(cluster, generated, name):
    capture = capture_path(name, generated)
    serial = mproxy("stats", "--json", str(capture))
    sharded = mproxy("stats", "--json", "--scheduler", cluster.scheduler_address, "--jobs", "3", str(capture))
    assert serial.returncode == 0 and sharded.returncode == 0, sharded.stderr
    assert sharded.stdout == serial.stdout


@pytest.mark.parametrize("name", ["websocket.pcap", "impaired.pcap", "generated"])
def test_export_on_the_cluster_writes_the_serial_rows(cluster, generated, name, tmp_path):
    capture = capture_path(name, generated)
    serial, sharded = tmp_path / "serial", tmp_path / "sharded"
    assert mproxy("export", str(capture), "-o", str(serial)).returncode == 0
    result = mproxy("export", str(capture), "-o", str(sharded), "--scheduler", cluster.scheduler_address)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (sharded / "frames").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    for table in TABLES:
        assert rows(sharded / table) == rows(serial / table), table


def test_a_damaged_input_fails_the_cluster_run_and_writes_nothing(cluster, tmp_path):
    data = (CAPTURES / "websocket.pcap").read_bytes()
    truncated = tmp_path / "truncated.pcap"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    result = mproxy("export", str(truncated), "-o", str(out), "--scheduler", cluster.scheduler_address)
    assert_clean_error(result, "truncated or damaged capture")
    assert not out.exists()


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_real_dask_scheduler_and_worker_processes(generated, tmp_path):
    """``dask scheduler`` and ``dask worker`` as a cluster operator starts them, on 127.0.0.1 only."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    assert dask, "the dask command comes with the dask extra"
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    started = []
    try:
        started.append(subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        wait_for(scheduler_file, 60)
        started.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2",
                                         "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        with Client(scheduler_file=str(scheduler_file)) as client:
            client.wait_for_workers(2, timeout=60)
            address = client.scheduler.address
        serial = mproxy("stats", "--json", str(generated))
        sharded = mproxy("stats", "--json", "--scheduler", address, str(generated))
        assert sharded.returncode == 0, sharded.stderr
        assert sharded.stdout == serial.stdout
        out = tmp_path / "out"
        assert mproxy("export", str(generated), "-o", str(out), "--scheduler", address).returncode == 0
        assert pq.read_table(out / "clients").num_rows == 201
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
