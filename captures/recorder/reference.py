"""The reference-js relay: proxy-packer 2.0.4 under Node.js, installed from npm at record time.

``NodeRelay`` runs captures/reference_relay.js and offers the same face as ``Relay``
(ports, ``linked``, ``flow``, ``wait_browsers``, ``close``) so the same browsers and the
same Python device run against it. Its frames' truth is logged by the Node.js side.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from .relay import RelayPort
from .truth import TruthLog, describe

PACKAGE = "proxy-packer@2.0.4"
SCRIPT = Path(__file__).resolve().parent.parent / "reference_relay.js"


def install_proxy_packer(workdir: Path) -> Path:
    """``npm install proxy-packer@2.0.4`` into a temporary prefix; returns the package folder."""
    prefix = workdir / "npm"
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(prefix), PACKAGE],
        check=True, capture_output=True, text=True, timeout=300,
    )
    package = prefix / "node_modules" / "proxy-packer"
    version = json.loads((package / "package.json").read_text())["version"]
    if version != "2.0.4":
        raise RuntimeError(f"npm installed proxy-packer {version}, not 2.0.4")
    return package


class NodeRelay:
    def __init__(self, package: Path, truth_path: Path, ports: dict[str, RelayPort]) -> None:
        self.truth_path = truth_path
        self._proc = subprocess.Popen(
            ["node", str(SCRIPT), str(package), str(truth_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._proc.stdout is not None
        assigned = json.loads(self._proc.stdout.readline())
        self.tunnel_port: int = assigned["tunnel"]
        self.port_of = {spec: assigned[key] for key, spec in ports.items()}
        self.linked = threading.Event()
        self._lock = threading.Lock()

    def _command(self, command: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(command) + "\n")
            self._proc.stdin.flush()

    def flow(self, browser_port: int, kind: str) -> None:
        self._command({"flow": kind, "port": browser_port})

    def wait_browsers(self) -> None:
        self._command({"drain": True})
        assert self._proc.stdout is not None
        if json.loads(self._proc.stdout.readline()) != "drained":
            raise RuntimeError("the Node.js relay did not drain")

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self._command({"quit": True})
        if self._proc.wait(15) != 0:
            raise RuntimeError("the Node.js relay failed")

    def merge_truth(self, truth: TruthLog) -> None:
        """Add the Node.js side's frames, numbered in the order it wrote them."""
        with self.truth_path.open(encoding="utf-8") as lines:
            for seq, line in enumerate(lines):
                logged = json.loads(line)
                frame = bytes.fromhex(logged["frame_hex"])
                truth.add(
                    {
                        "src": logged["src"],
                        "dst": logged["dst"],
                        "direction": logged["direction"],
                        "seq": seq,
                        "carrier": logged["carrier"],
                        "offset": logged["offset"],
                        "length": len(frame),
                        **describe(frame, len(frame) - 2 - frame[1]),
                        "packer": logged["packer"],
                        "ts": round(logged["ts"], 6),
                        "write_index": logged["write_index"],
                        "writes": logged["writes"],
                    }
                )
