"""Fixtures of the Wireshark tests: an empty tshark profile per test, the real captures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"
WSS_KEYS = CAPTURES / "wss.keys"


def capture_files() -> list[Path]:
    return sorted(p for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))


def keylog_for(pcap: Path) -> Path | None:
    """The capture's own TLS key log (``wss.keys`` beside ``wss.pcapng``), None for a capture without TLS."""
    keys = pcap.with_suffix(".keys")
    return keys if keys.is_file() else None


@pytest.fixture
def tshark_home(tmp_path: Path) -> Path:
    """HOME and WIRESHARK_CONFIG_DIR for tshark: empty, so no user profile changes a result."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is needed for the Wireshark tests (apt-get install tshark)")
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    return home
