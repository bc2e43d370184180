"""Run the capture fuzzer for a time budget: ``python fuzz/run.py --seconds N``.

Seeds the corpus from captures/ and the committed regression inputs, runs
``fuzz/capture_fuzzer.py`` under libFuzzer (via atheris) until the budget is
spent, restarting after each crash so one bug does not end the run, and
prints the figures: executions, coverage (instrumented decoder edges and
features), corpus size, and every crash / timeout / out-of-memory input.
Exit status 1 when any was found.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.seeds import write_seeds

FUZZER = Path(__file__).resolve().parent / "capture_fuzzer.py"
DICTIONARY = Path(__file__).resolve().parent / "mproxy.dict"
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
_STATUS = re.compile(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")


class Figures:
    """What the runs add up to."""

    def __init__(self) -> None:
        self.executions = 0
        self.coverage = 0
        self.features = 0
        self.corpus = 0
        self.runs = 0
        self.artifacts: list[Path] = []

    def summary(self, seconds: float) -> str:
        lines = [f"fuzz: {self.executions} executions in {seconds:.0f} s ({self.runs} fuzzer runs), "
                 f"coverage {self.coverage} edges, {self.features} features, corpus {self.corpus} inputs",
                 f"fuzz: {len(self.artifacts)} crashing/hanging inputs"]
        lines += [f"fuzz:   {path}" for path in self.artifacts]
        return "\n".join(lines)


def run_once(target: str, corpus: Path, artifacts: Path, seconds: int, max_len: int, timeout: int, rss_mb: int,
             log: Path, figures: Figures) -> None:
    """One libFuzzer run (its output kept in ``log``); it ends at the budget or at the first crash."""
    command = [sys.executable, str(FUZZER), "--target", target, str(corpus), f"-max_total_time={seconds}",
               f"-max_len={max_len}", f"-timeout={timeout}", f"-rss_limit_mb={rss_mb}",
               f"-artifact_prefix={artifacts}/", f"-dict={DICTIONARY}", "-print_final_stats=1", "-detect_leaks=0"]
    with log.open("a") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    figures.runs += 1
    executed = None
    for line in log.read_text(errors="replace").splitlines()[-400:]:
        status = _STATUS.match(line)
        if status:
            executed = int(status.group(1))
            figures.coverage = max(figures.coverage, int(status.group(2)))
            figures.features = max(figures.features, int(status.group(3)))
            figures.corpus = int(status.group(4))
        final = _EXECUTED.search(line)
        if final:
            executed = int(final.group(1))
    figures.executions += executed or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="total time budget (default 60)")
    parser.add_argument("--target", choices=("capture", "stream"), default="capture",
                        help="capture: mutate whole capture files; stream: mutate one tunnel's bytes (default capture)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="corpus/, artifacts/ and one fuzzer-N.log per run (default: $TMPDIR/mproxy-fuzz-TARGET)")
    parser.add_argument("--max-len", type=int, default=None,
                        help="largest input in bytes (default 32768 for capture, 4096 for stream: smaller "
                        "streams run ten times faster)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (a hang) (default 10)")
    parser.add_argument("--rss-mb", type=int, default=2048, help="memory limit in MB (default 2048)")
    args = parser.parse_args(argv)
    if args.max_len is None:
        args.max_len = 32768 if args.target == "capture" else 4096
    if args.workdir is None:
        args.workdir = Path(tempfile.gettempdir()) / f"mproxy-fuzz-{args.target}"

    corpus, artifacts = args.workdir / "corpus", args.workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    seeds = write_seeds(corpus, args.max_len, args.target)
    before = {p.name for p in artifacts.iterdir()}
    figures = Figures()
    start = time.monotonic()
    print(f"fuzz: {seeds} seeds, corpus {corpus}, artifacts {artifacts}", flush=True)
    while (left := args.seconds - (time.monotonic() - start)) >= 1:
        log = args.workdir / f"fuzzer-{figures.runs + 1}.log"
        log.write_text("")
        run_once(args.target, corpus, artifacts, int(left), args.max_len, args.timeout, args.rss_mb, log, figures)
    figures.artifacts = sorted(p for p in artifacts.iterdir()
                               if p.name not in before and p.name.startswith(ARTIFACT_PREFIXES))
    print(figures.summary(time.monotonic() - start), flush=True)
    return 1 if figures.artifacts else 0


if __name__ == "__main__":
    sys.exit(main())
