"""``mproxy conform --packer COMMAND``: a packer under test against proxy-packer 2.0.4, case by case."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..junit import write_junit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "conform",
        help="differential test of a packer under test against proxy-packer 2.0.4 (for implementers)",
        description="Start COMMAND and speak the conform line protocol with it (docs/CONFORMANCE.md): the "
        "reference vectors, named edge cases and seeded random cases are packed (and unpacked, when it can) "
        "by it and by the reference; each divergence is shown minimised, with both outputs, a hexdump diff "
        "and the reference behaviour it breaks.",
        epilog="Exit status: 0 every case agrees, 1 a divergence (or a packer that hangs, exits or answers "
        "garbage), 2 bad usage. Adapters: examples/conform/.",
    )
    parser.add_argument("--packer", required=True, metavar="COMMAND",
                        help="the packer under test: a command line (split as a shell would, not run by one)")
    parser.add_argument("--examples", type=int, default=200, metavar="N",
                        help="random cases after the named ones (default 200; 0: none)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random cases (default 0)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="per case: a packer that has not answered by then fails it (default 10)")
    parser.add_argument("--skip-large", action="store_true", help="leave out the 16 MiB body case")
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML: one test case per case")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..conform import run as conform
    from ..conform.report import junit_cases, report_json, report_text

    if args.examples < 0:
        raise UserError("--examples must be 0 or more")
    if args.timeout <= 0:
        raise UserError("--timeout must be more than 0 seconds")
    if args.examples and importlib.util.find_spec("hypothesis") is None:
        raise UserError("random cases need Hypothesis: pip install 'mproxy-scapy[conform]' (or --examples 0)")

    def progress(text: str) -> None:
        if sys.stderr.isatty():
            print(f"mproxy conform: {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="mproxy-conform-") as scratch:
        if args.examples:
            # Hypothesis caches what it learns in ./.hypothesis: not in the user's working directory
            from hypothesis.configuration import set_hypothesis_home_dir

            set_hypothesis_home_dir(scratch)
        report = conform(args.packer, examples=args.examples, seed=args.seed, timeout=args.timeout,
                         large=not args.skip_large, progress=progress)
    if args.json:
        print(json.dumps(report_json(report), indent=1, ensure_ascii=False))
    else:
        sys.stdout.write(report_text(report))
    if args.junit:
        write_junit(args.junit, "mproxy conform", junit_cases(report))
    return 1 if report.failed else 0

