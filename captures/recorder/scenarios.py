"""What happens in each capture: which tunnel, which browsers, which control traffic.

Every scenario runs real sockets on 127.0.0.1 and ::1 while tcpdump records the tunnel
port(s) only (the browser and service connections would triple the size), then checks
that every browser got exactly what its service sent.
"""

from __future__ import annotations

import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from . import browsers, pacing
from .capture import Tcpdump
from .device import FAKE_JWT, Device
from .links import Link, RawLink, WsLink
from .packers import JsPacking
from .reference import NodeRelay, install_proxy_packer
from .relay import Relay, RelayPort
from .services import PAGE, Services
from .truth import TruthLog

HTTP = RelayPort("http")
HTTPS = RelayPort("https")
ECHO = RelayPort("tcp", "echo.example.test")
CLOSED = RelayPort("tcp", "closed.example.test")
WEB_NAME = "web.example.test"
TLS_NAME = "secure.example.test"
RELAY_NAME = "relay.example.test"
ECHO_MESSAGES = [b"echo one: the first message\n", b"echo two: sent while paused\n", b"echo three\n"]


@dataclass
class Plan:
    """Which browsers a capture has."""

    big_size: int = 0
    tls: bool = True
    pause: bool = True
    refused: bool = True
    extra_http: int = 1


class Tunnel:
    """A relay and a device joined by one tunnel connection, plus the services behind it."""

    def __init__(self, truth: TruthLog, services: Services, packing: Any, relay: Any = None) -> None:
        self.truth = truth
        self.services = services
        routes = services.routes()
        self.relay = relay or Relay(packing, [HTTP, HTTPS, ECHO, CLOSED])
        self.device = Device(
            packing,
            by_name={WEB_NAME: routes["http"], TLS_NAME: routes["https"], ECHO.name: routes["echo"],
                     CLOSED.name: routes["refused"]},
            by_service={"http": routes["http"], "https": routes["https"]},
        )
        self.threads: list[threading.Thread] = []
        self.device_link: Link | None = None
        self._ws_server: Any = None

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    # --- carriers ---------------------------------------------------------------------

    def listen_raw(self, host: str) -> tuple[pacing.PacedSocket, int]:
        listener = pacing.listen(host)
        return listener, listener.getsockname()[1]

    def start_raw(self, listener: pacing.PacedSocket) -> None:
        host, port = listener.getsockname()[:2]
        device_sock = pacing.connect(host, port)
        relay_sock, _ = listener.accept()
        listener.close()
        self.device_link = RawLink(device_sock, self.truth, "device->relay")
        self._spawn(self.relay.run_tunnel, RawLink(relay_sock, self.truth, "relay->device"))
        self._spawn(self.device.run, self.device_link)

    def start_device_raw(self, port: int) -> None:
        """The device dials a relay that runs elsewhere (the Node.js reference relay)."""
        self.device_link = RawLink(pacing.connect("127.0.0.1", port), self.truth, "device->relay")
        self._spawn(self.device.run, self.device_link)
        self.relay.linked.set()

    def start_ws(self, listener: pacing.PacedSocket, tls: ssl.SSLContext | None,
                 client_tls: ssl.SSLContext | None) -> None:
        host, port = listener.getsockname()[:2]
        server = ws_serve(
            lambda conn: self.relay.run_tunnel(WsLink(conn, self.truth, "relay->device")),
            sock=listener, ssl=tls, compression=None, ping_interval=None, server_header=None,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._ws_server = server
        scheme = "wss" if client_tls else "ws"
        authority = f"{RELAY_NAME}:{port}"
        conn = ws_connect(
            f"{scheme}://{authority}/?access_token={FAKE_JWT}&versions=v1",
            sock=pacing.connect(host, port),
            ssl=client_tls,
            server_hostname=RELAY_NAME if client_tls else None,
            additional_headers={"Authorization": f"Bearer {FAKE_JWT}"},
            compression=None,
            ping_interval=None,
            user_agent_header="mproxy-scapy-recorder device",
        )
        self.device_link = WsLink(conn, self.truth, "device->relay")
        self._spawn(self.device.run, self.device_link)

    # --- browsers ---------------------------------------------------------------------

    def browse(self, plan: Plan) -> None:
        relay, services = self.relay, self.services
        if not relay.linked.wait(10):
            raise RuntimeError("the device never reached the relay")
        http = relay.port_of[HTTP]
        jobs: list[tuple[Any, tuple[Any, ...], Any]] = [
            (browsers.http_get, ("127.0.0.1", http, WEB_NAME, "/"), PAGE),
        ]
        for index in range(plan.extra_http):
            host = "::1" if index % 2 == 0 else "127.0.0.1"
            jobs.append((browsers.http_get, (host, http, WEB_NAME, "/"), PAGE))
        if plan.big_size:
            jobs.append((browsers.http_get, ("::1", http, WEB_NAME, "/big"), services.big))
        if plan.tls:
            jobs.append((browsers.https_get, ("127.0.0.1", relay.port_of[HTTPS], TLS_NAME, services.cert_path), PAGE))
        jobs.append((browsers.echo, ("::1", relay.port_of[ECHO], ECHO_MESSAGES, self._pause_between(plan)),
                     ECHO_MESSAGES))
        if plan.refused:
            jobs.append((browsers.refused, ("127.0.0.1", relay.port_of[CLOSED]), b""))
        with ThreadPoolExecutor(len(jobs)) as pool:
            futures = [(pool.submit(fn, *args), fn.__name__, args, want) for fn, args, want in jobs]
            for future, name, args, want in futures:
                got = future.result(60)
                ok = got == want if isinstance(want, list) or want == b"" else got.endswith(want)
                if not ok:
                    raise RuntimeError(f"browser {name}{args[:2]} got a wrong answer ({len(got)} bytes)")

    def _pause_between(self, plan: Plan) -> Any:
        def between(local_port: int, index: int) -> None:
            if plan.pause and index == 0:
                self.relay.flow(local_port, "pause")
                threading.Timer(0.3, self.relay.flow, (local_port, "resume")).start()

        return between

    def finish(self) -> None:
        """Let the last ends cross, then close the tunnel from the device side."""
        self.relay.wait_browsers()
        self.device.join()
        assert self.device_link is not None
        self.device_link.close()
        for thread in self.threads:
            thread.join(10)
        if self._ws_server is not None:
            self._ws_server.shutdown()
        self.relay.close()


def record_tunnel(
    out: Path, workdir: Path, *, carrier: str, host: str, plan: Plan, packing: Any = None,
    truth: TruthLog | None = None, keylog: Path | None = None, tls_maximum: ssl.TLSVersion | None = None,
) -> TruthLog:
    """Record one tunnel (raw TCP, ws or wss) over ``host`` into the capture file ``out``.

    ``tls_maximum`` caps the relay's TLS version for wss (TLSv1_2: a relay on an older TLS stack).
    """
    truth = truth or TruthLog()
    services = Services(workdir, plan.big_size, [TLS_NAME, RELAY_NAME])
    node_relay = None
    if carrier == "reference-js":
        node_relay = NodeRelay(install_proxy_packer(workdir), workdir / "node-truth.ndjson",
                               {"http": HTTP, "echo": ECHO, "closed": CLOSED})
    tunnel = Tunnel(truth, services, packing or JsPacking(), node_relay)
    if node_relay is not None:
        listener, port = None, node_relay.tunnel_port
    else:
        listener, port = tunnel.listen_raw(host)
    dump = Tcpdump(out, [port])
    try:
        if node_relay is not None:
            tunnel.start_device_raw(port)
        elif carrier == "tcp":
            tunnel.start_raw(listener)
        else:
            server_tls = client_tls = None
            if carrier == "wss":
                server_tls = pacing.paced_tls(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
                server_tls.load_cert_chain(services.cert_path, services.key_path)
                if tls_maximum is not None:
                    server_tls.maximum_version = tls_maximum
                client_tls = pacing.paced_tls(ssl.create_default_context(cafile=str(services.cert_path)))
                if keylog is not None:
                    client_tls.keylog_filename = str(keylog)
            tunnel.start_ws(listener, server_tls, client_tls)
        tunnel.browse(plan)
        tunnel.finish()
    finally:
        dump.stop()
        services.close()
    if node_relay is not None:
        node_relay.merge_truth(truth)
    return truth
