"""The atheris entry point over whole-capture decoding: ``python fuzz/capture_fuzzer.py [libFuzzer flags] CORPUS``.

Usually started by ``fuzz/run.py``, which seeds the corpus, restarts after a
crash and sums up the figures. Only mproxy_scapy is instrumented: coverage
means decoder edges, not the standard library's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["mproxy_scapy"]):
    from fuzz.targets import decode_capture_bytes


def test_one_input(data: bytes) -> None:
    decode_capture_bytes(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
