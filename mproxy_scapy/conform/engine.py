"""A conform run: the named cases, each divergence minimised, then the seeded random phase."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cases import named_cases
from .judge import Outcome, run_case
from .oracle import Case
from .packer import PackerProcess
from .shrink import ShrinkAborted, shrink

MAX_FAILURES_IN_A_ROW = 5
"""After this many cases in a row without a proper answer the packer is given up."""
MAX_SHRINK_FAILURES = 3
"""Candidates the packer fails to answer (hangs, exits) before shrinking a divergence stops there."""
MAX_RANDOM_DIVERGENCES = 5
"""Distinct behaviours the random phase looks for before it stops."""


@dataclass
class Divergence:
    """One divergence, minimised."""

    behaviour: str
    detail: str
    case: str
    group: str
    original: dict[str, Any]
    request: dict[str, Any]
    expected: Any
    actual: Any
    stderr: str = ""
    steps: int = 0
    also: list[str] = field(default_factory=list)
    failure: str | None = None


@dataclass
class CaseResult:
    case: Case
    status: str  # pass, fail, skip, not run
    behaviour: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    command: str
    results: list[CaseResult] = field(default_factory=list)
    divergences: list[Divergence] = field(default_factory=list)
    examples: int = 0
    seed: int = 0
    random_run: int = 0
    unpack_supported: bool = True
    gave_up: str | None = None
    random_stopped: str | None = None
    starts: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.divergences) or self.gave_up is not None


def run(command: str, *, examples: int, seed: int, timeout: float, large: bool = True,
        progress: Callable[[str], None] | None = None) -> Report:
    report = Report(command, examples=examples, seed=seed)
    with PackerProcess(command, timeout=timeout) as packer:
        _named_phase(packer, report, named_cases(large=large), progress)
        if report.gave_up is None and examples > 0:
            random_phase(packer, report, examples, seed, progress)
        report.starts = packer.starts
    return report


def _named_phase(packer: PackerProcess, report: Report, cases: list[Case],
                 progress: Callable[[str], None] | None) -> None:
    by_behaviour: dict[str, Divergence] = {}
    failures_in_a_row = 0
    for case in cases:
        if report.gave_up is not None or (case.request["op"] == "unpack" and not report.unpack_supported):
            report.results.append(CaseResult(case, "not run" if report.gave_up else "skip"))
            continue
        started = time.monotonic()
        outcome = run_case(packer, case.request)
        seconds = time.monotonic() - started
        if outcome.unsupported:
            report.unpack_supported = False
            report.results.append(CaseResult(case, "skip", seconds=seconds))
            continue
        failures_in_a_row = failures_in_a_row + 1 if outcome.failure else 0
        if outcome.behaviour is None:
            report.results.append(CaseResult(case, "pass", seconds=seconds))
            continue
        report.results.append(CaseResult(case, "fail", outcome.behaviour, seconds))
        known = by_behaviour.get(outcome.behaviour)
        if known is not None:
            known.also.append(case.name)
        else:
            if progress:
                progress(f"{case.name}: {outcome.behaviour}, shrinking")
            by_behaviour[outcome.behaviour] = _minimised(packer, case, outcome)
            report.divergences.append(by_behaviour[outcome.behaviour])
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            report.gave_up = f"{failures_in_a_row} cases in a row without a proper answer"


def _minimised(packer: PackerProcess, case: Case, outcome: Outcome) -> Divergence:
    request, steps = case.request, 0
    final = outcome
    if outcome.failure is None:  # a hanging or crashing packer is not asked again and again
        last: dict[str, Outcome] = {}
        failures = 0

        def still_fails(candidate: dict[str, Any]) -> bool:
            nonlocal failures
            result = run_case(packer, candidate)
            if result.failure is not None:  # each costs up to --timeout: a few, and the smallest so far stands
                failures += 1
                if failures >= MAX_SHRINK_FAILURES:
                    raise ShrinkAborted
            if result.behaviour == outcome.behaviour and result.failure is None:
                last["outcome"] = result
                return True
            return False

        request, steps = shrink(case.request, still_fails)
        final = last.get("outcome", outcome)
    return Divergence(final.behaviour or "", final.detail, case.name, case.group, case.request, request,
                      final.expected, final.actual, final.stderr or outcome.stderr, steps, failure=outcome.failure)


class _Found(Exception):
    pass


def random_phase(packer: PackerProcess, report: Report, examples: int, seed: int,
                  progress: Callable[[str], None] | None) -> None:
    """Hypothesis draws ``examples`` cases from ``seed``; a divergence is shrunk by Hypothesis itself, then the
    search goes on for divergences that break other behaviours."""
    from .strategies import requests

    found = {d.behaviour for d in report.divergences}
    strategy = requests(unpack=report.unpack_supported)
    for _ in range(MAX_RANDOM_DIVERGENCES):
        count, last = _random_search(packer, strategy, examples, seed, found)
        report.random_run += count
        if "outcome" not in last:
            if last.get("broken"):
                report.random_stopped = "the packer failed to answer again"
            return
        outcome: Outcome = last["outcome"]
        request = last["request"]
        if progress:
            progress(f"random case: {outcome.behaviour}")
        report.divergences.append(Divergence(outcome.behaviour or "", outcome.detail, "random", "random", request,
                                             request, outcome.expected, outcome.actual, outcome.stderr,
                                             failure=outcome.failure))
        found.add(outcome.behaviour or "")
        if last.get("broken"):
            return


def _random_search(packer: PackerProcess, strategy: Any, examples: int, seed: int,
                   found: set[str]) -> tuple[int, dict[str, Any]]:
    """One Hypothesis run: the number of cases tried, and the (shrunk) first divergence of a new behaviour.

    Hypothesis replays the minimal failing example last, so the last failing call holds the shrunk input.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Flaky
    from hypothesis.reporting import with_reporter

    last: dict[str, Any] = {}
    count = 0

    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=[Phase.generate, Phase.shrink], print_blob=False)
    @hypothesis_seed(seed)
    @given(strategy)
    def probe(request: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if last.get("broken"):
            return
        outcome = run_case(packer, request)
        if outcome.failure is not None:  # not shrunk: every try could cost a timeout
            last["broken"] = True
            if outcome.behaviour not in found:
                last.update(request=request, outcome=outcome)
            raise _Found
        if outcome.behaviour is not None and outcome.behaviour not in found:
            last.update(request=request, outcome=outcome)
            raise _Found

    try:
        with with_reporter(lambda *args: None):
            probe()
    except (_Found, Flaky):
        pass
    except Exception:  # Hypothesis wraps what it cannot replay: the last failing example still stands
        if "outcome" not in last:
            raise
    return count, last


