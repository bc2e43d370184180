"""Debian's Firefox ESR driven over WebDriver BiDi, its own remote protocol: no geckodriver, no download.

Firefox listens for BiDi on ``--remote-debugging-port`` and says where on
stderr; this module speaks the few commands a report test needs (navigate,
evaluate) over a plain WebSocket and keeps the page's console entries and
network requests. The profile sends every http(s) request to a proxy on a
closed loopback port, so nothing could reach a network even if the page tried.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from report.browser import closed_port
from websockets.sync.client import ClientConnection, connect

FIREFOX = "/usr/bin/firefox-esr"

PREFERENCES = {
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.allow_hijacking_localhost": True,
    "browser.shell.checkDefaultBrowser": False,
    "app.update.disabledForTesting": True,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "extensions.update.enabled": False,
}


class Firefox:
    """One BiDi session on one tab: ``open(url)``, ``evaluate(js)``, then ``console_errors`` and ``requests``."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self.call("session.new", {"capabilities": {}})
        self.context = self.call("browsingContext.getTree", {})["contexts"][0]["context"]
        self.call("session.subscribe", {"events": ["log.entryAdded", "network.beforeRequestSent"]})

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self._next += 1
        self.socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self._next:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]
            if message.get("type") == "event":
                self.events.append(message)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def evaluate(self, expression: str) -> Any:
        result = self.call("script.evaluate", {"expression": expression, "target": {"context": self.context},
                                               "awaitPromise": False})
        if result["type"] != "success":
            raise RuntimeError(f"{expression!r}: {result}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(expression)

    def console_errors(self) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events
                if e["method"] == "log.entryAdded" and e["params"].get("level") == "error"]

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "network.beforeRequestSent"]


@contextmanager
def offline_firefox() -> Iterator[Firefox]:
    assert Path(FIREFOX).is_file(), "install the Debian package firefox-esr (make test does)"
    with tempfile.TemporaryDirectory(prefix="mproxy-firefox-") as profile:
        port = closed_port()
        prefs = dict(PREFERENCES, **{"network.proxy.http_port": port, "network.proxy.ssl_port": port})
        (Path(profile) / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()))
        log = Path(profile) / "stderr.log"
        with log.open("w") as stderr:
            browser = subprocess.Popen([FIREFOX, "--headless", "--no-remote", "--profile", profile,
                                        "--remote-debugging-port", "0"], stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            address = _listening_address(log, browser)
            with connect(f"{address}/session", max_size=None, open_timeout=60) as socket:
                yield Firefox(socket)
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=30)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


def _listening_address(log: Path, browser: subprocess.Popen, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"WebDriver BiDi listening on (ws://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if browser.poll() is not None:
            raise RuntimeError(f"firefox-esr exited ({browser.returncode}): {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"firefox-esr did not start its BiDi server: {log.read_text(errors='replace')[-2000:]}")
