"""Killing one worker of a ``--jobs 2`` run while it is certainly mid-run, for the tests of what follows.

The input is a FIFO with a writer that never writes: every worker blocks
reading it, so the kill lands mid-run however fast the machine is, with no
hook in the product.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def reading(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (a worker that got as far as reading its input)."""
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, PermissionError):
        return False


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_a_worker(tmp_path: Path, args: list[str], victim: int) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """Run ``mproxy ARGS FIFO --jobs 2``, SIGKILL worker ``victim`` (0 or 1) once both read the FIFO.

    Returns the finished run and the workers' pids. The FIFO is
    ``tmp_path/live.pcap``.
    """
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer that never writes: readers wait, never see EOF
    argv = [sys.executable, "-m", "mproxy_scapy.cli", *args, str(fifo), "--jobs", "2"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(workers := [pid for pid in children(process.pid) if reading(pid, fifo)]) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "the workers did not start reading"
            time.sleep(0.05)
        os.kill(workers[victim], signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(keep_open)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr), workers
