"""Small real captures for the Wireshark tests: real sockets on 127.0.0.1, recorded by tcpdump.

Until the shared captures/ exist these give the tests real pcaps: the same
bytes the Python parser reads are what tshark sees on the wire.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mproxy_scapy.codec import pack

from loopback_capture import loopback_capture

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
TUN = {"family": "IPv4", "address": "127.0.0.1", "port": 53021, "service": "https", "serviceport": 443,
       "name": "pokemap.hellabit.com"}
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXZpY2UifQ.c2lnbmF0dXJl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tunnel_chunks() -> tuple[list[bytes], list[bytes]]:
    """What each side of a raw tunnel sends, one list item per send() (so per TCP segment)."""
    hello = (REFERENCE / "sni.hello.bin").read_bytes()
    tun6 = {**TUN, "family": "IPv6", "address": "::1", "port": 40000, "service": "http", "name": "example.com"}
    relay = [
        pack(None, [1, "hello", 254, ["add_token", "delete_token"]], "control"),
        pack(TUN, None, "connection") + pack(TUN, hello),
        pack(tun6, None, "connection"),
        pack(tun6, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")[:20],
        pack(tun6, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")[20:] + pack(TUN, b"x" * 5000)[:3000],
        pack(TUN, b"x" * 5000)[3000:],
        pack(None, [-2, None], "control") + pack(TUN, b"10", "pause") + pack(TUN, b"10", "resume"),
        b"\x00garbage\xfe\x01" + pack(TUN, None, "end"),
        pack(tun6, None, "error")[:-1] + b"\x01" + pack(tun6, None, "end"),
    ]
    device = [
        pack(None, [-1, None], "control"),
        pack(None, [2, "auth", {"access_token": TOKEN}], "control"),
        pack(TUN, b"\x16\x03\x03" + b"s" * 100),
        pack(None, [3, "bogus"], "control"),
    ]
    return relay, device


def raw_tunnel(port: int, relay: list[bytes], device: list[bytes]) -> None:
    """Relay (client side here) and device exchange their chunks turn by turn over one TCP connection."""
    server = socket.create_server(("127.0.0.1", port))
    received = bytearray()

    def device_side() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(5)
        for chunk in device:
            conn.sendall(chunk)
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                received.extend(data)
        conn.close()

    thread = threading.Thread(target=device_side)
    thread.start()
    client = socket.create_connection(("127.0.0.1", port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for chunk in relay:
        client.sendall(chunk)
        time.sleep(0.05)
    time.sleep(0.2)
    client.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        while client.recv(65536):
            pass
    client.close()
    thread.join(10)
    server.close()


def record(path: Path, port: int, traffic: Callable[[], None]) -> Path:
    """Record ``traffic`` on loopback TCP ``port`` into ``path``."""
    with loopback_capture(path, f"tcp port {port}"):
        traffic()
    return path


def http_exchange(port: int) -> None:
    """A real HTTP request and response: python's http.server and urllib."""
    import http.server
    import urllib.request

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("/", "/missing"):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
    finally:
        server.shutdown()
        server.server_close()


def tls_exchange(port: int, cert_dir: Path) -> None:
    """A real TLS 1.3 handshake and a few application bytes (python ssl, a throwaway certificate)."""
    import ssl

    cert, key = self_signed(cert_dir)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(1024).upper())

    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_ctx.wrap_socket(raw, server_hostname="example.test") as tls:
        tls.sendall(b"hello over tls")
        tls.recv(1024)
    thread.join(10)
    listener.close()


def ssh_exchange(port: int) -> None:
    """An SSH-looking exchange: version banners both ways, then binary packets."""
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            conn.recv(1024)
            conn.sendall(bytes.fromhex("000001fc0a14") + bytes(range(256)) * 2)

    thread = threading.Thread(target=serve)
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.recv(1024)
        client.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        client.sendall(bytes.fromhex("000001fc0a14") + bytes(range(255, -1, -1)) * 2)
        with contextlib.suppress(OSError):
            client.recv(4096)
    thread.join(10)
    listener.close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 (cryptography, from the test extras)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def websocket_exchange(port: int) -> None:
    """An ordinary WebSocket (no tunnel): the websockets library, text and binary messages both ways."""
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    def echo(connection: object) -> None:
        for message in connection:  # type: ignore[attr-defined]
            connection.send(message)  # type: ignore[attr-defined]

    with serve(echo, "127.0.0.1", port, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with connect(f"ws://127.0.0.1:{port}/chat", compression=None) as client:
            for message in ("hello", b"\xfe\x20binary, no tunnel here" + bytes(64)):
                client.send(message)
                client.recv()
        server.shutdown()
