"""The M-PROXY records tshark shows with the generated dissector, in the decoder's JSON shape.

tshark runs through the Wireshark matrix (``matrix.py``): one of its versions, as an
unprivileged user, with the dissector checked to be registered, and a profile copied
from a fresh folder (``WIRESHARK_CONFIG_DIR`` and ``HOME``) so nothing of the user's
profile changes the result.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wireshark import matrix

from mproxy_scapy.spec import PROBLEM_EXPERT_PREFIX

REPO = Path(__file__).resolve().parents[2]
DISSECTOR = REPO / "dissectors" / "mproxy.lua"
NUMBER_KEYS = ("version", "hdrlen", "port", "datalen", "serviceport", "offset", "length")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TEXT_KEYS = ("family", "address", "service", "name", "servicename", "kind", "dialect", "client_id")


TsharkResult = matrix.Result


def run_tshark(args: list[str], config_home: Path, version: matrix.Version, *, lua: Path = DISSECTOR,
               timeout: float = 300) -> TsharkResult:
    """tshark of ``version`` with our dissector (checked to be registered) and the profile under ``config_home``."""
    return matrix.run(version, ["-X", f"lua_script:{lua}", *args], config_home, timeout=timeout)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _collect(node: Any, out: dict[str, list[Any]]) -> None:
    """Every ``mproxy.*`` and expert value under one record's tree, flattened."""
    if isinstance(node, list):
        for item in node:
            _collect(item, out)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key.startswith(PROBLEM_EXPERT_PREFIX):
            continue
        if key == "_ws.expert":
            for expert in _items(value):
                kinds = [k[len(PROBLEM_EXPERT_PREFIX):] for k in expert if k.startswith(PROBLEM_EXPERT_PREFIX)]
                if kinds:
                    out.setdefault("problems", []).append(
                        {"kind": kinds[0], "detail": expert.get("_ws.expert.message", "")})
        elif key.startswith("mproxy.") and not isinstance(value, (dict, list)):
            out.setdefault(key[len("mproxy."):], []).append(value)
        else:
            _collect(value, out)


def _record(tree: dict[str, Any], pcap_frame: int, src: str, dst: str) -> dict[str, Any]:
    values: dict[str, list[Any]] = {}
    _collect(tree, values)
    first = {k: v[0] for k, v in values.items() if k != "problems"}
    record: dict[str, Any] = {"pcap_frame": pcap_frame, "src": first.get("src", src), "dst": first.get("dst", dst)}
    for key in NUMBER_KEYS:
        text = first.get(key)
        record[key] = int(text, 0) if text is not None else None
    for key in TEXT_KEYS:
        record[key] = first.get(key)
    body = bytes.fromhex(first["body"].replace(":", "")) if first.get("body") else b""
    record["body_len"] = int(first["body_len"]) if "body_len" in first else len(body)
    lost = any(p["kind"] == "gap" for p in values.get("problems", []))
    if first.get("body"):
        record["body_sha256"] = hashlib.sha256(body).hexdigest()
    elif record["datalen"] == 0 and record["kind"] not in ("garbage", "gap") and not lost:
        record["body_sha256"] = EMPTY_SHA256  # as the decoder writes a declared-empty body
    else:
        record["body_sha256"] = None
    record["problems"] = values.get("problems", [])
    if record["kind"] == "control" and "control.args" in first:
        control: list[Any] = []
        if "control.id" in first:
            control.append(int(first["control.id"]))
        if "control.command" in first:
            control.append(first["control.command"])
        control.extend(json.loads(first["control.args"]))
        record["control"] = control
        if "control.reply_to" in first:
            record["reply_to"] = int(first["control.reply_to"])
    return record


def _endpoint(layers: dict[str, Any], which: str) -> str:
    ip = layers.get("ip") or layers.get("ipv6") or {}
    address = ip.get(f"ip.{which}") or ip.get(f"ipv6.{which}")
    port = (layers.get("tcp") or {}).get(f"tcp.{which}port")
    if isinstance(address, list):
        address = address[-1]
    if isinstance(port, list):
        port = port[-1]
    return f"[{address}]:{port}" if address and ":" in address else f"{address}:{port}"


def records_from_json(text: str) -> list[dict[str, Any]]:
    records = []
    for packet in json.loads(text or "[]"):
        layers = packet["_source"]["layers"]
        if "mproxy" not in layers:
            continue
        number = int(_items(layers["frame"])[0]["frame.number"])
        src, dst = _endpoint(layers, "src"), _endpoint(layers, "dst")
        for tree in _items(layers["mproxy"]):
            if isinstance(tree, dict) and "mproxy.kind" in tree:
                records.append(_record(tree, number, src, dst))
    return records


def tshark_records(pcap: Path, config_home: Path, version: matrix.Version, extra: list[str] | None = None,
                   ) -> tuple[list[dict], TsharkResult]:
    """The M-PROXY records of ``pcap`` as the Lua dissector shows them (tokens shown, to compare)."""
    result = run_tshark(["-r", str(pcap), "-o", "mproxy.show_tokens:TRUE", "-T", "json", "--no-duplicate-keys",
                         "-J", "frame ip ipv6 tcp mproxy", *(extra or [])], config_home, version)
    return records_from_json(result.stdout), result
