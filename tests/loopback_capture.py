"""Record loopback traffic with tcpdump or dumpcap while a test makes it.

Every hand-written copy of this flaked somewhere: the default kernel buffer
drops loopback's 64 KiB packets, the tools write packets on their own schedule
(stopping right after the traffic loses the last segments), dumpcap prints
"Capturing on" before it has opened the interface, and a lost packet shows
only in the tool's closing statistics. This context manager does it once, the
way ``captures/recorder/capture.py`` records the committed captures.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from mproxy_scapy.pcap import FIN, Segment, open_capture

START_SECONDS = 15
WRITE_SECONDS = 30
QUIET_SECONDS = 0.5
"""Without a ``written`` predicate the file is complete once it has not grown for this long."""
_POLL_SECONDS = 0.05

_RECORDING = {
    "tcpdump": "listening on",  # printed once the socket is bound and filtered
    "dumpcap": "File: ",  # printed once the interface is open and the file header written
}
_DROPPED = {
    "tcpdump": re.compile(r"^(\d+) packets? dropped by kernel$"),
    "dumpcap": re.compile(r"received/dropped on interface .*: \d+/(\d+) "),
}


def _command(tool: str, path: Path, interface: str, bpf: str, options: Sequence[str]) -> list[str]:
    if tool == "tcpdump":  # -B in KiB; -U and immediate mode put each packet in the file as it comes
        return ["tcpdump", "-i", interface, "-n", "-B", "65536", "-U", "--immediate-mode", *options,
                "-w", str(path), bpf]
    # -B in MiB; dumpcap has no immediate mode (it writes after each read timeout): the exit wait covers that
    return ["dumpcap", "-q", "-i", interface, "-B", "64", *options, "-w", str(path), "-f", bpf]


@contextlib.contextmanager
def loopback_capture(path: Path, bpf: str, *, interface: str = "lo", tool: str = "tcpdump",
                     options: Sequence[str] = (), written: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Record ``bpf`` on ``interface`` into ``path`` while the block runs; fail the test if the capture is not whole.

    Entering returns once the tool is really recording. Leaving waits until
    ``written(path)`` holds (default: the file stopped growing), stops the tool
    by its own PID and fails the test if it exited badly, lost packets in the
    kernel, or never wrote what ``written`` waits for. ``options`` go to the
    tool as they are (``--time-stamp-precision=nano``, say).
    """
    if tool not in _RECORDING:
        raise ValueError(f"unknown capture tool {tool!r}")
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is needed for the live capture tests (apt-get install {tool})")
    process = subprocess.Popen(_command(tool, path, interface, bpf, options), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    messages: list[str] = []
    recording = threading.Event()
    reader = threading.Thread(target=_read_messages, args=(process, _RECORDING[tool], messages, recording),
                              daemon=True)
    reader.start()
    complete = False
    try:
        if not recording.wait(START_SECONDS) or process.poll() is not None or not _has_header(path, process):
            _stop(process)
            reader.join(START_SECONDS)
            pytest.fail(f"{tool} did not start recording: {' | '.join(messages)}")
        yield path
        complete = _wait_until_written(path, written, process)
    finally:
        _stop(process)
        reader.join(START_SECONDS)
    report = " | ".join(messages)
    if process.returncode != 0:
        pytest.fail(f"{tool} failed (exit status {process.returncode}): {report}")
    dropped = [int(m[1]) for line in messages if (m := _DROPPED[tool].search(line))]
    if any(dropped):
        pytest.fail(f"{tool} reports {sum(dropped)} packets dropped by the kernel: {path} is incomplete ({report})")
    if not complete:
        pytest.fail(f"{tool} did not write the expected packets to {path} within {WRITE_SECONDS} s ({report})")


def both_fins_written(path: Path) -> bool:
    """A ``written`` predicate: the file holds both FIN segments of a closed connection."""
    with open_capture(path) as capture:
        return sum(1 for item in capture if isinstance(item, Segment) and item.flags & FIN) >= 2


def _read_messages(process: subprocess.Popen[str], marker: str, messages: list[str],
                   recording: threading.Event) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        messages.append(line.strip())
        if marker in line:
            recording.set()
    recording.set()  # the tool ended: let the start wait see it at once


def _has_header(path: Path, process: subprocess.Popen[str]) -> bool:
    """Both tools write the file header before they announce recording; wait for it in case the disk lags."""
    deadline = time.monotonic() + START_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return True
        time.sleep(_POLL_SECONDS)
    return False


def _wait_until_written(path: Path, written: Callable[[Path], bool] | None, process: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + WRITE_SECONDS
    size, quiet_since = -1, time.monotonic()
    while process.poll() is None and time.monotonic() < deadline:
        if written is not None:
            if written(path):
                return True
        else:
            now_size = path.stat().st_size
            if now_size != size:
                size, quiet_since = now_size, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_SECONDS:
                return True
        time.sleep(_POLL_SECONDS)
    return False


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGINT to this tool's own PID: both tools then write their statistics (drops included) and exit 0."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(WRITE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
