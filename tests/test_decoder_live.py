"""Live capture on the loopback interface (root): a tunnel run during the test is decoded as it happens."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import DecodedFrame, decode_live

pytestmark = pytest.mark.live

CLIENT = {"family": "IPv4", "address": "192.0.2.44", "port": 61000, "service": "http", "serviceport": 80,
          "name": "live.example.test"}
TO_DEVICE = [pack(None, [1, "hello", 254, []], "control"), pack(CLIENT, None, "connection"),
             pack(CLIENT, b"GET / HTTP/1.1\r\nHost: live.example.test\r\n\r\n")]
TO_RELAY = [pack(None, [-1, None], "control"), pack(CLIENT, b"HTTP/1.1 204 No Content\r\n\r\n"),
            pack(CLIENT, None, "end")]


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the live capture test needs root (AF_PACKET on lo)")


def run_tunnel(listener: socket.socket) -> None:
    """Relay (listener) and device exchange M-PROXY frames over a real TCP connection on lo."""
    def relay() -> None:
        conn, _ = listener.accept()
        with conn:
            for frame in TO_DEVICE:
                conn.sendall(frame)
            received = b""
            expected = sum(len(f) for f in TO_RELAY)
            while len(received) < expected:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk

    thread = threading.Thread(target=relay)
    thread.start()
    with socket.create_connection(listener.getsockname()) as device:
        expected = sum(len(f) for f in TO_DEVICE)
        received = b""
        while len(received) < expected:
            received += device.recv(65536)
        for frame in TO_RELAY:
            device.sendall(frame)
        device.shutdown(socket.SHUT_WR)
        device.recv(1)
    thread.join()


def listener_on_lo() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    return listener


def test_a_tunnel_is_decoded_live():
    require_root()
    listener = listener_on_lo()
    port = listener.getsockname()[1]
    records: list = []
    # the tunnel ends with FIN both ways; the capture stops at its timeout after that
    stream = decode_live("lo", f"tcp port {port}", timeout=8)
    consumer = threading.Thread(target=lambda: records.extend(stream))
    consumer.start()
    with listener:
        run_tunnel(listener)
    consumer.join()
    frames = [r for r in records if isinstance(r, DecodedFrame)]
    to_device = [r.frame for r in frames if r.src == f"127.0.0.1:{port}"]
    to_relay = [r.frame for r in frames if r.dst == f"127.0.0.1:{port}"]
    assert [f.kind for f in to_device] == ["control", "connection", "data"]
    assert [f.kind for f in to_relay] == ["control", "data", "end"]
    assert to_device[2].body == b"GET / HTTP/1.1\r\nHost: live.example.test\r\n\r\n"
    assert all(not f.problems for f in to_device + to_relay)
    assert all(r.pcap_frame >= 1 and r.carrier == "tcp" for r in frames)


def test_dissect_live_cli_stops_cleanly_on_ctrl_c():
    require_root()
    listener = listener_on_lo()
    port = listener.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "-i", "lo", "-f",
                             f"tcp port {port}", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        assert ready.startswith("mproxy: capturing on lo"), ready
        with listener:
            run_tunnel(listener)
        lines: list[str] = []
        assert proc.stdout is not None
        while len(lines) < 6:
            line = proc.stdout.readline()
            assert line, "dissect ended early"
            lines.append(line)
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors and "capture stopped" in errors and "records shown" in errors
    kinds = [json.loads(line)["kind"] for line in lines + rest.splitlines()]
    assert sorted(kinds) == sorted(["control", "connection", "data", "control", "data", "end"])
