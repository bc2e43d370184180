"""JUnit XML for CI systems: ``mproxy check`` and ``mproxy conform`` write their verdicts with it.

One ``<testsuite>`` of test cases, each passed, failed (``<failure>``) or
skipped, with free text in ``<system-out>``; the shape Jenkins, GitLab and
GitHub test reporters read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


@dataclass
class TestCase:
    """One JUnit test case; ``failure`` (a one-line message) makes it fail, ``skipped`` skips it."""

    __test__ = False  # not a pytest class

    name: str
    classname: str
    failure: str | None = None
    details: str = ""
    output: str = ""
    skipped: str | None = None
    time: float = 0.0


def _clean(text: str) -> str:
    """XML 1.0 cannot hold most control characters: they are written escaped."""
    return "".join(c if c in "\t\n\r" or c >= " " else f"\\x{ord(c):02x}" for c in text)


def junit_xml(suite: str, cases: list[TestCase]) -> str:
    failures = sum(1 for case in cases if case.failure is not None)
    skipped = sum(1 for case in cases if case.skipped is not None and case.failure is None)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures))
    element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures),
                            errors="0", skipped=str(skipped))
    for case in cases:
        item = ET.SubElement(element, "testcase", name=_clean(case.name), classname=case.classname,
                             time=f"{case.time:.3f}")
        if case.failure is not None:
            failure = ET.SubElement(item, "failure", message=_clean(case.failure))
            failure.text = _clean(case.details)
        elif case.skipped is not None:
            ET.SubElement(item, "skipped", message=_clean(case.skipped))
        if case.output:
            ET.SubElement(item, "system-out").text = _clean(case.output)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, suite: str, cases: list[TestCase]) -> None:
    try:
        path.write_text(junit_xml(suite, cases), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the JUnit report: {exc.strerror or exc}") from None
