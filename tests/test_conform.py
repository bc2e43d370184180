"""``mproxy conform``'s engine: our codec's adapter agrees, each broken packer fails where and how it should."""

from __future__ import annotations

import base64
import json
import sys

import pytest

from mproxy_scapy import conform
from mproxy_scapy.codec import pack_header
from mproxy_scapy.conform.cases import name_for_header
from mproxy_scapy.conform.engine import random_phase
from mproxy_scapy.conform.packer import PackerFailure, PackerProcess
from mproxy_scapy.conform.report import hexdiff, report_text
from mproxy_scapy.conform.shrink import ShrinkAborted

from support import REFERENCE, REPO

CODEC_ADAPTER = f"{sys.executable} {REPO / 'examples' / 'conform' / 'mproxy_codec.py'}"
BROKEN = REPO / "tests" / "broken_packer.py"


def broken(mode: str) -> str:
    return f"{sys.executable} {BROKEN} {mode}"


def test_our_codec_adapter_agrees_on_every_case_including_16_mib():
    report = conform.run(CODEC_ADAPTER, examples=25, seed=1, timeout=30)
    assert not report.failed, report_text(report)
    assert {r.status for r in report.results} == {"pass"}
    assert "pack: 16 MiB body" in {r.case.name for r in report.results}
    assert report.random_run == 25 and report.starts == 1


def test_the_named_cases_are_the_reference_vectors_then_edge_cases():
    cases = conform.named_cases(large=False)
    vectors = [c for c in cases if c.group == "vectors"]
    assert len(vectors) == 19  # 17 vectors, test/pack.js, the vectors' stream unpacked
    assert conform.expected_wire(vectors[17].request) == (REFERENCE / "output.bin").read_bytes()
    for case, vector in zip(vectors, json.loads((REFERENCE / "vectors.json").read_text()), strict=False):
        # a packHeader vector's wire is the header and the body a relay writes after it
        assert conform.stream_of([case.request]) == bytes.fromhex(vector["wire_hex"]), case.name
    names = {c.name for c in cases}
    assert {"pack: body missing (padded to one space)", "packHeader: no body (datalen 0)", "pack: IPv6 client",
            "pack: non-ASCII name", "pack: name pushing the header to 256 bytes (hdrlen wraps to 0)",
            "pack: control hello", "pack: JSON object body", "pack: 1-byte body", "pack: 64 KiB body",
            "unpack: the vectors one byte at a time"} <= names


# each broken packer: (behaviour broken, first case that shows it, its minimal input)
BROKEN_EXPECTED = {
    "no-padding": ("PP05", "vector: pack connection (oldways pads a space)", {"op": "pack", "meta": {}}),
    "go-dialect": ("PP10", "vector: pack data https", {"op": "pack", "meta": {}}),
    "datalen-chars": ("PP04", "vector: pack data https",
                      {"op": "pack", "meta": {}, "body": {"base64": base64.b64encode(b"\xdf\x99").decode()}}),
    "hdrlen-unwrapped": ("PP02", "pack: name pushing the header to 256 bytes (hdrlen wraps to 0)",
                         {"op": "pack", "meta": {"family": "IPv4", "address": "127.0.1.1", "port": 1000,
                                                 "service": "https", "serviceport": 100,
                                                 "name": name_for_header(256, conform.BASE_META, 1)}}),
}


@pytest.mark.parametrize("mode", sorted(BROKEN_EXPECTED))
def test_broken_packer_fails_on_the_expected_case_with_the_minimal_input(mode):
    behaviour, case, minimal = BROKEN_EXPECTED[mode]
    report = conform.run(broken(mode), examples=0, seed=0, timeout=30, large=False)
    assert report.failed
    assert [d.behaviour for d in report.divergences] == [behaviour]
    divergence = report.divergences[0]
    assert (divergence.case, divergence.request) == (case, minimal)
    assert divergence.steps > 0 and divergence.original != divergence.request
    text = report_text(report)
    assert f"divergence 1/1: {behaviour}" in text and "verdict: FAIL: 1 divergence" in text


def test_minimal_wrapping_header_is_exactly_256_bytes():
    meta = BROKEN_EXPECTED["hdrlen-unwrapped"][2]["meta"]
    assert len(pack_header(meta, None, None, oldways=True)) - 2 == 256


def test_datalen_in_characters_is_caught_on_one_two_byte_character():
    body = base64.b64decode(BROKEN_EXPECTED["datalen-chars"][2]["body"]["base64"])
    assert len(body) == 2 and len(body.decode("utf-8")) == 1


def test_random_phase_is_seeded_and_shrunk_by_hypothesis():
    """With no named cases, the random cases find the padding bug alone and Hypothesis shrinks it."""
    found = []
    for _ in range(2):
        report = conform.Report(broken("no-padding"), examples=60, seed=7)
        with PackerProcess(report.command, timeout=30) as packer:
            random_phase(packer, report, 60, 7, None)
        found.append([(d.behaviour, d.request) for d in report.divergences])
    assert found[0] == found[1]
    assert found[0][0] == ("PP05", {"op": "pack", "meta": {}})


def test_a_hanging_packer_times_out_and_is_stopped(tmp_path):
    with PackerProcess(broken("hang"), timeout=0.5) as packer:
        assert "wire" in packer.request({"op": "pack", "meta": {}})
        child = packer._proc
        with pytest.raises(PackerFailure) as failure:
            packer.request({"op": "packHeader", "meta": {}})
        assert failure.value.kind == "timeout" and "did not answer within 0.5 s" in str(failure.value)
        assert child is not None and child.poll() is not None  # we stopped the child we started
        assert "wire" in packer.request({"op": "pack", "meta": {}})  # started afresh
        assert packer.starts == 2


def test_a_crashing_packer_is_shown_with_its_stderr():
    report = conform.run(broken("crash"), examples=0, seed=0, timeout=10, large=False)
    divergence = report.divergences[0]
    assert (divergence.behaviour, divergence.failure) == ("PP14", "exited")
    assert "cannot pack a control frame" in divergence.stderr
    assert report.gave_up == "5 cases in a row without a proper answer"
    assert "packer's stderr:" in report_text(report)


def test_a_packer_answering_garbage_fails_its_unpack_cases():
    report = conform.run(broken("garbage"), examples=0, seed=0, timeout=10, large=False)
    assert [(d.behaviour, d.failure, d.case) for d in report.divergences] == [
        ("PP14", "garbage", "vector: unpack the vectors' stream whole")]
    assert "not a JSON line" in report.divergences[0].detail


def test_a_packer_that_does_not_unpack_skips_those_cases(tmp_path):
    script = tmp_path / "no_unpack.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(REPO / 'examples' / 'conform')!r})\n"
        "import mproxy_codec\n"
        "for line in sys.stdin:\n"
        "    request = json.loads(line)\n"
        "    try:\n"
        "        reply = {'unsupported': True} if request['op'] == 'unpack' else mproxy_codec.answer(request)\n"
        "    except Exception as exc:\n"
        "        reply = {'error': str(exc)}\n"
        "    print(json.dumps(reply), flush=True)\n")
    report = conform.run(f"{sys.executable} {script}", examples=10, seed=0, timeout=10, large=False)
    assert not report.failed and not report.unpack_supported
    skipped = [r.case.name for r in report.results if r.status == "skip"]
    assert skipped and all("unpack" in name for name in skipped)
    assert "skipped (the packer does not unpack)" in report_text(report)


def test_shrink_keeps_the_smallest_failing_request():
    request = {"op": "pack", "meta": {"family": "IPv4", "name": "x" * 40, "port": 4321}, "body": {"json": [1, 2]},
               "service": "end"}
    smallest, steps = conform.shrink(request, lambda r: len(r.get("meta", {}).get("name", "")) >= 5)
    assert smallest == {"op": "pack", "meta": {"name": "xxxxx"}}
    assert steps > 0


def test_hexdiff_marks_the_differing_bytes():
    text = hexdiff(b"\xfe\x07,,,1,,, ", b"\xfe\x07,,,0,,,")
    lines = text.splitlines()
    assert lines[1].split()[:2] == ["00000000", "fe"]
    assert lines[2].count("^^") == 3  # datalen in both, the missing padding byte


def test_the_packaged_reference_vectors_are_the_suites():
    """mproxy conform ships its own copy (an installed package has no tests/); it must not drift."""
    for path in conform.REFERENCE_DATA.iterdir():
        assert path.read_bytes() == (REFERENCE / path.name).read_bytes(), path.name
    assert sorted(p.name for p in conform.REFERENCE_DATA.iterdir()) == [
        "input.json", "output.bin", "sni.hello.bin", "vectors.json"]


def test_a_packer_that_never_reads_its_stdin_cannot_block_us():
    """A 4 MiB request fills the pipe: the write itself must time out, not hang."""
    sleeper = f"{sys.executable} -c \"import time; time.sleep(60)\""
    with PackerProcess(sleeper, timeout=0.5) as packer:
        with pytest.raises(PackerFailure) as failure:
            packer.request({"op": "pack", "meta": {}, "body": {"base64": "A" * (4 << 20)}})
        assert failure.value.kind == "timeout" and "did not read the request" in failure.value.detail
        assert packer._proc is None


def test_shrinking_stops_at_the_smallest_so_far_when_the_packer_gives_up():
    def still_fails(request):
        if "body" not in request:
            raise ShrinkAborted
        return True

    request = {"op": "pack", "meta": {"name": "abc"}, "body": {"json": 1}}
    assert conform.shrink(request, still_fails) == ({"op": "pack", "meta": {"name": "abc"}, "body": {"json": 1}}, 0)
