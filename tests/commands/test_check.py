"""``mproxy check``: table, --json, --junit, --fail-on, --rule/--ignore, exit statuses."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from cli_run import assert_clean_error, build_sample, mproxy
from tunnel_capture import HTTP_CLIENT, simple_tunnel

from mproxy_scapy.codec import pack
from mproxy_scapy.rules import RULES

from support import CAPTURES, REPO

WEBSOCKET = str(CAPTURES / "websocket.pcap")


def test_bundled_capture_passes_with_a_table_of_its_findings():
    result = mproxy("check", WEBSOCKET)
    assert result.returncode == 0, result.stderr
    assert "MPX405" in result.stdout and "MPX406" in result.stdout and "list_tokens" in result.stdout
    assert "2 findings (0 error, 1 warning, 1 info)" in result.stderr and "pass (--fail-on error)" in result.stderr


def test_fail_on_sets_the_exit_status():
    assert mproxy("check", WEBSOCKET, "--fail-on", "warning").returncode == 1
    assert mproxy("check", WEBSOCKET, "--fail-on", "info", "--ignore", "MPX405,MPX406").returncode == 0


def test_json_is_one_object_per_finding():
    result = mproxy("check", WEBSOCKET, "--json")
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["rule"] for f in findings] == ["MPX406", "MPX405"]
    assert set(findings[0]) == {"rule", "severity", "title", "detail", "pcap_file", "pcap_frame", "ts", "tunnel",
                                "direction", "src", "dst", "client"}
    assert findings[0]["pcap_file"] is None  # one input
    assert findings[1]["severity"] == "warning" and findings[1]["pcap_frame"] == 8


def test_rule_selects_and_unknown_ids_are_usage_errors():
    result = mproxy("check", WEBSOCKET, "--json", "--rule", "mpx406")
    assert [json.loads(line)["rule"] for line in result.stdout.splitlines()] == ["MPX406"]
    assert_clean_error(mproxy("check", WEBSOCKET, "--rule", "MPX999"), "unknown rule id(s) MPX999")


def test_junit_has_one_case_per_rule_and_fails_the_broken_ones(tmp_path):
    to_device = pack(HTTP_CLIENT, None, "connection") + pack(HTTP_CLIENT, None, "end") + pack(HTTP_CLIENT, b"late")
    capture = simple_tunnel(tmp_path / "late.pcap", to_device, b"")
    report = tmp_path / "check.xml"
    result = mproxy("check", str(capture), "--junit", str(report))
    assert result.returncode == 1
    suite = ET.parse(report).getroot().find("testsuite")
    cases = {case.get("name").split()[0]: case for case in suite.iter("testcase")}
    assert sorted(cases) == sorted(rule.id for rule in RULES)
    failed = sorted(rule for rule, case in cases.items() if case.find("failure") is not None)
    assert failed == ["MPX204"]
    assert "first at packet" in cases["MPX204"].find("failure").get("message")
    assert "MPX204" in result.stdout


def test_warnings_pass_unless_asked_and_a_clean_selection_says_so(tmp_path):
    """The sample tunnel writes the relay's whole stream first: its replies precede the device's requests."""
    capture = str(build_sample(tmp_path))
    result = mproxy("check", capture, "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["rule"] for line in result.stdout.splitlines()] == ["MPX402", "MPX404", "MPX404"]
    assert mproxy("check", capture, "--fail-on", "warning").returncode == 1
    clean = mproxy("check", capture, "--ignore", "MPX402", "--ignore", "MPX404")
    assert (clean.returncode, clean.stdout) == (0, "no findings (29 rules checked)\n")


def test_missing_capture_is_a_usage_error(tmp_path):
    assert_clean_error(mproxy("check", str(tmp_path / "nope.pcap")), "no such file")


def test_conformance_doc_is_generated_from_the_rules():
    from mproxy_scapy.conformance_doc import render

    doc = (REPO / "docs" / "CONFORMANCE.md").read_text(encoding="utf-8")
    assert doc == render(), "run: python -m mproxy_scapy.conformance_doc --write docs/CONFORMANCE.md"
    assert all(f"#### {rule.id}" in doc for rule in RULES)


def test_several_inputs_name_the_file_of_each_finding():
    result = mproxy("check", str(CAPTURES / "raw-tcp.pcap"), str(CAPTURES / "go-dialect.pcap"), "--json")
    assert result.returncode == 0, result.stderr
    where = sorted((f["rule"], f["pcap_file"], f["pcap_frame"]) for f in map(json.loads, result.stdout.splitlines()))
    assert where == [("MPX203", str(CAPTURES / "go-dialect.pcap"), 6), ("MPX406", str(CAPTURES / "raw-tcp.pcap"), 6)]


def test_jobs_give_the_same_findings_in_the_same_order():
    """With --jobs the checker runs in each worker (a tunnel's records all go to one): same output."""
    inputs = [str(CAPTURES / name) for name in ("websocket.pcap", "raw-tcp.pcap", "go-dialect.pcap")]
    one = mproxy("check", *inputs, "--json", "--jobs", "1")
    two = mproxy("check", *inputs, "--json", "--jobs", "2")
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout and len(one.stdout.splitlines()) == 4
    assert one.stderr.splitlines()[-1] == two.stderr.splitlines()[-1]


def test_junit_lists_the_first_findings_of_a_rule_and_counts_the_rest(tmp_path, monkeypatch):
    from mproxy_scapy.checker import Finding
    from mproxy_scapy.commands.check import Tally, junit_cases

    monkeypatch.setattr(Tally, "KEPT", 2)
    tally = Tally()
    for number in range(5):
        tally.add(Finding("MPX204", f"late {number}", pcap_frame=number, ts=None, tunnel=1, direction=1, src="a",
                          dst="b", client="IPv4,1.2.3.4,5"))
    case = next(c for c in junit_cases(tally, ["MPX204"], "error", "x.pcap"))
    assert case.failure.startswith("5 x frame after the client's end or error")
    assert case.details.splitlines()[-1] == "... and 3 more" and "late 1" in case.details
    assert "late 2" not in case.details


def test_list_rules_prints_the_table_without_reading_a_capture():
    result = mproxy("check", "--list-rules", "--ignore", "MPX406", "/nonexistent.pcap")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(RULES) - 1
    assert lines[0] == "MPX101 error   version byte is not 0xFE"
