"""Fixtures of the Wireshark tests: an empty tshark profile per test, the real captures."""

from __future__ import annotations

import asyncio
import shutil
import warnings
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def close_pysharks_event_loop() -> Iterator[None]:
    """Close the event loop pyshark leaves set after a test.

    pyshark attaches a SafeChildWatcher to the main thread's loop, so every
    later SIGCHLD of this process writes a byte to that loop's wake-up pipe;
    nobody runs the loop again, the pipe fills, and later tests end with
    "Exception ignored ... BlockingIOError" warnings. Closing the loop removes
    its signal handlers; pyshark makes a new loop when it next needs one.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # none set: no pyshark ran since the last close
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)
