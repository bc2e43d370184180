"""``tcpdump -U -w - | mproxy dissect -``: records of a live tunnel appear while the pipe is still open."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from mproxy_scapy.codec import pack

pytestmark = pytest.mark.live

CLIENT = {"family": "IPv4", "address": "192.0.2.45", "port": 61001, "service": "http", "serviceport": 80,
          "name": "pipe.example.test"}


def read_line(stream, seconds: float) -> bytes:
    """One line from ``stream`` within ``seconds``, else b'' (the test then fails: nothing came)."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        if selector.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                break
            line += chunk
    return line


def wait_listening(tcpdump: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    assert tcpdump.stderr is not None
    while time.monotonic() < deadline:
        line = read_line(tcpdump.stderr, deadline - time.monotonic())
        if b"listening on" in line:
            return
        if not line:
            break
    pytest.fail("tcpdump did not start listening")


@pytest.mark.parametrize("command", [["dissect", "--json"], ["dissect"]])
def test_records_appear_while_the_capture_pipe_is_open(command):
    if os.geteuid() != 0:
        pytest.fail("the live pipe test needs root (tcpdump on lo)")
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is needed (apt-get install tcpdump)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    tcpdump = subprocess.Popen(["tcpdump", "-U", "--immediate-mode", "-n", "-i", "lo", "-w", "-", f"tcp port {port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tcpdump.stdout is not None
    dissect = subprocess.Popen([sys.executable, "-m", "mproxy_scapy.cli", *command, "-"], stdin=tcpdump.stdout,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tcpdump.stdout.close()  # dissect holds the pipe now: it sees end of file when tcpdump ends
    try:
        wait_listening(tcpdump)
        with listener, socket.create_connection(("127.0.0.1", port)) as device:
            relay, _ = listener.accept()
            with relay:
                relay.sendall(pack(None, [1, "hello", 254, []], "control") + pack(CLIENT, None, "connection")
                              + pack(CLIENT, b"GET / HTTP/1.1\r\n\r\n"))
                # the tunnel, tcpdump and the pipe are all still open: a record must already be printed
                assert dissect.stdout is not None
                first = read_line(dissect.stdout, 30)
                assert first, "no record while the capture was still running"
                assert tcpdump.poll() is None and dissect.poll() is None
                device.sendall(pack(CLIENT, None, "end"))
        time.sleep(0.5)
        tcpdump.send_signal(signal.SIGTERM)  # our own tcpdump, by its PID: the pipe ends, dissect finishes
        rest, errors = dissect.communicate(timeout=60)
    finally:
        for process in (tcpdump, dissect):
            if process.poll() is None:
                process.kill()
        tcpdump.wait(10)
    assert dissect.returncode == 0, errors
    lines = (first + rest).decode().splitlines()
    if "--json" in command:
        kinds = [json.loads(line)["kind"] for line in lines]
        assert kinds == ["control", "connection", "data", "end"]
    else:
        assert "control" in lines[0] and "end" in lines[-1]
    assert b"4 records shown, 1 tunnels" in errors
