"""What each pipeline stage adds to ``mproxy dissect --json``, measured in-process on one capture.

Each line runs the pipeline one stage longer than the line before (best of ``--repeat``),
so the differences are the stage costs: packet source, TCP reassembly, carrier + parser +
decoder glue, body hashing, and the JSON record with its write. A second table times the
M-PROXY parser fed alone with the capture's TCP payloads (what ``parser.py`` costs without
the stages around it). Used for the profile in ``benchmarks/README.md``.

    python benchmarks/stages.py CAPTURE.pcap
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable

from mproxy_scapy.decoder import DecodedFrame, Decoder
from mproxy_scapy.parser import FrameParser
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.render import body_sha256, frame_json, to_ndjson
from mproxy_scapy.tcp import TcpReassembler


def read_only(path: str) -> None:
    for _ in open_capture(path):
        pass


def reassemble(path: str) -> None:
    reassembler = TcpReassembler()
    feed = reassembler.feed
    for item in open_capture(path):
        if type(item).__name__ == "Segment":
            feed(item)
    reassembler.close()


def decode(path: str) -> None:
    for _ in Decoder().decode(open_capture(path)):
        pass


def decode_and_hash(path: str) -> None:
    for record in Decoder().decode(open_capture(path)):
        if type(record) is DecodedFrame:
            body_sha256(record.frame)


def decode_to_json(path: str) -> None:
    with open(os.devnull, "w") as out:
        write = out.write
        for record in Decoder().decode(open_capture(path)):
            if type(record) is DecodedFrame:
                write(to_ndjson(frame_json(record)) + "\n")


STAGES: tuple[tuple[str, Callable[[str], None]], ...] = (
    ("open_capture (read + decode every packet)", read_only),
    ("+ TcpReassembler", reassemble),
    ("+ Decoder (carrier, parser, glue)", decode),
    ("+ body_sha256", decode_and_hash),
    ("+ frame_json + to_ndjson + write", decode_to_json),
)


def parser_alone(path: str, repeat: int) -> tuple[float, int, int]:
    """(seconds, payloads, records) of FrameParser fed every TCP payload of each direction in order.

    Valid for the generated captures (no loss, no reordering, raw TCP carrier).
    """
    payloads = [((seg.src, seg.sport, seg.dst, seg.dport), bytes(seg.payload))
                for seg in open_capture(path) if type(seg).__name__ == "Segment" and seg.payload]
    best, records = float("inf"), 0
    for _ in range(repeat):
        parsers: defaultdict[tuple, FrameParser] = defaultdict(FrameParser)
        start = time.perf_counter()
        records = sum(len(parsers[key].feed(data)) for key, data in payloads)
        best = min(best, time.perf_counter() - start)
    return best, len(payloads), records


def best_of(fn: Callable[[str], None], path: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(path)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--parser-alone", action="store_true",
                        help="also time FrameParser alone (raw-TCP captures from gen_capture.py only)")
    args = parser.parse_args()
    print("| cumulative stage | s |\n|---|---:|")
    for label, fn in STAGES:
        print(f"| {label} | {best_of(fn, args.capture, args.repeat):.2f} |")
    if args.parser_alone:
        seconds, payloads, records = parser_alone(args.capture, args.repeat)
        print(f"\nFrameParser alone: {seconds:.2f} s for {payloads} payloads, {records} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
