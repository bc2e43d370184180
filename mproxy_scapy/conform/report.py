"""How ``mproxy conform`` shows its verdict: text with hexdump diffs, JSON, JUnit test cases."""

from __future__ import annotations

import base64
import json
from typing import Any

from ..junit import TestCase
from ..rules import BEHAVIOURS_BY_ID
from ..textout import safe_text
from .engine import Divergence, Report
from .oracle import Refused, chunks_of

GROUPS = (("vectors", "reference vectors"), ("edge", "edge cases"), ("unpack", "unpack chunkings"))
MAX_SHOWN = 64
"""Longer base64 texts and byte strings are shown cut, with their length."""


def short_request(request: dict[str, Any]) -> Any:
    """The request for display: long base64 bodies and chunk lists cut, the rest as it is."""

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if key == "base64" and isinstance(value, str) and len(value) > MAX_SHOWN:
            size = len(base64.b64decode(value))
            return f"<{size} bytes: {base64.b64decode(value)[:16].hex()}...>"
        if isinstance(value, str) and len(value) > 4 * MAX_SHOWN:
            return value[: 4 * MAX_SHOWN] + f"...<{len(value)} characters>"
        return value

    return walk(request)


def hexdiff(expected: bytes, actual: bytes, *, width: int = 16, context: int = 1, max_rows: int = 12) -> str:
    """Side-by-side hex rows of both outputs around where they differ, ``^^`` under differing bytes."""
    rows = max(len(expected), len(actual)) // width + 1
    differs = [expected[r * width:(r + 1) * width] != actual[r * width:(r + 1) * width] for r in range(rows)]
    shown = sorted({r + d for r, bad in enumerate(differs) if bad for d in range(-context, context + 1)
                    if 0 <= r + d < rows})
    column = width * 3 - 1
    lines = [f"  {'offset':8}  {'proxy-packer 2.0.4':{column}}   packer under test"]
    last = -1
    for row in shown[:max_rows]:
        if row != last + 1 and last >= 0:
            lines.append("  ...")
        last = row
        want, got = expected[row * width:(row + 1) * width], actual[row * width:(row + 1) * width]
        lines.append(f"  {row * width:08x}  {want.hex(' '):{column}}   {got.hex(' ')}")
        if differs[row]:
            marks = "".join("^^ " if i >= len(want) or i >= len(got) or want[i] != got[i] else "   "
                            for i in range(max(len(want), len(got))))
            lines.append(f"  {'':8}  {marks[:len(want) * 3]:{column}}   {marks[:len(got) * 3]}".rstrip())
    if len(shown) > max_rows:
        lines.append(f"  ... ({len(shown) - max_rows} more rows differ or surround a difference)")
    return "\n".join(lines)


def _output_text(value: Any) -> str:
    if isinstance(value, Refused):
        return f"refused: {safe_text(value.message)}"
    if isinstance(value, bytes):
        shown = value[:MAX_SHOWN].hex()
        return f"{len(value)} bytes: {shown}{'...' if len(value) > MAX_SHOWN else ''}"
    if value is None:
        return "no answer"
    return safe_text(json.dumps(value)[: 4 * MAX_SHOWN])


def divergence_text(index: int, total: int, divergence: Divergence) -> str:
    behaviour = BEHAVIOURS_BY_ID[divergence.behaviour]
    lines = [f"divergence {index}/{total}: {behaviour.id} {behaviour.title}"]
    where = divergence.case
    if divergence.also:
        shown = ", ".join(divergence.also[:3]) + (", ..." if len(divergence.also) > 3 else "")
        where += f" (and {len(divergence.also)} more: {shown})"
    lines.append(f"  first case:   {safe_text(where)}")
    minimised = f"minimised in {divergence.steps} steps" if divergence.steps else "as drawn"
    shown = json.dumps(short_request(divergence.request), ensure_ascii=False)
    lines.append(f"  input ({minimised}): {safe_text(shown)}")
    if divergence.request.get("op") == "unpack":
        chunks = chunks_of(divergence.request)
        lines.append(f"  chunks sent:  {len(chunks)}: " + " | ".join(c.hex() for c in chunks)[: 4 * MAX_SHOWN])
    lines.append(f"  what differs: {safe_text(divergence.detail)}")
    lines.append(f"  reference:    {behaviour.detail}")
    lines.append(f"  proxy-packer 2.0.4: {_output_text(divergence.expected)}")
    lines.append(f"  packer under test:  {_output_text(divergence.actual)}")
    if isinstance(divergence.expected, bytes) and isinstance(divergence.actual, bytes):
        lines.append(hexdiff(divergence.expected, divergence.actual))
    if divergence.stderr:
        lines.append("  packer's stderr:")
        lines += [f"    {safe_text(line)}" for line in divergence.stderr.splitlines()[-20:]]
    return "\n".join(lines)


def _counts(report: Report, group: str) -> dict[str, int]:
    statuses = [r.status for r in report.results if r.case.group == group]
    return {status: statuses.count(status) for status in ("pass", "fail", "skip", "not run")} | {"total": len(statuses)}


def summary_text(report: Report) -> str:
    lines = [f"mproxy conform: {safe_text(report.command)}"]
    for group, label in GROUPS:
        counts = _counts(report, group)
        if not counts["total"]:
            continue
        parts = [f"{counts['pass']} agree"]
        if counts["fail"]:
            parts.append(f"{counts['fail']} diverge")
        if counts["skip"]:
            parts.append(f"{counts['skip']} skipped (the packer does not unpack)")
        if counts["not run"]:
            parts.append(f"{counts['not run']} not run")
        lines.append(f"  {label:18} {counts['total']:4} cases: {', '.join(parts)}")
    random_found = sum(1 for d in report.divergences if d.group == "random")
    if report.examples:
        found = f"{random_found} divergence{'s' if random_found != 1 else ''}" if random_found else "no divergence"
        stopped = f" (stopped early: {report.random_stopped})" if report.random_stopped else ""
        lines.append(f"  {'random cases':18} {report.random_run:4} cases from seed {report.seed}: {found}{stopped}")
    if report.starts > 1:
        lines.append(f"  the packer was started {report.starts} times (restarted after failed cases)")
    return "\n".join(lines)


def report_text(report: Report) -> str:
    parts = [summary_text(report)]
    total = len(report.divergences)
    parts += [divergence_text(i, total, d) for i, d in enumerate(report.divergences, 1)]
    if report.gave_up:
        parts.append(f"gave up on the packer: {report.gave_up}")
    verdict = "FAIL" if report.failed else "pass"
    parts.append(f"verdict: {verdict}" + (f": {total} divergence{'s' if total != 1 else ''}" if total else
                                          ": every case agrees with proxy-packer 2.0.4"))
    return "\n".join(parts) + "\n"


def _json_output(value: Any) -> Any:
    if isinstance(value, Refused):
        return {"error": value.message}
    if isinstance(value, bytes):
        return {"hex": value.hex() if len(value) <= 4096 else value[:4096].hex(), "length": len(value)}
    return value


def report_json(report: Report) -> dict[str, Any]:
    return {
        "packer": report.command,
        "verdict": "fail" if report.failed else "pass",
        "cases": {group: _counts(report, group) for group, _ in GROUPS},
        "random": {"examples": report.examples, "run": report.random_run, "seed": report.seed},
        "unpack_supported": report.unpack_supported,
        "gave_up": report.gave_up,
        "divergences": [{
            "behaviour": d.behaviour, "title": BEHAVIOURS_BY_ID[d.behaviour].title, "detail": d.detail,
            "case": d.case, "group": d.group, "also": d.also, "shrink_steps": d.steps,
            "input": short_request(d.request), "expected": _json_output(d.expected),
            "actual": _json_output(d.actual), "failure": d.failure, "stderr": d.stderr,
        } for d in report.divergences],
    }


def junit_cases(report: Report) -> list[TestCase]:
    """One case per named case; one for the random phase (failed by each random divergence)."""
    first_seen = {d.case: i for i, d in enumerate(report.divergences, 1)}
    total = len(report.divergences)
    cases = []
    for result in report.results:
        case = TestCase(name=result.case.name, classname=f"mproxy.conform.{result.case.group}",
                        time=result.seconds)
        if result.status == "fail":
            behaviour = BEHAVIOURS_BY_ID[result.behaviour or "PP14"]
            case.failure = f"{behaviour.id} {behaviour.title}"
            index = first_seen.get(result.case.name)
            case.details = divergence_text(index, total, report.divergences[index - 1]) if index else \
                f"same divergence as a case before it ({behaviour.id})"
        elif result.status in ("skip", "not run"):
            case.skipped = "the packer does not unpack" if result.status == "skip" else "the packer was given up"
        cases.append(case)
    if report.examples:
        random_case = TestCase(name=f"random cases (--examples {report.examples}, --seed {report.seed})",
                               classname="mproxy.conform.random")
        found = [(i, d) for i, d in enumerate(report.divergences, 1) if d.group == "random"]
        if found:
            random_case.failure = ", ".join(f"{d.behaviour} {BEHAVIOURS_BY_ID[d.behaviour].title}" for _, d in found)
            random_case.details = "\n\n".join(divergence_text(i, total, d) for i, d in found)
        cases.append(random_case)
    return cases
