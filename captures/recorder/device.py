"""The device: unpacks the tunnel with the project's Unpacker and serves each tunneled client.

Like a telebit client it answers the relay's ``hello`` by adding its token, connects every
tunneled client to a local service (by name, else by service), packs the service's replies
with the client's own address, honours ``pause``/``resume``, and reports a refused service
with an ``error`` frame.
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from mproxy_scapy.codec import Unpacker, addr_to_id

from .links import Link

SERVICE_CHUNK = 16384


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


FAKE_JWT = ".".join(
    (
        _b64(b'{"alg":"HS256","typ":"JWT"}'),
        _b64(b'{"sub":"device.example.test","note":"FAKE token for mproxy-scapy test captures","iat":0}'),
        _b64(b"not-a-real-signature"),
    )
)
"""An obviously fake bearer token: what the device authenticates and adds with."""

TOKEN_REQUESTS = ([1, "add_token", FAKE_JWT], [2, "list_tokens"])
"""The device's control requests: one the relay knows, one it answers with an error."""


@dataclass
class _Service:
    tun: dict[str, Any]
    sock: socket.socket | None
    running: threading.Event = field(default_factory=threading.Event)


class Device:
    def __init__(self, packing: Any, by_name: dict[str, int], by_service: dict[str, int]) -> None:
        self.packing = packing
        self.by_name = by_name
        self.by_service = by_service
        self.services: dict[str, _Service] = {}
        self.replies: list[Any] = []
        self.link: Link | None = None
        self._threads: list[threading.Thread] = []

    def run(self, link: Link) -> None:
        """Serve the tunnel until the relay closes it."""
        self.link = link
        unpacker = Unpacker(
            {
                "oncontrol": self._on_control,
                "onconnection": self._open,
                "onmessage": self._on_message,
                "onend": self._on_end,
                "onerror": self._on_error,
                "onpause": lambda msg: self._flow(msg, False),
                "onresume": lambda msg: self._flow(msg, True),
            }
        )
        while (data := link.recv()) is not None:
            unpacker.feed(data)

    def join(self, timeout: float = 10) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _on_control(self, msg: dict[str, Any]) -> None:
        message = json.loads(msg["data"])
        assert self.link is not None
        if message[0] > 0 and message[1] == "hello":
            self.link.send([self.packing.control(request) for request in TOKEN_REQUESTS])
        elif message[0] < 0:
            self.replies.append(message)

    def _open(self, msg: dict[str, Any]) -> _Service:
        assert self.link is not None
        tun = {k: msg[k] for k in ("family", "address", "port", "service", "serviceport", "name")}
        port = self.by_name.get(tun["name"]) or self.by_service[tun["service"]]
        try:
            sock = socket.create_connection(("127.0.0.1", port))
        except OSError as exc:
            service = _Service(tun, None)
            self.services[addr_to_id(tun)] = service
            self.link.send([self.packing.error(tun, f"connect {_errname(exc)} 127.0.0.1:{port}", "E_CONN")])
            return service
        service = _Service(tun, sock)
        service.running.set()
        self.services[addr_to_id(tun)] = service
        thread = threading.Thread(target=self._pump, args=(service,), daemon=True)
        self._threads.append(thread)
        thread.start()
        return service

    def _on_message(self, msg: dict[str, Any]) -> None:
        service = self.services.get(addr_to_id(msg)) or self._open(msg)
        if service.sock is not None and msg["data"]:
            with contextlib.suppress(OSError):
                service.sock.sendall(msg["data"])

    def _on_end(self, msg: dict[str, Any]) -> None:
        service = self.services.get(addr_to_id(msg))
        if service is not None and service.sock is not None:
            with contextlib.suppress(OSError):
                service.sock.shutdown(socket.SHUT_WR)

    def _on_error(self, msg: dict[str, Any]) -> None:
        service = self.services.get(addr_to_id(msg))
        if service is not None and service.sock is not None:
            service.sock.close()

    def _flow(self, msg: dict[str, Any], run: bool) -> None:
        service = self.services.get(addr_to_id(msg))
        if service is not None:
            (service.running.set if run else service.running.clear)()

    def _pump(self, service: _Service) -> None:
        """Service -> tunnel; stops reading while the relay has the client paused."""
        assert self.link is not None and service.sock is not None
        sock = service.sock
        while True:
            service.running.wait()
            try:
                readable, _, _ = select.select([sock], [], [], 0.05)
            except (OSError, ValueError):
                break
            if not readable or not service.running.is_set():
                continue
            try:
                chunk = sock.recv(SERVICE_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.link.send([self.packing.data(service.tun, chunk, "pack")])
        self.link.send([self.packing.end(service.tun, "header")])
        sock.close()


def _errname(exc: OSError) -> str:
    return "ECONNREFUSED" if isinstance(exc, ConnectionRefusedError) else type(exc).__name__
