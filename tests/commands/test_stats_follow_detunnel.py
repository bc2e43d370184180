"""``mproxy stats``, ``mproxy follow`` and ``mproxy detunnel`` (checked with the real tshark)."""

from __future__ import annotations

import json

import pytest
from cli_run import assert_clean_error, build_sample, mproxy
from tunnel_capture import HTTP_REQUEST, HTTP_RESPONSE, JWT
from wireshark import matrix

from support import REFERENCE


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("cmds"))


def test_stats_json_numbers(sample):
    result = mproxy("stats", str(sample), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    http, tls = summary["sessions"]
    assert (http["client"], http["service"], http["name"], http["serviceport"]) == (
        "IPv4,203.0.113.7,50123", "http", "app.example.test", 8080)
    assert (http["frames_in"], http["frames_out"], http["bytes_in"], http["bytes_out"]) == (
        2, 4, len(HTTP_REQUEST), len(HTTP_RESPONSE))
    assert (http["ended_by"], tls["ended_by"], tls["error"]) == ("end", "error", "connection refused")
    assert tls["bytes_in"] == len((REFERENCE / "sni.hello.bin").read_bytes())
    (tunnel,) = summary["tunnels"]
    assert (tunnel["carrier"], tunnel["sessions"], tunnel["closed"]) == ("tcp", 2, "fin")
    assert summary["carriers"] == {"tcp": 1} and summary["problems"] == {}
    hello = summary["control"][0]
    assert (hello["command"], hello["outcome"]) == ("hello", "ok") and hello["latency"] > 0
    assert [c["command"] for c in summary["unanswered"]] == ["auth", "add_token"]
    assert JWT not in result.stdout


def test_stats_tables(sample):
    result = mproxy("stats", str(sample))
    assert result.returncode == 0, result.stderr
    for text in ("Tunneled connections", "IPv6,2001:db8::42,40443", "pokemap.hellabit.com",
                 "error (connection refused)", "Tunnels", "10.1.0.2:51000 ↔ 10.1.0.1:7443", "no problems",
                 "Control round-trips", "2 control requests unanswered"):
        assert text in result.stdout, text


def test_stats_errors(tmp_path):
    assert_clean_error(mproxy("stats", str(tmp_path / "missing.pcapng")), "no such file")


def test_follow_ascii_masks_secrets(sample):
    result = mproxy("follow", str(sample), "--client", "203.0.113.7:50123")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Follow: mproxy,ascii" in out and "Node 0: 203.0.113.7:50123" in out
    assert "GET /hello?x=1 HTTP/1.1\nHost: app.example.test\nAuthorization: Bearer ****" in out
    assert f"\t{len(HTTP_RESPONSE)}\nHTTP/1.1 200 OK" in out
    assert JWT not in out
    shown = mproxy("follow", str(sample), "--client", "IPv4,203.0.113.7,50123", "--show-secrets")
    assert JWT in shown.stdout


def test_follow_hex_and_raw(sample):
    hexed = mproxy("follow", str(sample), "--client", "[2001:db8::42]:40443", "--format", "hex")
    assert hexed.returncode == 0, hexed.stderr
    assert "00000000  16 03 01" in hexed.stdout
    raw = mproxy("follow", str(sample), "--client", "[2001:db8::42]:40443", "--format", "raw")
    hello = (REFERENCE / "sni.hello.bin").read_bytes()
    assert hello.hex() in raw.stdout


def test_follow_to_files(sample, tmp_path):
    result = mproxy("follow", str(sample), "--client", "203.0.113.7:50123", "-o", str(tmp_path / "out"),
                    "--show-secrets")
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["t1-IPv4_203.0.113.7_50123-1.in.bin", "t1-IPv4_203.0.113.7_50123-1.out.bin"]
    assert (tmp_path / "out" / files[0]).read_bytes() == HTTP_REQUEST
    assert (tmp_path / "out" / files[1]).read_bytes() == HTTP_RESPONSE


def test_follow_unknown_client(sample):
    assert_clean_error(mproxy("follow", str(sample), "--client", "1.2.3.4:5"), "no tunneled client")


def tshark_fields(path, *fields, extra=()):
    command = ["-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", *extra, "-T", "fields"]
    for field in fields:
        command += ["-e", field]
    return [line.split("\t") for line in matrix.reference(command).stdout.splitlines()]


@pytest.mark.tshark
def test_detunnel_output_is_plain_tcp_that_tshark_dissects(sample, tmp_path):
    out = tmp_path / "inner.pcap"
    result = mproxy("detunnel", str(sample), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 tunneled connections" in result.stderr
    requests = tshark_fields(out, "http.request.method", "http.request.uri", "http.host", "ip.src", "tcp.srcport",
                             extra=("-Y", "http.request"))
    assert requests == [["GET", "/hello?x=1", "app.example.test", "203.0.113.7", "50123"]]
    sni = tshark_fields(out, "tls.handshake.extensions_server_name", "ipv6.src",
                        extra=("-Y", "tls.handshake.type == 1", "-d", "tcp.port==8443,tls"))
    assert sni == [["pokemap.hellabit.com", "2001:db8::42"]]
    flags = tshark_fields(out, "tcp.flags.str", "ip.checksum.status", "tcp.checksum.status")
    assert all(row[2] == "2" or row[2] == "1" for row in flags)
    assert all(row[1] in ("", "1", "2") for row in flags)
    bad = tshark_fields(out, "frame.number", extra=("-Y", "tcp.analysis.flags or tcp.checksum.status == 0 "
                                                           "or ip.checksum.status == 0"))
    assert bad == []
    assert sum("R" in row[0] for row in flags) == 1 and sum("F" in row[0] for row in flags) == 2
    assert JWT.encode() not in out.read_bytes()


def requests_and_snis_in(capture):
    """HTTP request lines and TLS SNIs of the tunneled clients' bytes, read by our decoder."""
    from mproxy_scapy.decoder import decode_capture, frames_only
    from mproxy_scapy.sni import client_hello_sni

    requests, names = [], []
    keys = capture.with_suffix(".keys")
    for record in frames_only(decode_capture(capture, tls_keylog=keys if keys.is_file() else None)):
        body = record.frame.body or b""
        if record.frame.kind == "data" and body[:4] in (b"GET ", b"POST"):
            method, uri, _ = body.split(b"\r\n", 1)[0].decode().split(" ", 2)
            requests.append([method, uri])
        elif record.frame.kind == "data" and body[:1] == b"\x16" and client_hello_sni(body):
            names.append(client_hello_sni(body))
    return requests, names


@pytest.mark.tshark
@pytest.mark.parametrize("name", ["websocket.pcap", "raw-tcp.pcap", "wss.pcapng", "reference-js.pcap"])
def test_detunnel_of_each_capture_shows_its_http_requests_and_sni_in_tshark(name, tmp_path):
    from support import CAPTURES

    out = tmp_path / "inner.pcap"
    result = mproxy("detunnel", str(CAPTURES / name), "-o", str(out))
    assert result.returncode == 0, result.stderr
    requests, names = requests_and_snis_in(CAPTURES / name)
    assert requests or names
    seen = tshark_fields(out, "http.request.method", "http.request.uri", extra=("-Y", "http.request"))
    assert sorted(seen) == sorted(requests)
    seen_names = tshark_fields(out, "tls.handshake.extensions_server_name", extra=("-Y", "tls.handshake.type == 1"))
    assert sorted(row[0] for row in seen_names) == sorted(names)


@pytest.mark.tshark
def test_detunnel_on_the_recorded_websocket_capture(tmp_path):
    from support import CAPTURES

    out = tmp_path / "ws-inner.pcap"
    result = mproxy("detunnel", str(CAPTURES / "websocket.pcap"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    suspicious = "(tcp.analysis.flags and not tcp.analysis.reused_ports) or tcp.checksum.status == 0"
    assert tshark_fields(out, "frame.number", extra=("-Y", suspicious)) == []
    assert tshark_fields(out, "tcp.stream", extra=("-Y", "tcp.flags.syn == 1 and tcp.flags.ack == 0"))


def test_detunnel_cannot_write(sample, tmp_path):
    assert_clean_error(mproxy("detunnel", str(sample), "-o", str(tmp_path / "no" / "dir" / "x.pcap")),
                       "cannot write")


def test_stats_counts_the_loss_in_the_impaired_capture():
    from support import CAPTURES

    result = mproxy("stats", str(CAPTURES / "impaired.pcap"), "--json")
    assert result.returncode == 0, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert problems["tcp.gap"] >= 1 and problems["gap"] >= 1
    table = mproxy("stats", str(CAPTURES / "impaired.pcap"))
    assert "a segment was lost" in table.stdout


COMMANDS = (("stats",), ("follow", "--client", "1.2.3.4:5"), ("detunnel", "-o", "OUT"))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_reports_a_missing_file_and_a_non_capture(command, tmp_path):
    args = [a.replace("OUT", str(tmp_path / "o.pcap")) for a in command]
    assert_clean_error(mproxy(args[0], str(tmp_path / "missing.pcap"), *args[1:]), "no such file")
    text = tmp_path / "text.pcap"
    text.write_text("not a capture at all\n")
    assert_clean_error(mproxy(args[0], str(text), *args[1:]), "not a pcap or pcapng file")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_still_reports_what_a_truncated_capture_held(command, sample, tmp_path):
    cut = tmp_path / "cut.pcap"
    data = sample.read_bytes()
    cut.write_bytes(data[: len(data) - 30])
    args = [a.replace("OUT", str(tmp_path / "o.pcap")).replace("1.2.3.4:5", "203.0.113.7:50123") for a in command]
    result = mproxy(args[0], str(cut), *args[1:])
    assert_clean_error(result, "truncated")
    if args[0] == "stats":
        assert "IPv4,203.0.113.7,50123" in result.stdout
    elif args[0] == "follow":
        assert "GET /hello?x=1" in result.stdout
    else:
        assert (tmp_path / "o.pcap").stat().st_size > 100


@pytest.mark.tshark
def test_detunnel_and_follow_show_lost_bytes_as_lost(tmp_path):
    from support import CAPTURES

    out = tmp_path / "impaired-inner.pcap"
    result = mproxy("detunnel", str(CAPTURES / "impaired.pcap"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "left as holes in the TCP sequence space" in result.stderr
    assert len(tshark_fields(out, "frame.number", extra=("-Y", "tcp.analysis.lost_segment"))) == 1
    stats = json.loads(mproxy("stats", str(CAPTURES / "impaired.pcap"), "--json").stdout)
    hit = next(s for s in stats["sessions"] if s["bytes_out"] > 100_000)
    followed = mproxy("follow", str(CAPTURES / "impaired.pcap"), "--client", hit["client"], "--format", "raw")
    assert followed.returncode == 0, followed.stderr
    assert "were lost in the capture or not held" in followed.stderr


@pytest.mark.tshark
def test_detunnel_survives_headers_no_tcp_packet_can_carry(tmp_path):
    from tunnel_capture import simple_tunnel

    from mproxy_scapy.codec import pack

    weird = {"family": "IPv4", "address": "not-an-ip", "port": 99999, "service": "http", "serviceport": 70000}
    stream = pack(weird, b"GET /w HTTP/1.1\r\n\r\n") + pack(dict(weird, address="::1"), b"x") + pack(weird, None, "end")
    path = simple_tunnel(tmp_path / "weird.pcap", stream, b"")
    out = tmp_path / "weird-inner.pcap"
    result = mproxy("detunnel", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    rows = tshark_fields(out, "ip.src", "ipv6.src", "tcp.srcport", "tcp.dstport", extra=("-Y", "tcp.flags.syn == 1 "
                                                                                         "and tcp.flags.ack == 0"))
    assert rows == [["192.0.2.2", "", "0", "80"], ["", "::1", "0", "80"]]


def test_stats_shows_markup_and_escapes_in_names_literally(tmp_path):
    from tunnel_capture import simple_tunnel

    from mproxy_scapy.codec import pack

    hostile = {"family": "IPv4", "address": "192.0.2.9", "port": 1234, "service": "http", "serviceport": 80,
               "name": "[bold red]x[/] \x1b]0;t\x07"}
    path = simple_tunnel(tmp_path / "hostile.pcap", pack(hostile, b"hi"), b"")
    result = mproxy("stats", str(path))
    assert result.returncode == 0, result.stderr
    assert "[bold red]x[/]" in result.stdout and "\x1b" not in result.stdout and "\\x1b]0;t\\x07" in result.stdout
