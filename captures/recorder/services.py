"""The local services behind the device: HTTP, TLS (HTTPS) and echo, plus a refused port.

Their bodies are fixed (the big one from a fixed seed), so every recording tunnels the
same bytes; only TLS randomness, ports and timestamps change.
"""

from __future__ import annotations

import datetime
import random
import socket
import socketserver
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PAGE = (
    b"<!doctype html>\n<html><head><title>mproxy-scapy test page</title></head>\n"
    b"<body><h1>Hello through the tunnel</h1><p>This page crossed an M-PROXY tunnel.</p></body></html>\n"
)


def big_body(size: int) -> bytes:
    """``size`` bytes of fixed pseudo-random text (seed 3), so frames have varied content."""
    rng = random.Random(3)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"
    return bytes(rng.choice(alphabet) for _ in range(size))


def make_certificate(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for ``names``; returns (cert, key) PEM paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "throwaway-cert.pem"
    key_path = directory / "throwaway-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def http_response(request: bytes, big: bytes) -> bytes:
    line = request.split(b"\r\n", 1)[0].split()
    path = line[1] if len(line) > 1 else b"/"
    body = big if path == b"/big" else PAGE
    ctype = b"application/octet-stream" if path == b"/big" else b"text/html; charset=utf-8"
    head = (
        b"HTTP/1.1 200 OK\r\nServer: mproxy-scapy-recorder\r\nContent-Type: " + ctype
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    return head + body


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Services:
    """HTTP, HTTPS and echo servers on 127.0.0.1, each on its own ephemeral port."""

    def __init__(self, workdir: Path, big_size: int, tls_names: list[str]) -> None:
        self.big = big_body(big_size)
        cert, key = make_certificate(workdir, tls_names)
        self.cert_path = cert
        self.key_path = key
        self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls_context.load_cert_chain(cert, key)
        self._servers: list[_Server] = []
        big = self.big
        tls_context = self.tls_context

        class Http(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(http_response(read_request(self.request), big))

        class Https(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with tls_context.wrap_socket(self.request, server_side=True) as tls:
                    tls.sendall(http_response(read_request(tls), big))

        class Echo(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while chunk := self.request.recv(4096):
                    self.request.sendall(chunk)

        self.http_port = self._start(Http)
        self.https_port = self._start(Https)
        self.echo_port = self._start(Echo)
        self.refused_port = _closed_port()

    def _start(self, handler: type[socketserver.BaseRequestHandler]) -> int:
        server = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        return server.server_address[1]

    def routes(self) -> dict[str, int]:
        """Service name -> local port, as the device routes a tunneled client."""
        return {
            "http": self.http_port,
            "https": self.https_port,
            "echo": self.echo_port,
            "refused": self.refused_port,
        }

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _closed_port() -> int:
    """A port nothing listens on: bound, read, closed (connecting there is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
