"""``mproxy conform``: the real proxy-packer and our codec pass; a broken packer fails; text, --json, --junit."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from cli_run import assert_clean_error, mproxy

from support import REPO

EXAMPLES = REPO / "examples" / "conform"


def junit_summary(path) -> tuple[int, int, int]:
    suite = ET.parse(path).getroot().find("testsuite")
    cases = list(suite.iter("testcase"))
    failed = sum(1 for case in cases if case.find("failure") is not None)
    skipped = sum(1 for case in cases if case.find("skipped") is not None)
    return len(cases), failed, skipped


@pytest.mark.node
def test_the_real_proxy_packer_passes_every_case(proxy_packer_dir, tmp_path):
    report = tmp_path / "conform.xml"
    result = mproxy("conform", "--packer", f"node {EXAMPLES / 'proxy_packer.js'} {proxy_packer_dir}",
                    "--examples", "150", "--seed", "3", "--junit", str(report), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("verdict: pass: every case agrees with proxy-packer 2.0.4\n")
    assert "random cases        150 cases from seed 3: no divergence" in result.stdout
    assert junit_summary(report) == (75, 0, 0)  # 74 named cases (16 MiB included) + the random phase


def test_our_codec_adapter_passes_with_json_and_junit_leaving_nothing_behind(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    report = tmp_path / "conform.xml"
    result = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "conform", "--packer",
                             f"{sys.executable} {EXAMPLES / 'mproxy_codec.py'}", "--examples", "20", "--skip-large",
                             "--json", "--junit", str(report)],
                            cwd=work, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "pass" and verdict["divergences"] == []
    assert verdict["cases"]["vectors"] == {"pass": 19, "fail": 0, "skip": 0, "not run": 0, "total": 19}
    assert junit_summary(report) == (74, 0, 0)
    assert list(work.iterdir()) == []  # Hypothesis' cache went to a scratch folder, not ./.hypothesis


def test_a_broken_packer_fails_with_exit_1(tmp_path):
    report = tmp_path / "conform.xml"
    packer = f"{sys.executable} {REPO / 'tests' / 'broken_packer.py'} go-dialect"
    result = mproxy("conform", "--packer", packer, "--examples", "10", "--skip-large", "--junit", str(report))
    assert result.returncode == 1
    assert "divergence 1/1: PP10 JS header dialect" in result.stdout
    assert 'input (minimised in 3 steps): {"op": "pack", "meta": {}}' in result.stdout
    assert "2c 2c 2c 31 2c 2c 2c 2c 0a 20" in result.stdout  # the Go header in the hexdump diff
    total, failed, _ = junit_summary(report)
    assert total == 74 and failed > 50
    as_json = json.loads(mproxy("conform", "--packer", packer, "--examples", "0", "--skip-large", "--json").stdout)
    assert [d["behaviour"] for d in as_json["divergences"]] == ["PP10"]
    assert as_json["divergences"][0]["expected"] == {"hex": "fe072c2c2c312c2c2c20", "length": 10}


def test_a_packer_that_cannot_start_is_a_usage_error():
    assert_clean_error(mproxy("conform", "--packer", "/nonexistent/packer --flag"),
                       "cannot start '/nonexistent/packer'")
    assert_clean_error(mproxy("conform", "--packer", "x", "--timeout", "0"), "--timeout must be more than 0")

