"""The atheris entry point: ``python fuzz/capture_fuzzer.py [--target capture|stream] [libFuzzer flags] CORPUS``.

``capture`` (default) mutates whole pcap/pcapng files; ``stream`` mutates one
tunnel's bytes, wrapped in a capture by ``targets.stream_capture``. Usually
started by ``fuzz/run.py``, which seeds the corpus, restarts after a crash
and sums up the figures. Only mproxy_scapy is instrumented: coverage means
decoder edges, not the standard library's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["mproxy_scapy"]):
    from fuzz.targets import TARGETS


def main() -> None:
    argv = list(sys.argv)
    target = "capture"
    if "--target" in argv:
        at = argv.index("--target")
        target = argv[at + 1]
        del argv[at : at + 2]
    atheris.Setup(argv, TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
