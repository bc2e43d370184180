"""Many inputs as one capture (mproxy_scapy/inputs.py): discovery, compression, the merge by time, bad inputs."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import zstandard
from cli_run import assert_clean_error, mproxy
from rotation import as_raw_ip, pcap_records, rotate, shifted

from mproxy_scapy.decoder import DecodedFrame
from mproxy_scapy.errors import UserError
from mproxy_scapy.inputs import CAPTURE_NAME, InputSet, decode_inputs, expand_inputs, open_inputs
from mproxy_scapy.parallel import DecodeOptions
from mproxy_scapy.render import frame_ndjson

from support import CAPTURES, REPO


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """8 raw-TCP tunnels, ~200 clients, 1 MB (the benchmark generator, small)."""
    path = tmp_path_factory.mktemp("gen") / "fleet.pcap"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_capture.py"), str(path), "--size-mb", "1"],
                   check=True, capture_output=True)
    return path


def json_lines(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def without_place(records: list[dict]) -> list[dict]:
    """Records without the keys that say where they were read (file, packet number, a request's number)."""
    return [{k: v for k, v in r.items() if k not in ("pcap_file", "pcap_frame", "reply_to")} for r in records]


@pytest.mark.parametrize("name", ["relay.pcap", "relay.pcap12", "x.pcapng", "a.cap", "r.pcap.gz", "r.pcap3.zst",
                                  "r-2026120105.PCAP"])
def test_capture_names_found_in_directories(name):
    assert CAPTURE_NAME.search(name)


@pytest.mark.parametrize("name", ["notes.txt", "relay.pcap.txt", "x.pcap.bz2", "keys.keys"])
def test_other_names_are_not(name):
    assert not CAPTURE_NAME.search(name)


def test_directories_are_searched_recursively_in_sorted_order(tmp_path):
    for rel in ("b/relay.pcap1", "b/relay.pcap", "a/x.pcapng", "a/deeper/y.cap.gz", "a/notes.txt"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    names = [Path(f.name).relative_to(tmp_path).as_posix() for f in expand_inputs([tmp_path])]
    assert names == ["a/x.pcapng", "a/deeper/y.cap.gz", "b/relay.pcap", "b/relay.pcap1"]


def test_a_file_named_twice_is_read_once(tmp_path):
    path = CAPTURES / "raw-tcp.pcap"
    assert len(expand_inputs([path, path, CAPTURES / ".." / "captures" / "raw-tcp.pcap"])) == 1


def test_an_unreadable_directory_is_an_error():
    """A folder the user may not list fails the run (exit 2), rather than being left out of it silently.

    Root lists every folder, so as root the command runs as ``nobody`` (setpriv).
    """
    top = Path(tempfile.mkdtemp(prefix="mproxy-unreadable-"))
    try:
        top.chmod(0o755)
        (top / "relay.pcap").write_bytes((CAPTURES / "raw-tcp.pcap").read_bytes())
        (top / "relay.pcap").chmod(0o644)
        locked = top / "locked"
        locked.mkdir()
        locked.chmod(0)
        command = [sys.executable, "-m", "mproxy_scapy.cli", "dissect", str(top)]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=top,
                                env={**os.environ, "HOME": str(top)})
        assert_clean_error(result, f"{locked}: cannot read directory: Permission denied")
    finally:
        locked.chmod(0o755)
        shutil.rmtree(top)


def test_rotated_files_read_as_one_capture(generated, tmp_path):
    """A rotation cuts tunnels mid-stream: they go on, as on the single file (no gap, no second tunnel)."""
    _, records = pcap_records(generated)
    pieces = rotate(generated, tmp_path / "rot", [len(records) // 5, len(records) // 2, len(records) - 7])
    whole = json_lines(mproxy("dissect", "--json", str(generated)))
    rotated = json_lines(mproxy("dissect", "--json", str(tmp_path / "rot")))
    assert without_place(rotated) == without_place(whole)
    # each record's file and packet number is the same packet as in the whole file
    firsts = {}
    count = 0
    for piece in pieces:
        firsts[str(piece)] = count
        count += len(pcap_records(piece)[1])
    assert [firsts[r["pcap_file"]] + r["pcap_frame"] for r in rotated] == [r["pcap_frame"] for r in whole]
    assert not any(r["problems"] for r in rotated)
    stats_whole = json.loads(mproxy("stats", "--json", str(generated)).stdout)
    stats_rotated = json.loads(mproxy("stats", "--json", *map(str, reversed(pieces))).stdout)
    for key in ("packets", "connections", "tunnels", "sessions", "problems", "carriers"):
        assert stats_rotated[key] == stats_whole[key], key


def test_compressed_members_and_the_single_file_output_unchanged(generated, tmp_path):
    _, records = pcap_records(generated)
    _plain, zipped, zstd = rotate(generated, tmp_path, [len(records) // 3, 2 * len(records) // 3])
    zipped.with_name("relay.pcap1.gz").write_bytes(gzip.compress(zipped.read_bytes()))
    zipped.unlink()
    zstd.with_name("relay.pcap2.zst").write_bytes(zstandard.ZstdCompressor().compress(zstd.read_bytes()))
    zstd.unlink()
    whole = json_lines(mproxy("dissect", "--json", str(generated)))
    assert "pcap_file" not in whole[0]
    mixed = json_lines(mproxy("dissect", "--json", str(tmp_path)))
    assert without_place(mixed) == without_place(whole)
    assert {Path(r["pcap_file"]).name for r in mixed} == {"relay.pcap", "relay.pcap1.gz", "relay.pcap2.zst"}
    alone = mproxy("dissect", "--json", str(tmp_path / "relay.pcap2.zst"))
    assert alone.returncode == 0 and "pcap_file" not in alone.stdout


def test_overlapping_relays_merge_by_time_as_mergecap_does(tmp_path):
    """Two relays' captures at overlapping times: the same records as ``mergecap`` then ``mproxy``."""
    first = CAPTURES / "raw-tcp.pcap"
    second = shifted(CAPTURES / "websocket.pcap", tmp_path / "relay-b.pcap", 0)
    _, a_records = pcap_records(first)
    _, b_records = pcap_records(second)
    start = lambda records: int.from_bytes(records[0][:4], "little")  # noqa: E731
    second = shifted(CAPTURES / "websocket.pcap", tmp_path / "relay-b.pcap", start(a_records) - start(b_records))
    merged = tmp_path / "merged.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(merged), str(first), str(second)], check=True)
    by_mergecap = json_lines(mproxy("dissect", "--json", str(merged)))
    by_us = json_lines(mproxy("dissect", "--json", str(first), str(second)))
    assert without_place(by_us) == without_place(by_mergecap)
    assert {r["pcap_file"] for r in by_us} == {str(first), str(second)}
    files = [r["pcap_file"] for r in by_us]
    assert files.index(str(second)) < len(files) - 1 - files[::-1].index(str(first))  # interleaved, not one then other


def test_different_link_types_mix(tmp_path):
    ethernet = CAPTURES / "raw-tcp.pcap"
    raw_ip = as_raw_ip(CAPTURES / "go-dialect.pcap", tmp_path / "go-raw-ip.pcap")
    alone = [json_lines(mproxy("dissect", "--json", str(p))) for p in (ethernet, raw_ip)]
    both = json_lines(mproxy("dissect", "--json", str(ethernet), str(raw_ip)))
    assert len(both) == len(alone[0]) + len(alone[1])
    assert {r["carrier"] for r in both} == {"tcp"} and not any(r["problems"] for r in both)


def test_a_file_that_is_not_a_capture_among_many_is_reported_and_skipped(tmp_path):
    notes = tmp_path / "notes.pcap"
    notes.write_text("not a capture\n")
    result = mproxy("dissect", "--json", str(CAPTURES / "raw-tcp.pcap"), str(notes))
    records = json_lines(result)
    stage = [r for r in records if r["kind"] == "stage"]
    assert [(s["event"], s["pcap_file"]) for s in stage] == [("not_a_capture", str(notes))]
    assert f"mproxy: {notes}: not a pcap or pcapng file" in result.stderr and "skipped" in result.stderr
    assert sum(r["kind"] != "stage" for r in records) == len(json_lines(mproxy("dissect", "--json",
                                                                              str(CAPTURES / "raw-tcp.pcap"))))


def test_none_of_several_inputs_is_a_capture(tmp_path):
    for name in ("a.pcap", "b.pcap"):
        (tmp_path / name).write_text("text")
    assert_clean_error(mproxy("dissect", str(tmp_path)), "none of the 2 inputs is a pcap or pcapng capture")


def test_a_truncated_gzip_member_fails_the_run(generated, tmp_path):
    _, records = pcap_records(generated)
    first, _second = rotate(generated, tmp_path, [len(records) // 2])
    packed = gzip.compress(first.read_bytes())
    first.with_name("relay.pcap.gz").write_bytes(packed[: len(packed) // 2])
    first.unlink()
    result = mproxy("dissect", "--json", str(tmp_path))
    assert_clean_error(result, "relay.pcap.gz: truncated or damaged capture")


def test_a_file_that_vanishes_during_the_run_fails_it(generated, tmp_path):
    _, records = pcap_records(generated)
    pieces = rotate(generated, tmp_path, [len(records) // 2])
    inputs = open_inputs([tmp_path])
    items = iter(inputs)
    next(items)  # every input was looked at; the second is opened when the merge reaches it
    pieces[1].unlink()
    with pytest.raises(UserError, match=r"relay\.pcap1: could be read at the start but not now"):
        list(items)


def test_api_labels_records_with_their_file(generated, tmp_path):
    _, records = pcap_records(generated)
    rotate(generated, tmp_path, [100])
    inputs = open_inputs([tmp_path])
    assert isinstance(inputs, InputSet) and inputs.several
    decoded = list(decode_inputs(inputs, DecodeOptions().make_decoder()))
    assert {Path(r.pcap_file).name for r in decoded} == {"relay.pcap", "relay.pcap1"}
    assert all(0 < r.pcap_frame <= len(records) for r in decoded if r.pcap_frame is not None)
    first_frame = next(r for r in decoded if isinstance(r, DecodedFrame))
    assert frame_ndjson(first_frame).startswith(f'{{"pcap_file": "{tmp_path}/relay.pcap", "pcap_frame": ')
    assert inputs.bytes_done() == inputs.bytes_total()


def test_standard_input_is_read_without_seeking(tmp_path):
    """``cat FILE | mproxy dissect -`` (a pipe: no seek, no size) gives the file's output; gzip works there too."""
    capture = CAPTURES / "wss.pcapng"
    by_file = mproxy("dissect", "--json", str(capture), "--tls-keylog", str(CAPTURES / "wss.keys"))
    for data in (capture.read_bytes(), gzip.compress(capture.read_bytes())):
        piped = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "--json", "-", "--tls-keylog",
                                str(CAPTURES / "wss.keys")], input=data, capture_output=True, check=False)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout.decode() == by_file.stdout


def test_standard_input_on_a_terminal_is_an_error():
    import pty

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "stats", "-"], stdin=terminal,
                                capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(controller)
        os.close(terminal)
    assert_clean_error(result, "standard input, but it is a terminal: pipe a capture in")
