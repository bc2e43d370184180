"""Python codec vs the real proxy-packer 2.0.4 under Node.js, both ways, on random frames."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from mproxy_scapy.codec import Unpacker, pack, pack_header

from support import delivered_as_reference, recording_handlers

DRIVER = Path(__file__).with_name("proxy_packer_driver.js")
SERVICES = ["https", "http", "ssh", "tls", "tcp", "udp", "smtps", "xmpp-client", "", "default"]
SERVICE_ARGS = [None, None, None, "connection", "end", "error", "pause", "resume", "control"]
NAMES = ["", "pokemap.hellabit.com", "ex1.telebit.io", "a.b.c.example", "xn--bcher-kva.example", "ünïcødé.test"]

pytestmark = pytest.mark.node


def random_ipv6(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return f"::ffff:{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    groups = [f"{rng.randrange(65536):x}" for _ in range(8)]
    return ":".join(groups) if rng.random() < 0.5 else f"{groups[0]}::{groups[7]}"


def random_frame(rng: random.Random) -> dict:
    service = rng.choice(SERVICE_ARGS)
    if service == "control":
        data = {"json": rng.choice([
            [rng.randrange(1, 99), "hello", 254, ["add_token", "delete_token"]],
            [-rng.randrange(1, 99), None],
            [rng.randrange(1, 99), "add_token", "eyJ" + "x" * rng.randrange(40)],
            [-rng.randrange(1, 99), {"message": "unknown command", "code": "E_UNKNOWN_COMMAND"}],
            [0, "[Error] out-of-band"],
        ])}
        return {"call": "pack", "meta": None, "data": data, "service": service}
    family = rng.choice(["IPv4", "IPv6"])
    address = (
        ".".join(str(rng.randrange(256)) for _ in range(4)) if family == "IPv4" else random_ipv6(rng)
    )
    meta = {
        "family": family, "address": address, "port": rng.randrange(1, 65536),
        "service": rng.choice(SERVICES), "serviceport": rng.choice([443, 80, 22, 3000, 0, None]),
        "name": rng.choice(NAMES),
    }
    if service == "error" and rng.random() < 0.5:
        data: dict | None = {"json": {"message": "ECONNREFUSED", "code": rng.choice(["E_CONN", "ENOTFOUND"])}}
    elif rng.random() < 0.15:
        data = None
    else:
        size = rng.choice([0, 1, 2, 17, 200, 1448, 5000])
        body = rng.randbytes(size)
        if service == "error" and body:
            body = b"\xff" + body[1:]  # a JSON number or string here makes the reference throw: see below
        data = {"hex": body.hex()}
    return {"call": rng.choice(["pack", "packHeader"]), "meta": meta, "data": data, "service": service}


def python_pack(case: dict) -> bytes:
    data = case["data"]
    value = None if data is None else (bytes.fromhex(data["hex"]) if "hex" in data else data["json"])
    if case["call"] == "pack":
        return pack(case["meta"], value, case["service"])
    return pack_header(case["meta"], value, case["service"])


def run_reference(proxy_packer_dir: Path, tmp_path: Path, frames: list[dict], splits: list[int]) -> dict:
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"frames": frames, "splits": splits}))
    result = subprocess.run(
        ["node", str(DRIVER), str(proxy_packer_dir), str(cases)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_frames_pack_and_unpack_like_the_reference(proxy_packer_dir, tmp_path, seed):
    rng = random.Random(seed)
    frames = [random_frame(rng) for _ in range(150)]
    splits = [rng.randrange(1, 700) for _ in range(50)]
    reference = run_reference(proxy_packer_dir, tmp_path, frames, splits)

    assert [python_pack(case).hex() for case in frames] == reference["packed"]

    stream = bytes.fromhex(reference["stream_hex"])
    calls: list = []
    unpacker = Unpacker(recording_handlers(calls))
    at = 0
    for size in (rng.randrange(1, 900) for _ in iter(int, 1)):
        if at >= len(stream):
            break
        unpacker.feed(stream[at : at + size])
        at += size
    assert delivered_as_reference(calls) == reference["delivered"]
    assert len(reference["delivered"]) == len(frames)


def test_reference_pack_js_output_is_what_mproxy_pack_writes(proxy_packer_dir, tmp_path, reference_dir):
    """The reference's own test/pack.js input gives output.bin through our command as through its code."""
    from mproxy_scapy.cli import main

    out = tmp_path / "out.bin"
    assert main(["pack", str(reference_dir / "input.json"), str(out)]) == 0
    assert out.read_bytes() == (reference_dir / "output.bin").read_bytes()
    assert (proxy_packer_dir / "test" / "output.bin").read_bytes() == out.read_bytes()


def test_error_body_that_is_a_json_number_throws_in_the_reference_but_not_here(proxy_packer_dir, tmp_path):
    """The reference assigns properties to JSON.parse's result under 'use strict': a number throws."""
    frame = {"call": "pack", "meta": {"family": "IPv4", "address": "10.0.0.1", "port": 1}, "data": {"hex": "36"},
             "service": "error"}
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"frames": [frame], "splits": []}))
    result = subprocess.run(["node", str(DRIVER), str(proxy_packer_dir), str(cases)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "Cannot create property 'family' on number '6'" in result.stderr
    calls: list = []
    Unpacker(recording_handlers(calls)).feed(python_pack(frame))
    assert [(name, tun["message"], tun["code"]) for name, tun in calls] == [
        ("onerror", 'e:{"type":"Buffer","data":[54]}', "E_UNKNOWN_ERR"),
    ]
