"""The relay: accepts browser TCP connections and tunnels each one to the device.

Like telebit-relay it routes by what the client sends first (TLS SNI, HTTP Host, or the
port's fixed name), announces the client with a ``connection`` frame, sends the client's
bytes as header and body written separately (two WebSocket messages, as the JS relay does),
and answers the device's control requests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from mproxy_scapy.codec import Unpacker, addr_to_id, socket_to_addr
from mproxy_scapy.sni import client_hello_sni

from .links import Link
from .packers import JsPacking

HELLO = [1, "hello", 254, ["add_token", "delete_token"]]
KNOWN_COMMANDS = frozenset({"add_token", "delete_token"})
BROWSER_CHUNK = 16384


@dataclass(frozen=True)
class RelayPort:
    """One port browsers connect to: the service it carries and, for plain TCP, a fixed name."""

    service: str
    name: str = ""


@dataclass
class _Client:
    sock: socket.socket
    tun: dict[str, Any]
    end_style: str
    delivered: int = 0
    closed_by_device: threading.Event = field(default_factory=threading.Event)
    errored: bool = False


def http_host(first: bytes) -> str:
    for line in first.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"host":
            return value.strip().decode("ascii", "replace").rsplit(":", 1)[0]
    return ""


class Relay:
    def __init__(self, packing: Any, ports: list[RelayPort], hosts: tuple[str, ...] = ("127.0.0.1", "::1")) -> None:
        self.packing = packing
        self.link: Link | None = None
        self.linked = threading.Event()
        self.clients: dict[str, _Client] = {}
        self._lock = threading.Lock()
        self._count = 0
        self.port_of: dict[RelayPort, int] = {}
        self._listeners: list[socket.socket] = []
        self._browser_threads: list[threading.Thread] = []
        for spec in ports:
            self.port_of[spec] = self._listen_all(hosts, spec)

    def _listen_all(self, hosts: tuple[str, ...], spec: RelayPort) -> int:
        """The same port number on every host, so a service has one serviceport."""
        for _attempt in range(20):
            socks: list[socket.socket] = []
            port = 0
            try:
                for host in hosts:
                    family = socket.AF_INET6 if ":" in host else socket.AF_INET
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    socks.append(sock)
                    sock.bind((host, port))
                    sock.listen(16)
                    port = sock.getsockname()[1]
            except OSError:
                for sock in socks:
                    sock.close()
                continue
            for sock in socks:
                self._listeners.append(sock)
                threading.Thread(target=self._accept_loop, args=(sock, spec), daemon=True).start()
            return port
        raise OSError("could not bind one port on every loopback address")

    def _accept_loop(self, listener: socket.socket, spec: RelayPort) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._browser, args=(sock, spec), daemon=True)
            with self._lock:
                self._browser_threads.append(thread)
            thread.start()

    # --- the tunnel -------------------------------------------------------------------

    def run_tunnel(self, link: Link) -> None:
        """Serve one device until its tunnel closes (called in the link's own thread)."""
        self.link = link
        if isinstance(self.packing, JsPacking):
            link.send([self.packing.control(HELLO)])
        self.linked.set()
        unpacker = Unpacker(
            {
                "oncontrol": self._on_control,
                "onmessage": self._on_message,
                "onend": self._on_end,
                "onerror": self._on_error,
                "onpause": lambda msg: None,
                "onresume": lambda msg: None,
            }
        )
        while (data := link.recv()) is not None:
            unpacker.feed(data)

    def _on_control(self, msg: dict[str, Any]) -> None:
        request = json.loads(msg["data"])
        if not isinstance(request, list) or not request or request[0] <= 0:
            return
        if request[1] in KNOWN_COMMANDS:
            reply: list[Any] = [-request[0], None]
        else:
            reply = [-request[0], {"message": f"unknown command '{request[1]}'", "code": "E_UNKNOWN_COMMAND"}]
        assert self.link is not None
        self.link.send([self.packing.control(reply)])

    def _client(self, msg: dict[str, Any]) -> _Client | None:
        return self.clients.get(addr_to_id(msg))

    def _on_message(self, msg: dict[str, Any]) -> None:
        client = self._client(msg)
        if client is None or not msg["data"]:
            return
        try:
            client.sock.sendall(msg["data"])
            client.delivered += len(msg["data"])
        except OSError:
            pass

    def _on_end(self, msg: dict[str, Any]) -> None:
        client = self._client(msg)
        if client is not None:
            _shutdown(client.sock, socket.SHUT_WR)
            client.closed_by_device.set()

    def _on_error(self, msg: dict[str, Any]) -> None:
        client = self._client(msg)
        if client is not None:
            client.errored = True
            _shutdown(client.sock, socket.SHUT_RDWR)
            client.closed_by_device.set()

    # --- browsers ---------------------------------------------------------------------

    def _browser(self, sock: socket.socket, spec: RelayPort) -> None:
        self.linked.wait()
        assert self.link is not None
        link, packing = self.link, self.packing
        first = b""
        name = spec.name
        if not name:
            first = sock.recv(BROWSER_CHUNK)
            name = (client_hello_sni(first) if spec.service == "https" else http_host(first)) or ""
        tun = {**socket_to_addr(sock), "service": spec.service, "name": name}
        with self._lock:
            self._count += 1
            client = _Client(sock, tun, "pack" if self._count % 2 else "header")
            self.clients[addr_to_id(tun)] = client
        if packing.sends_connection:
            link.send([packing.connection(tun)])
        chunk = first
        while True:
            if chunk:
                link.send([packing.data(tun, chunk, "header")], split_body=True)
            try:
                chunk = sock.recv(BROWSER_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                break
        if not client.errored:
            link.send([packing.end(tun, client.end_style)])
        client.closed_by_device.wait(10)
        sock.close()

    def flow(self, browser_port: int, kind: str) -> None:
        """Send ``pause`` or ``resume`` for the browser connected from ``browser_port``."""
        assert self.link is not None
        for client in list(self.clients.values()):
            if client.tun["port"] == browser_port:
                self.link.send([self.packing.flow(client.tun, kind, client.delivered)])
                return
        raise KeyError(f"no browser client from port {browser_port}")

    def wait_browsers(self, timeout: float = 20) -> None:
        """Until every browser connection has ended and its ``end`` is written."""
        with self._lock:
            threads = list(self._browser_threads)
        for thread in threads:
            thread.join(timeout)

    def close(self) -> None:
        for sock in self._listeners:
            sock.close()


def _shutdown(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)
