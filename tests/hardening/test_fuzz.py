"""The fuzz targets in CI: committed inputs replayed, and a short coverage-guided run that must find nothing.

Every input under tests/hardening/data/ is a capture that once broke a stage
(a crash the fuzzer found, or a bug a property test found, written as a
capture); each goes through ``fuzz.targets`` exactly as the fuzzer ran it,
and the named ones are checked for the fixed behaviour too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mproxy_scapy.decoder import Decoder
from mproxy_scapy.pcap import open_capture

from support import REPO

sys.path.insert(0, str(REPO))
from fuzz.targets import TARGETS, replay
from tools.devenv import UNAVAILABLE

DATA = Path(__file__).resolve().parent / "data"
INPUTS = sorted(p for p in DATA.iterdir() if p.is_file())
CI_SECONDS = 60


def target_of(path: Path) -> str:
    """``stream-*`` inputs were found by the stream target; everything else is a capture file."""
    return "stream" if path.name.startswith("stream-") else "capture"


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_committed_input_decodes_without_raising(path):
    assert target_of(path) in TARGETS
    replay(path, target_of(path))


def records(path: Path) -> tuple[Decoder, list]:
    decoder = Decoder()
    return decoder, list(decoder.decode(open_capture(str(path))))


def test_tcp_rst_then_ack_gives_no_event_after_the_close():
    """A RST from the side that spoke first, then a segment each way: the closed connection stays closed."""
    decoder, found = records(DATA / "tcp-rst-then-ack.pcap")
    assert found == [] and not decoder.problem_counts


def test_ws_gap_inside_frame_header_counts_the_held_header_bytes():
    """The first byte of a frame header arrived, the rest was lost: that byte is reported as skipped framing."""
    _, found = records(DATA / "ws-gap-inside-frame-header.pcap")
    events = [(r.stage, r.kind, r.detail) for r in found if hasattr(r, "stage")]
    assert ("carrier", "ws_sync_lost", "9 bytes lost in a frame header: framing lost, resynchronising") in events
    after_loss = events[events.index(("carrier", "ws_sync_lost",
                                      "9 bytes lost in a frame header: framing lost, resynchronising")) + 1]
    assert after_loss == ("carrier", "framing", "1 bytes skipped")
    frames = [r.frame for r in found if hasattr(r, "frame") and r.frame.is_frame]
    assert [f.body_len for f in frames] == [6, 5]


def test_control_nested_5000_deep_is_a_bad_body_not_a_crash():
    """JSON nested past Python's recursion limit in a control body once raised RecursionError out of the decoder."""
    _, found = records(DATA / "control-nested-5000-deep.pcap")
    frames = [r.frame for r in found if hasattr(r, "frame")]
    assert [f.kind for f in frames] == ["data", "control", "data"]
    assert [p.kind for p in frames[1].problems] == ["bad_body"] and frames[1].control is None


def atheris_unavailable() -> str | None:
    """Why the fuzz extra is not installed, as ``make test`` recorded it (tools/devenv.py), or None.

    atheris ships compiled wheels only; where it has none for this Python and platform,
    ``make test`` installs everything else and writes the reason into the environment.
    """
    try:
        return json.loads((Path(sys.prefix) / UNAVAILABLE).read_text()).get("fuzz")
    except (OSError, ValueError):
        return None


@pytest.fixture
def atheris_installed():
    """Fuzzing needs atheris: where ``make test`` found no build of it the test says so in the summary
    (skipped, with that reason); missing for any other reason is a failure, never a silent skip."""
    if importlib.util.find_spec("atheris") is not None:
        return
    reason = atheris_unavailable()
    if reason:
        pytest.skip(f"NOT FUZZED: {reason} (recorded by make test); every other test runs")
    pytest.fail("atheris is not installed: make test installs it (or pip install -e '.[fuzz]')")


def test_atheris_is_installed(atheris_installed):
    import atheris

    assert callable(atheris.Fuzz)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_ci_slice_finds_nothing(tmp_path, target, atheris_installed):
    """A fixed budget of coverage-guided fuzzing from the committed seeds; any crash, hang or OOM fails."""
    result = subprocess.run([sys.executable, str(REPO / "fuzz" / "run.py"), "--target", target,
                             "--seconds", str(CI_SECONDS // 2), "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=CI_SECONDS * 5, check=False)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "0 crashing/hanging inputs" in result.stdout
    executions = int(result.stdout.split("fuzz: ")[2].split(" executions")[0])
    assert executions > 0, result.stdout
