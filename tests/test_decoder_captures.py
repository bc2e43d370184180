"""Every capture in captures/ decoded and checked against the ground truth its recorder wrote.

The truth is written by the side that sent each frame, at the moment it sent
it, so it is independent of every decoder. Compared per direction (src, dst),
in order: every header field, carrier, stream offset and length, body length
and body sha256. impaired.pcap: all frames but those the truth marks lost,
and the loss must be reported.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from mproxy_scapy.decoder import DecodedFrame, Decoder, decode_capture
from mproxy_scapy.tls import KeyLog

from support import CAPTURES

CAPTURE_NAMES = ("raw-tcp.pcap", "websocket.pcap", "wss.pcapng", "wss-tls12.pcapng", "go-dialect.pcap",
                 "reference-js.pcap", "impaired.pcap", "junk.pcap", "false-sync.pcap", "deflate.pcap",
                 "impaired-ws.pcap", "impaired-ack.pcap")
COMPARED = ("carrier", "offset", "length", "version", "hdrlen", "family", "address", "port", "datalen", "service",
            "serviceport", "name", "servicename", "kind", "dialect", "body_len", "body_sha256")


def load_truth(name: str) -> list[dict]:
    path = CAPTURES / f"{name}.truth.ndjson"
    assert path.is_file(), f"{path} is missing (the captures issue records it)"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_lost(record: dict) -> bool:
    return bool(record.get("lost"))


def decoded(name: str) -> tuple[Decoder, list[DecodedFrame]]:
    path = CAPTURES / name
    assert path.is_file(), f"{path} is missing (the captures issue records it)"
    keys = path.with_suffix(".keys")
    decoder = Decoder(keylog=KeyLog.load(keys) if keys.is_file() else None)
    records = [r for r in decode_capture(path, decoder=decoder) if isinstance(r, DecodedFrame)]
    return decoder, records


def by_direction(items, key):
    groups = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return groups


def as_truth_fields(record: DecodedFrame) -> dict:
    frame = record.frame
    values = {"carrier": record.carrier, "body_sha256": frame.body_sha256}
    for name in COMPARED:
        values.setdefault(name, getattr(frame, name, None))
    return values


def manifest_entry(name: str) -> dict:
    return json.loads((CAPTURES / "manifest.json").read_text())[name]


def merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_capture_matches_its_truth(name):
    truth = load_truth(name)
    decoder, records = decoded(name)
    junk = manifest_entry(name).get("junk", [])
    frames = [r for r in records if r.frame.is_frame]
    expected = by_direction([t for t in truth if not is_lost(t)], lambda t: (t["src"], t["dst"]))
    got = by_direction(frames, lambda r: (r.src, r.dst))
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    # after lost WebSocket framing the lost wire bytes (headers too) count as lost M-PROXY bytes: offsets move
    compared = [k for k in COMPARED if not (k == "offset" and is_impaired(name) and "ws" in name)]
    for direction, wanted in expected.items():
        have = [{k: v for k, v in as_truth_fields(r).items() if k in compared} for r in got[direction]
                if not ((is_impaired(name) or junk) and r.frame.problems)]
        wanted_fields = [{k: t.get(k) for k in compared} for t in wanted]
        assert have == wanted_fields, direction
        clean = [r for r in got[direction] if not r.frame.problems]
        if not is_impaired(name) and not junk:
            assert len(clean) == len(got[direction])
    if is_impaired(name):
        assert any(is_lost(t) for t in truth)
        assert decoder.problem_counts["tcp.gap"] > 0 or decoder.problem_counts["gap"] > 0
    elif junk:
        assert decoder.problem_counts["garbage_skipped"] > 0
    else:
        assert not decoder.problem_counts, decoder.problem_counts


@pytest.mark.parametrize("name", [n for n in CAPTURE_NAMES if manifest_entry(n).get("junk")])
def test_what_is_not_a_frame_is_exactly_the_junk_the_recorder_wrote(name):
    """Skipped garbage and the frames read with problems (a false sync's short header) cover the junk, no more."""
    _, records = decoded(name)
    entry = manifest_entry(name)
    for direction in ("relay->device", "device->relay"):
        src = {t["src"] for t in load_truth(name) if t["direction"] == direction}
        found = [(r.frame.offset, r.frame.offset + r.frame.length) for r in records
                 if r.src in src and (not r.frame.is_frame or r.frame.problems)]
        written = [(j["offset"], j["offset"] + j["length"]) for j in entry["junk"] if j["direction"] == direction]
        assert merged(found) == merged(written), direction


def is_impaired(name: str) -> bool:
    return name.startswith("impaired")


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_pcap_frame_and_time_are_those_of_a_real_packet(name):
    _, records = decoded(name)
    assert records
    for direction in by_direction(records, lambda r: (r.tunnel, r.direction)).values():
        numbers = [r.pcap_frame for r in direction]
        assert numbers == sorted(numbers) and numbers[0] >= 1
    assert all(r.ts > 1e9 for r in records)
