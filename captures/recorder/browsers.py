"""The browsers: real TCP (and TLS) clients of the relay, each checking what it got back."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path


def _connect(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect((host, port))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, ssl.SSLError):
        pass
    return b"".join(chunks)


def _request(path: str, host: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mproxy-scapy-recorder\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


def http_get(host: str, port: int, hostname: str, path: str) -> bytes:
    with _connect(host, port) as sock:
        sock.sendall(_request(path, hostname))
        return _read_all(sock)


def https_get(host: str, port: int, servername: str, cafile: Path, path: str = "/") -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))
    with _connect(host, port) as raw, context.wrap_socket(raw, server_hostname=servername) as tls:
        tls.sendall(_request(path, servername))
        return _read_all(tls)


def echo(host: str, port: int, messages: list[bytes], between: Callable[[int, int], None]) -> list[bytes]:
    """Send each message and read its echo; ``between(local_port, i)`` runs after echo i."""
    replies = []
    with _connect(host, port) as sock:
        local_port = sock.getsockname()[1]
        for index, message in enumerate(messages):
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            replies.append(got)
            between(local_port, index)
        sock.shutdown(socket.SHUT_WR)
        _read_all(sock)
    return replies


def refused(host: str, port: int) -> bytes:
    """A client whose service refuses: the relay closes it once the device reports the error."""
    with _connect(host, port) as sock:
        sock.sendall(b"hello?\n")
        return _read_all(sock)
