"""Running ``mproxy`` as a user would, and the sample tunnel capture the command tests share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tunnel_capture import sample_streams, simple_tunnel

from support import REFERENCE


def mproxy(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m mproxy_scapy.cli ARGS`` with text output."""
    return subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def build_sample(directory: Path, chunk: int = 90) -> Path:
    """The sample tunnel (tests/tunnel_capture.py) as raw TCP, cut into ``chunk``-byte segments."""
    to_device, to_relay = sample_streams((REFERENCE / "sni.hello.bin").read_bytes())
    return simple_tunnel(directory / "sample.pcap", to_device, to_relay, chunk=chunk)


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit 2, one ``mproxy: error:`` line naming the problem, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert lines[-1].startswith("mproxy: error: ") and fragment in lines[-1], result.stderr
