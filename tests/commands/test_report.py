"""``mproxy report``: the page and PNGs it writes, secrets, empty captures, and output it cannot write."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_run import assert_clean_error, build_sample, mproxy
from tunnel_capture import JWT, Conversation, write_pcap

from mproxy_scapy.errors import UserError
from mproxy_scapy.report import output

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return build_sample(tmp_path_factory.mktemp("report"))


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.found += [f"{tag} {name}={value}" for name, value in attrs if name in ("src", "href", "srcset", "data")]
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def external_references(page: str) -> list[str]:
    """What would make the browser fetch: src/href attributes of any element, url() or @import in styles.

    (The browser test watches the network itself; this checks the page's markup without one.)
    """
    parser = _References()
    parser.feed(page)
    styles = "".join(parser.styles)
    return parser.found + re.findall(r"url\(|@import", styles)


def test_page_and_pngs(tmp_path):
    page, pngs = tmp_path / "report.html", tmp_path / "png"
    result = mproxy("report", str(CAPTURES / "websocket.pcap"), "-o", str(page), "--png", str(pngs))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert external_references(text) == []
    assert "vegaEmbed" in text  # the runtime is inlined
    for fact in ("captures/websocket.pcap", "252 TCP packets", "websocket 1", "IPv6,::1,40910", "echo.example.test",
                 "Unanswered control requests: 1", "No problems", "ECONNREFUSED"):
        assert fact in text, fact
    assert sorted(p.name for p in pngs.iterdir()) == ["control.png", "throughput.png", "timeline.png",
                                                      "top_clients.png"]
    for png in pngs.iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10000
    assert "6 tunneled clients" in result.stderr
    assert list(tmp_path.glob(".*part")) == []


def test_secrets_redacted_unless_asked(sample, tmp_path):
    page = tmp_path / "r.html"
    assert mproxy("report", str(sample), "-o", str(page)).returncode == 0
    text = page.read_text()
    assert JWT not in text and "&lt;redacted&gt;" in text
    assert mproxy("report", str(sample), "-o", str(page), "--show-secrets").returncode == 0
    assert JWT in page.read_text()


def test_problems_table_has_packet_numbers(tmp_path):
    page = tmp_path / "r.html"
    assert mproxy("report", str(CAPTURES / "impaired.pcap"), "-o", str(page)).returncode == 0
    text = page.read_text()
    assert 'id="problems-table"' in text and '<td class="num" data-sort="125">125</td>' in text
    assert "1400 bytes lost at stream offset 69203" in text and 'data-chart="problems"' in text


def test_many_clients_summarised(tmp_path):
    page = tmp_path / "r.html"
    result = mproxy("report", str(CAPTURES / "websocket.pcap"), "-o", str(page), "--max-clients", "2")
    assert result.returncode == 0, result.stderr
    assert "4 less busy clients are not drawn" in page.read_text()
    assert "4 not drawn" in result.stderr


def test_filters_as_dissect(tmp_path):
    page = tmp_path / "r.html"
    result = mproxy("report", str(CAPTURES / "websocket.pcap"), "-o", str(page), "--service", "https")
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert "IPv4,127.0.0.1,35954" in text and "IPv6,::1,40910" not in text
    shown = mproxy("dissect", str(CAPTURES / "websocket.pcap"), "--service", "https").stderr.split()[0]
    assert f"<dt>selected</dt><dd>--service https: {shown} records</dd>" in text  # the records dissect shows
    nobody = mproxy("report", str(CAPTURES / "websocket.pcap"), "-o", str(page), "--client", "192.0.2.1:9")
    assert nobody.returncode == 0, nobody.stderr
    text = page.read_text()
    assert "No tunneled client matches the selection." in text and "No problems in the selected records." in text


def test_empty_capture_says_so(tmp_path):
    empty = write_pcap(tmp_path / "empty.pcap")
    page = tmp_path / "empty.html"
    assert mproxy("report", str(empty), "-o", str(page)).returncode == 0
    text = page.read_text()
    assert 'id="empty"' in text and "holds no TCP packets" in text
    assert 'class="chart"' not in text and "window.vegaEmbed" not in text  # no chart, no runtime


def test_no_mproxy_says_so(tmp_path):
    plain = Conversation()
    plain.handshake()
    plain.packets += plain.segments(0, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", [], plain.start + 0.1)
    capture = write_pcap(tmp_path / "plain.pcap", plain)
    page = tmp_path / "plain.html"
    assert mproxy("report", str(capture), "-o", str(page)).returncode == 0
    assert "No M-PROXY tunnel was found in this capture: 4 TCP packets in 1 TCP connections" in page.read_text()


@pytest.mark.parametrize(("target", "fragment"), [
    ("missing-dir/r.html", "no such directory"),
    (".", "is a directory"),
    ("/proc/mproxy-report.html", "cannot write the report"),
])
def test_unwritable_output(tmp_path, target, fragment):
    path = target if target.startswith("/") else str(tmp_path / target)
    result = mproxy("report", str(CAPTURES / "websocket.pcap"), "-o", path)
    assert_clean_error(result, fragment)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not Path("/proc/mproxy-report.html").exists()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("the old report")

    def fail(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.os, "replace", fail)
    with pytest.raises(UserError, match="No space left on device"):
        output.write_atomic(target, b"<!doctype html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"] and target.read_text() == "the old report"


def test_without_the_report_extra(tmp_path):
    """Without altair (a module that fails to import stands in for it): one line naming the extra."""
    (tmp_path / "altair.py").write_text("raise ImportError('No module named altair')\n")
    result = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "report", str(CAPTURES / "websocket.pcap"),
                             "-o", str(tmp_path / "r.html")], capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert_clean_error(result, "pip install 'mproxy-scapy[report]'")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_past_the_default_limit_the_busiest_are_drawn_and_the_page_stays_small(tmp_path):
    from report.many_clients import many_clients_capture

    capture = many_clients_capture(tmp_path / "many.pcap", 3200)
    page = tmp_path / "many.html"
    result = mproxy("report", str(capture), "-o", str(page))
    assert result.returncode == 0, result.stderr
    assert "3200 tunneled clients, 200 not drawn" in result.stderr
    text = page.read_text()
    assert page.stat().st_size < 5_000_000
    assert "200 less busy clients are not drawn (together 2,100 bytes from and 2,100 bytes to clients)" in text
    assert "198.51.0.1,40000" not in text and "198.51.0.200,40199" not in text  # the 200 least busy
    assert "198.51.0.201,40200" in text and "198.51.12.200,43199" in text


def test_jobs_and_several_inputs(tmp_path):
    """--jobs 2 gives the same page as one process; several inputs are one capture, named in the header."""
    one, two = tmp_path / "one.html", tmp_path / "two.html"
    capture = str(CAPTURES / "websocket.pcap")
    assert mproxy("report", capture, "-o", str(one)).returncode == 0
    assert mproxy("report", capture, "-o", str(two), "--jobs", "2").returncode == 0
    assert one.read_bytes() == two.read_bytes()
    both = tmp_path / "both.html"
    result = mproxy("report", capture, str(CAPTURES / "impaired.pcap"), "-o", str(both))
    assert result.returncode == 0, result.stderr
    assert "12 tunneled clients, 2 tunnels" in result.stderr
    assert "captures/websocket.pcap, " in both.read_text() and "captures/impaired.pcap" in both.read_text()


def test_standard_input(tmp_path):
    page = tmp_path / "stdin.html"
    with (CAPTURES / "websocket.pcap").open("rb") as capture:
        result = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "report", "-", "-o", str(page)],
                                stdin=capture, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "6 tunneled clients" in result.stderr and "IPv6,::1,40910" in page.read_text()


def test_damaged_capture_gives_the_page_of_what_was_decoded_and_fails(tmp_path):
    damaged = tmp_path / "cut.pcap"
    data = (CAPTURES / "websocket.pcap").read_bytes()
    damaged.write_bytes(data[:-100])
    page = tmp_path / "cut.html"
    result = mproxy("report", str(damaged), "-o", str(page))
    assert_clean_error(result, "truncated or damaged capture")
    assert "IPv4,127.0.0.1,53288" in page.read_text()
