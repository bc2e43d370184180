"""py-spy samples of ``mproxy dissect`` summed per pipeline stage and per function.

A flame graph shows where one call chain spends its time; for "which stage costs what"
each sample's self time is charged to the innermost frame that belongs to a known stage.

    py-spy record -r 1000 -f raw -o dissect.spy -- python -m mproxy_scapy.cli dissect --json CAPTURE > /dev/null
    python benchmarks/spy_stages.py dissect.spy
"""

from __future__ import annotations

import re
import sys
from collections import Counter

STAGES: tuple[tuple[str, str], ...] = (
    ("sha256 of bodies (Frame.body_sha256)", "body_sha256"),
    ("JSON encoding (render.to_ndjson, json)", r"json/|to_ndjson"),
    ("record dict (render.frame_json)", r"render\.py"),
    ("M-PROXY parser (parser.py, header.py)", r"parser\.py|header\.py"),
    ("WebSocket unframing (websocket.py)", r"websocket\.py"),
    ("carrier routing (carrier.py)", r"carrier\.py"),
    ("sessions (sessions.py)", r"sessions\.py"),
    ("TCP reassembly (tcp.py)", r"/tcp\.py"),
    ("pcap reading + packet decode (pcap.py)", r"pcap\.py"),
    ("decoder glue (decoder.py, _source.py)", r"decoder\.py|_source\.py"),
    ("output loop (commands/dissect.py)", r"commands/dissect\.py"),
    ("interpreter start and imports", r"importlib|runpy|<module>"),
)
_PATTERNS = [(name, re.compile(pattern)) for name, pattern in STAGES]
_LINE = re.compile(r":\d+\)$")


def summarise(path: str, top: int = 20) -> str:
    stages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")
            functions[_LINE.sub(")", frames[-1])] += count
            for frame in reversed(frames):
                stage = next((name for name, pattern in _PATTERNS if pattern.search(frame)), None)
                if stage:
                    stages[stage] += count
                    break
            else:
                stages["other"] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "| stage (self time) | share |", "|---|---:|"]
    lines += [f"| {name} | {100 * n / total:.0f} % |" for name, n in stages.most_common()]
    lines += ["", "| function (self time) | share |", "|---|---:|"]
    lines += [f"| {name} | {100 * n / total:.1f} % |" for name, n in functions.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    print(summarise(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
