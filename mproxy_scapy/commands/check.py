"""``mproxy check [FILE]``: conformance verdicts over a capture, one rule table (docs/CONFORMANCE.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..checker import Checker, Finding
from ..errors import UserError
from ..junit import TestCase, write_junit
from ..rules import RULES, RULES_BY_ID, SEVERITIES, at_or_above, severity_rank
from ..textout import safe_text
from ._source import Source, add_file_argument, check_source


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="judge a capture against the protocol's rules (for implementers); exit 1 on findings",
        description="Decode a capture and check every tunnel and tunneled client against the M-PROXY "
        "rules (frames, client life, bodies, control channel; ids MPX1xx-4xx, see docs/CONFORMANCE.md). "
        "Prints one row per broken rule: count, first packet, tunnel and client.",
        epilog="Exit status: 0 no finding at or above --fail-on, 1 findings at or above it, 2 bad usage "
        "or input.",
    )
    add_file_argument(parser, live=True)
    parser.add_argument("--json", action="store_true", help="one JSON object per finding (NDJSON)")
    parser.add_argument("--junit", type=Path, metavar="FILE",
                        help="also write JUnit XML: one test case per rule, failed by its findings")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="error",
                        help="findings of this severity or louder make the exit status 1 (default: error)")
    parser.add_argument("--rule", action="append", metavar="ID[,ID...]",
                        help="check only these rules (repeatable)")
    parser.add_argument("--ignore", action="append", metavar="ID[,ID...]",
                        help="do not check these rules (repeatable)")
    parser.add_argument("--list-rules", action="store_true",
                        help="print the rules (id, severity, title) and exit; docs/CONFORMANCE.md explains each")
    parser.set_defaults(func=run)


def selected_rules(chosen: list[str] | None, ignored: list[str] | None) -> list[str]:
    """Rule ids to check, in table order; an unknown id is a usage error."""

    def ids(values: list[str] | None) -> set[str]:
        out = {part.strip().upper() for value in values or [] for part in value.split(",") if part.strip()}
        unknown = sorted(out - RULES_BY_ID.keys())
        if unknown:
            raise UserError(f"unknown rule id(s) {', '.join(unknown)} (see docs/CONFORMANCE.md)")
        return out

    only, skip = ids(chosen), ids(ignored)
    return [rule.id for rule in RULES if (not only or rule.id in only) and rule.id not in skip]


class CheckRecords:
    """The checker as the source's transform: it runs where records are decoded (in each worker with
    ``--jobs``: a tunnel's records all go to one worker, so a checker per worker sees whole tunnels).
    Records give the list of their findings, or None."""

    def __init__(self, rules: list[str]) -> None:
        self.rules = rules
        self.checker: Checker | None = None

    def __call__(self, record: Any, decoder: Any) -> list[Finding] | None:
        if self.checker is None:
            self.checker = Checker(decoder.tunnels, self.rules)
        return self.checker.add(record) or None


class Tally:
    """Counts per rule, with the first findings of each kept (``KEPT``): memory stays bounded however many."""

    KEPT = 100

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.kept: dict[str, list[Finding]] = {}

    def add(self, finding: Finding) -> None:
        self.counts[finding.rule] = self.counts.get(finding.rule, 0) + 1
        kept = self.kept.setdefault(finding.rule, [])
        if len(kept) < self.KEPT:
            kept.append(finding)

    def total(self, severity: str | None = None) -> int:
        return sum(n for rule, n in self.counts.items() if severity is None or RULES_BY_ID[rule].severity == severity)


def run(args: argparse.Namespace) -> int:
    rules = selected_rules(args.rule, args.ignore)
    if args.list_rules:
        sys.stdout.write("".join(f"{r} {RULES_BY_ID[r].severity:7} {RULES_BY_ID[r].title}\n" for r in rules))
        return 0
    source = Source(args, report_closed=True, transform=CheckRecords(rules))
    tally = Tally()
    for found in source:
        for finding in found:
            tally.add(finding)
            if args.json:
                sys.stdout.write(json.dumps(finding.to_json()) + "\n")
    if not args.json:
        _print_table(tally, rules)
    sys.stdout.flush()
    check_source(source)
    failing = sum(tally.total(s) for s in SEVERITIES if at_or_above(s, args.fail_on))
    if args.junit:
        write_junit(args.junit, "mproxy check", junit_cases(tally, rules, args.fail_on, source.where))
    counts = ", ".join(f"{tally.total(s)} {s}" for s in SEVERITIES)
    print(f"mproxy check: {tally.total()} findings ({counts}), {len(rules)} rules, {source.totals.tunnel_count} "
          f"tunnels: {'FAIL' if failing else 'pass'} (--fail-on {args.fail_on})", file=sys.stderr)
    return 1 if failing else 0


def _packet_text(finding: Finding) -> str:
    """The packet number, with its file when several inputs are read."""
    number = "" if finding.pcap_frame is None else str(finding.pcap_frame)
    return f"{finding.pcap_file}:{number}" if finding.pcap_file else number


def _tunnel_text(finding: Finding) -> str:
    return f"t{finding.tunnel} {finding.src} → {finding.dst}" if finding.tunnel is not None else ""


def _print_table(tally: Tally, rules: list[str]) -> None:
    if not tally.counts:
        print(f"no findings ({len(rules)} rules checked)")
        return
    from rich.console import Console  # rich loads only where a table is drawn
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="M-PROXY conformance findings")
    for column in ("rule", "severity", "count", "first packet", "tunnel", "client", "title / first finding"):
        table.add_column(column, justify="right" if column in ("count", "first packet") else "left")
    for rule_id in sorted(tally.counts, key=lambda r: (severity_rank(RULES_BY_ID[r].severity), r)):
        first = tally.kept[rule_id][0]
        table.add_row(rule_id, first.severity, str(tally.counts[rule_id]), escape(safe_text(_packet_text(first))),
                      escape(_tunnel_text(first)), escape(safe_text(first.client)),
                      f"{escape(first.title)}\n[dim]{escape(safe_text(first.detail))}[/dim]")
    Console(highlight=False, width=None if sys.stdout.isatty() else 160).print(table)


def junit_cases(tally: Tally, rules: list[str], fail_on: str, where: str) -> list[TestCase]:
    """One case per checked rule: failed when it has findings at or above ``fail_on``, else passed
    (quieter findings listed as output); the first ``Tally.KEPT`` findings of a rule are listed."""
    cases = []
    for rule_id in rules:
        rule = RULES_BY_ID[rule_id]
        items = tally.kept.get(rule_id, [])
        count = tally.counts.get(rule_id, 0)
        lines = "\n".join(f"packet {_packet_text(f)} {_tunnel_text(f)} {f.client or ''}: {f.detail}" for f in items)
        if count > len(items):
            lines += f"\n... and {count - len(items)} more"
        case = TestCase(name=f"{rule.id} {rule.title}", classname=f"mproxy.check.{rule.severity}")
        if items and at_or_above(rule.severity, fail_on):
            case.failure = f"{count} x {rule.title} (first at packet {_packet_text(items[0])}) in {where}"
            case.details = lines
        elif items:
            case.output = lines
        cases.append(case)
    return cases
