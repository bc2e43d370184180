"""``mproxy pack`` and ``mproxy unpack``, run as a user would (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mproxy_scapy.codec import pack

from support import REFERENCE


def mproxy(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)


def test_pack_reproduces_the_reference_output(tmp_path):
    out = tmp_path / "out.bin"
    result = mproxy("pack", str(REFERENCE / "input.json"), str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (REFERENCE / "output.bin").read_bytes()
    assert result.stdout.decode() == f"wrote 255 bytes to '{out}'\n"


def test_pack_names_an_http_body_by_its_host_header(tmp_path):
    (tmp_path / "req.txt").write_bytes(b"GET / HTTP/1.1\r\nhost: Example.TEST:8080\r\n\r\n")
    spec = {"address": {"family": "IPv6", "address": "::1", "port": 5000, "service": "http", "serviceport": 80},
            "filepath": "req.txt"}
    (tmp_path / "in.json").write_text(json.dumps(spec))
    assert mproxy("pack", str(tmp_path / "in.json"), str(tmp_path / "o.bin")).returncode == 0
    assert (tmp_path / "o.bin").read_bytes().startswith(b"\xfe\x25IPv6,::1,5000,43,http,80,example.testGET")


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "not JSON: Expecting property name"),
    ("[1]", "expected a JSON object"),
    ('{"address": {}}', "missing key(s) 'filepath'"),
    ('{"address": 5, "filepath": "x"}', "'address' must be an object"),
    ('{"address": {}, "filepath": "missing.bin"}', "cannot read the body file"),
])
def test_pack_bad_input_is_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    result = mproxy("pack", str(path), str(tmp_path / "o.bin"))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("mproxy: error: ") and message in err and err.count("\n") == 1, err
    assert b"Traceback" not in result.stderr


def test_unpack_lists_frames_and_problems(tmp_path):
    addr = {"family": "IPv4", "address": "10.0.0.1", "port": 7, "service": "http", "serviceport": 80,
            "name": "a\x1b[31mb"}
    stream = tmp_path / "s.bin"
    stream.write_bytes(pack(None, [1, "hello", 254, []], "control") + pack(addr, b"x") + b"junk!")
    result = mproxy("unpack", str(stream))
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == [
        '@0+33 control [1,"hello",254,[]]',
        "@33+36 data IPv4,10.0.0.1,7 http a\\x1b[31mb datalen=1",
        "@69+5 garbage 5 bytes [garbage_skipped: 5 bytes that are not M-PROXY at stream offset 69]",
    ]
    assert result.stderr.decode() == "3 records, 74 bytes\n"


def test_unpack_reads_stdin_and_reports_missing_files():
    result = mproxy("unpack", "-", stdin=(REFERENCE / "readme-example.bin").read_bytes())
    assert result.stdout.decode() == "@0+227 data IPv4,127.0.1.1,443 foo datalen=199\n"
    missing = mproxy("unpack", "/nonexistent/file.bin")
    assert missing.returncode == 2 and missing.stderr.decode() == (
        "mproxy: error: /nonexistent/file.bin: No such file or directory\n")
