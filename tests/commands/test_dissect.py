"""``mproxy dissect``: text lines, NDJSON, filters, --scapy, secrets, the default capture, every error path."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest
from cli_run import assert_clean_error, build_sample, mproxy
from tunnel_capture import HTTP_CLIENT, HTTP_REQUEST, JWT, Conversation, write_pcap

from mproxy_scapy.codec import pack
from mproxy_scapy.render import FRAME_KEYS

KINDS_IN_ORDER = ["control", "connection", "data", "connection", "data", "control",
                  "control", "control", "pause", "resume", "data", "end", "error", "control"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("dissect"))


def json_records(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_json_has_every_contract_key_and_the_frames_in_order(sample):
    records = json_records(mproxy("dissect", str(sample), "--json"))
    assert [r["kind"] for r in records] == KINDS_IN_ORDER
    for record in records:
        assert set(FRAME_KEYS) <= set(record)
        assert record["carrier"] == "tcp" and record["tunnel"] == 1 and record["problems"] == []
    relay_to_device = [r for r in records if r["direction"] == 1]
    assert {(r["src"], r["dst"]) for r in relay_to_device} == {("10.1.0.1:7443", "10.1.0.2:51000")}
    offsets = [(r["offset"], r["length"]) for r in relay_to_device]
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(offsets))
    hello = records[0]
    assert hello["control"] == [1, "hello", 254, ["add_token", "delete_token"]]
    assert hello["pcap_frame"] == 4  # the first 90-byte segment after the handshake holds all of it


def test_control_replies_carry_the_request_frame_and_latency(sample):
    records = json_records(mproxy("dissect", str(sample), "--json", "--kind", "control"))
    reply = next(r for r in records if r["control"] == [-1, None])
    assert reply["reply_to"] == records[0]["pcap_frame"] and reply["reply_time"] > 0


def test_secrets_are_redacted_unless_asked(sample):
    for args in (("--json",), ()):
        result = mproxy("dissect", str(sample), *args)
        assert result.returncode == 0
        assert JWT not in result.stdout and "<redacted>" in result.stdout
    shown = mproxy("dissect", str(sample), "--json", "--show-secrets")
    assert [2, "auth", JWT] in [r.get("control") for r in json_records(shown)]


def test_text_lines_read_like_tshark(sample):
    result = mproxy("dissect", str(sample))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(KINDS_IN_ORDER)
    number, time, src, arrow, dst, tunnel, kind, client, where, datalen = lines[2].split()
    assert (src, arrow, dst, tunnel, kind) == ("10.1.0.1:7443", "→", "10.1.0.2:51000", "t1←", "data")
    assert (client, where, datalen) == ("IPv4,203.0.113.7,50123", "http/app.example.test",
                                        f"datalen={len(HTTP_REQUEST)}")
    assert int(number) >= 5 and float(time) > 0
    assert "14 records shown, 1 tunnels" in result.stderr
    error = 'error IPv6,2001:db8::42,40443 pokemap.hellabit.com datalen=48 {"message": "connection refused", '
    assert error in lines[12]


@pytest.mark.parametrize(("args", "count"), [
    (("--kind", "end"), 1),
    (("--client", "203.0.113.7:50123"), 6),
    (("--client", "IPv6,2001:db8::42,40443"), 3),
    (("--client", "[2001:db8::42]:40443"), 3),
    (("--service", "https"), 2),
    (("--name", "app.example.test"), 6),
    (("--problems-only",), 0),
])
def test_filters(sample, args, count):
    records = json_records(mproxy("dissect", str(sample), "--json", *args))
    assert len(records) == count


def test_problems_only_shows_the_gap_and_its_tcp_report(tmp_path):
    stream = b"".join(pack(HTTP_CLIENT, bytes([65 + i]) * 50) for i in range(6))
    conversation = Conversation()
    conversation.handshake()
    segments = conversation.segments(1, stream, range(100, len(stream), 100), conversation.start + 1)
    del segments[2]
    conversation.packets += segments
    conversation.close((0, len(stream)), conversation.start + 2)
    path = write_pcap(tmp_path / "gap.pcap", conversation)
    records = json_records(mproxy("dissect", str(path), "--json", "--problems-only"))
    kinds = [p["kind"] for r in records for p in r["problems"]]
    assert "tcp.gap" in kinds and "gap" in kinds
    everything = json_records(mproxy("dissect", str(path), "--json"))
    assert sum(1 for r in everything if r["kind"] == "data" and not r["problems"]) >= 3


def test_scapy_view(sample):
    result = mproxy("dissect", str(sample), "--scapy", "--kind", "connection")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("###[") >= 2 and "app.example.test" in result.stdout


def test_hostile_header_text_is_escaped(tmp_path):
    hostile = dict(HTTP_CLIENT, name="evil\x1b[2Jname")
    path = tmp_path / "hostile.pcap"
    from tunnel_capture import simple_tunnel

    simple_tunnel(path, pack(hostile, b"x"), b"")
    result = mproxy("dissect", str(path))
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "evil\\x1b[2Jname" in result.stdout


def test_default_is_the_bundled_capture():
    result = mproxy("dissect", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and {r["carrier"] for r in records if r["kind"] != "stage"} == {"websocket"}


def test_missing_file(tmp_path):
    assert_clean_error(mproxy("dissect", str(tmp_path / "nope.pcap")), "no such file")


def test_a_directory_without_captures(tmp_path):
    (tmp_path / "notes.txt").write_text("not a capture")
    assert_clean_error(mproxy("dissect", str(tmp_path)), "no capture files")


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n" * 3])
def test_not_a_capture(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert_clean_error(mproxy("dissect", str(path)), "not a pcap or pcapng file")


def test_truncated_capture_prints_what_it_decoded(sample, tmp_path):
    data = sample.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = mproxy("dissect", str(cut))
    assert_clean_error(result, "truncated")
    assert len(result.stdout.splitlines()) >= 5


def test_unsupported_link_type(sample, tmp_path):
    data = bytearray(sample.read_bytes())
    struct.pack_into("<I", data, 20, 147)  # LINKTYPE_USER0
    path = tmp_path / "user0.pcap"
    path.write_bytes(data)
    assert_clean_error(mproxy("dissect", str(path)), "link type 147")


def test_no_permission_to_read(sample, tmp_path):
    locked = tmp_path / "locked.pcap"
    locked.write_bytes(sample.read_bytes())
    locked.chmod(0)
    result = as_unprivileged(f"{sys.executable} -m mproxy_scapy.cli dissect {locked}",
                             drop="cap_dac_override,cap_dac_read_search")
    assert_clean_error(result, "permission denied")


def as_unprivileged(command: str, drop: str) -> subprocess.CompletedProcess:
    """Run ``command`` as root without the capabilities in ``drop`` (what an ordinary user lacks).

    capsh lives in /sbin, off the PATH of a user who became root with ``su``
    and of ``PATH=/usr/bin:/bin``: it is looked for there too.
    """
    capsh = shutil.which("capsh", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if capsh is None:
        pytest.fail("capsh is needed to drop capabilities (apt-get install libcap2-bin; make test installs it)")
    return subprocess.run([capsh, f"--drop={drop}", "--", "-c", command], capture_output=True, text=True,
                          timeout=60, check=False)


def test_no_permission_for_live_capture():
    result = as_unprivileged(f"{sys.executable} -m mproxy_scapy.cli dissect -i lo", drop="cap_net_raw")
    assert_clean_error(result, "needs root or the CAP_NET_RAW capability")


def test_no_such_interface():
    assert_clean_error(mproxy("dissect", "-i", "nosuchif0"), "no such network interface")


def test_file_and_interface_together(sample):
    assert_clean_error(mproxy("dissect", str(sample), "-i", "lo"), "either INPUT or -i")


def test_progress_bar_on_a_terminal_for_big_files(tmp_path):
    import os
    import pty

    from tunnel_capture import simple_tunnel

    body = bytes(range(97, 123)) * 600
    stream = b"".join(pack(HTTP_CLIENT, body) for _ in range(1200))
    path = simple_tunnel(tmp_path / "big.pcap", stream, b"", chunk=16000)
    assert path.stat().st_size >= 16 * 1024 * 1024
    master, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "--json", str(path)],
                            stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    assert proc.wait(timeout=120) == 0
    assert b"decoding big.pcap" in shown and b"1200 records shown" in shown
    piped = mproxy("dissect", "--json", str(path))
    assert "decoding" not in piped.stderr


def test_scapy_view_keeps_secrets_hidden(sample):
    result = mproxy("dissect", str(sample), "--scapy", "--kind", "control")
    assert result.returncode == 0, result.stderr
    assert "M-PROXY control" in result.stdout and JWT not in result.stdout
