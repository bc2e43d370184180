"""Sockets whose writes leave as MSS-sized TCP segments, even on loopback.

Loopback hands the kernel's GSO super-packets (up to 64 KB) straight to tcpdump, so a
plain ``sendall`` of a big frame shows as one huge packet and no frame ever spans
segments. These sockets cut every write into ``PIECE``-byte pieces and wait until the
kernel has sent each piece before writing the next, so each piece is one segment.
"""

from __future__ import annotations

import fcntl
import socket
import ssl
import sys
import time

PIECE = 1400
"""Bytes per write: an Ethernet-like MSS, so frames span segments."""

TLS_PIECE = 1300
"""Plaintext bytes per TLS write: the record (plus its overhead) still fits one PIECE."""

_SIOCOUTQNSD = 0x894B
"""ioctl: bytes queued in the socket but not yet sent (linux/sockios.h)."""

_MAX_WAIT = 10.0


def wait_sent(sock: socket.socket) -> None:
    """Block until the kernel has put every written byte on the wire (or the peer stalls)."""
    buf = bytearray(4)
    deadline = time.monotonic() + _MAX_WAIT
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), _SIOCOUTQNSD, buf)
        except OSError:
            return
        if int.from_bytes(buf, sys.byteorder, signed=True) <= 0:
            return
        time.sleep(0.0002)


class PacedSocket(socket.socket):
    """A TCP socket whose ``sendall`` writes one segment-sized piece at a time."""

    def sendall(self, data, flags: int = 0) -> None:  # type: ignore[override]
        view = memoryview(data).cast("B")
        for start in range(0, len(view), PIECE):
            super().sendall(view[start : start + PIECE], flags)
            wait_sent(self)

    def accept(self) -> tuple[socket.socket, object]:
        """Accepted connections are paced too (the WebSocket server accepts with this)."""
        fd, addr = self._accept()  # type: ignore[attr-defined]
        conn = PacedSocket(self.family, self.type, self.proto, fileno=fd)
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class PacedSSLSocket(ssl.SSLSocket):
    """A TLS socket whose plaintext writes become one record and one segment each."""

    def sendall(self, data, flags: int = 0) -> None:  # type: ignore[override]
        view = memoryview(data).cast("B")
        for start in range(0, len(view), TLS_PIECE):
            super().sendall(view[start : start + TLS_PIECE], flags)
            wait_sent(self)


def paced_tls(context: ssl.SSLContext) -> ssl.SSLContext:
    context.sslsocket_class = PacedSSLSocket
    return context


def listen(host: str, port: int = 0) -> PacedSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = PacedSocket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    return sock


def connect(host: str, port: int) -> PacedSocket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = PacedSocket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((host, port))
    return sock
