"""Reading the examples out of README.md and docs/*.md, and running an interpreter session as a doctest.

The convention these functions implement is written once, in ``tests/test_readme.py``'s
docstring (and summed up in docs/CONTRIBUTING.md). This module only parses; the test runs.
Run as a script (``python readme_examples.py SETUP DOC LINENO`` with the session on
standard input), it executes one ``>>>`` session as a doctest and exits with the
number of failed examples.
"""

from __future__ import annotations

import doctest
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "docs" / "NDJSON.md", ROOT / "docs" / "SCAPY.md", ROOT / "docs" / "REPORT.md"]
"""Where examples are run from: the README, and each document under docs/ that follows the convention
(add yours here once its examples run)."""

RUN_TAGS = {"console", "sh", "shell", "bash", "python"}
"""Fenced blocks with these info strings are examples; all of them are run."""

LISTING_TAGS = {"", "text"}
"""Fenced blocks that are listings or diagrams, not something to type."""

INTERPRETERS = {
    "scapy -H": "from scapy.all import *",
    "python3": "",
}
"""A ``$ `` command that starts one of these is followed by a ``>>>`` session: the value is the code
that gives the session the interpreter's own namespace (Scapy's shell starts with ``scapy.all``)."""


@dataclass
class Example:
    """One thing to run: a shell command, an interpreter session, or a Python script."""

    kind: str  # "command" (output compared), "unchecked" (sh block line), "session" (doctest), "script"
    doc: str  # the document, relative to the repository root
    block: int  # 1-based line of the block's first content line (commands of one block share a folder)
    lineno: int  # 1-based line of the document where it starts
    source: str  # the command line, or the session / script text
    expected: list[str] = field(default_factory=list)  # shown output lines (commands) or banner (sessions)
    interpreter: str = ""  # for sessions: the INTERPRETERS key

    @property
    def id(self) -> str:
        first = f"{self.interpreter} session" if self.kind == "session" else self.source.splitlines()[0]
        return f"{self.doc}:{self.lineno} {first[:60]}"


@dataclass
class Block:
    tag: str
    lineno: int  # line of the first content line
    lines: list[str]


def fenced_blocks(text: str, doc: str = "README.md") -> list[Block]:
    """Every fenced (```) block with its info string and the line its content starts on."""
    blocks: list[Block] = []
    current: Block | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if current is None:
            match = re.match(r"^```(\S*)\s*$", line)
            if match:
                current = Block(match.group(1).lower(), number + 1, [])
        elif line.rstrip() == "```":
            blocks.append(current)
            current = None
        else:
            current.lines.append(line)
    if current is not None:
        raise ValueError(f"{doc}:{current.lineno - 1}: fenced block never closed")
    return blocks


def examples(text: str, doc: str = "README.md") -> list[Example]:
    """A document's examples in order, as the convention in tests/test_readme.py reads them."""
    found: list[Example] = []
    for block in fenced_blocks(text, doc):
        if block.tag in LISTING_TAGS:
            continue
        if block.tag not in RUN_TAGS:
            raise ValueError(f"{doc}:{block.lineno - 1}: fenced block tagged {block.tag!r}: use one of "
                             f"{sorted(RUN_TAGS | LISTING_TAGS - {''})} or none (see tests/test_readme.py)")
        if block.tag == "console":
            found += _console(block, doc)
        elif block.tag == "python":
            body = "\n".join(block.lines) + "\n"
            kind = "session" if any(line.startswith(">>>") for line in block.lines) else "script"
            found.append(Example(kind, doc, block.lineno, block.lineno, body, interpreter="python3"))
        else:
            for offset, line in enumerate(block.lines):
                command = re.sub(r"\s+#.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append(Example("unchecked", doc, block.lineno, block.lineno + offset, command))
    return found


def _console(block: Block, doc: str) -> list[Example]:
    found: list[Example] = []
    lines = block.lines
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            raise ValueError(f"{doc}:{block.lineno + index}: console block line outside a command's output: "
                             f"{line!r} (commands start with '$ ')")
        command = line[2:].strip()
        start = block.lineno + index
        index += 1
        output: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        if command in INTERPRETERS:
            banner: list[str] = []
            while output and not output[0].startswith(">>>"):
                banner.append(output.pop(0))
            found.append(Example("session", doc, block.lineno, start, "\n".join(output) + "\n", banner,
                                 interpreter=command))
        else:
            found.append(Example("command", doc, block.lineno, start, command, output))
    return found


def _line_pattern(expected: str) -> re.Pattern[str]:
    """An expected line: ``...`` inside it matches any text; trailing blanks never matter."""
    return re.compile(".*?".join(re.escape(part) for part in expected.rstrip().split("...")) + r"\Z")


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; a line that is only ``...`` matches any run of lines (none included).

    Blank lines at the end of the output are not compared (a terminal shows nothing there to see).
    """
    while actual and not actual[-1].strip():
        actual = actual[:-1]
    patterns = [None if line.strip() == "..." else _line_pattern(line) for line in expected]
    actual = [line.rstrip() for line in actual]
    # reachable[j]: the patterns so far can match exactly the first j actual lines
    reachable = [True] + [False] * len(actual)
    for pattern in patterns:
        if pattern is None:
            seen = False
            for j in range(len(actual) + 1):
                seen = seen or reachable[j]
                reachable[j] = seen
        else:
            reachable = [False] + [reachable[j] and bool(pattern.match(actual[j])) for j in range(len(actual))]
    return reachable[len(actual)]


def as_transcript(session: str) -> str:
    """A real session shows blank output lines as blank lines: doctest needs them spelled ``<BLANKLINE>``."""
    return "\n".join("<BLANKLINE>" if not line.strip() else line for line in session.rstrip("\n").splitlines()) + "\n"


def run_session(setup: str, doc: str, lineno: int, session: str) -> int:
    """Run one session as a doctest in a fresh namespace prepared by ``setup``; return the failure count."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(setup, namespace)
    test = doctest.DocTestParser().get_doctest(as_transcript(session), namespace, f"{doc}:{lineno}", doc, lineno - 1)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    return runner.failures


if __name__ == "__main__":
    sys.exit(run_session(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.stdin.read()))
