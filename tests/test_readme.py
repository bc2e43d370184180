"""Every example in README.md (and the docs in ``readme_examples.DOCUMENTS``) runs and prints what it shows.

The convention (docs/CONTRIBUTING.md, "README examples", sums it up):

- A fenced block tagged ``console`` is a terminal transcript. A line starting with ``$ `` is a
  command, run with ``bash -c`` from the repository root; the lines after it, up to the next
  ``$ `` line, are what it prints (standard output and error together). It must exit 0, or 2
  when its last shown line is an ``mproxy: error:`` line.
- Output is compared line by line, trailing blanks and blank lines at the end ignored. A line
  that is only ``...`` matches any run of lines (none included); ``...`` inside a line matches
  any text there. Use them for what differs between runs, or to shorten a long listing.
- A ``$ `` command that starts an interpreter listed in ``readme_examples.INTERPRETERS``
  (``scapy -H``, ``python3``) is followed by the lines it prints at start (checked against the
  real interpreter's start-up output) and a ``>>>`` session, which runs as a doctest in that
  interpreter's namespace (``scapy -H``: ``from scapy.all import *``). Blank lines in a session
  are blank output lines, as in a real transcript.
- A ``python`` block with ``>>>`` prompts is a doctest; without them it is a script that must
  run without error.
- A ``sh`` (``shell``, ``bash``) block lists commands without their output: each line (a
  trailing ``# comment`` is allowed) must exit 0.
- Untagged and ``text`` blocks are listings or diagrams and are not run. Any other tag fails
  this test, so a new kind of example gets a rule here rather than being skipped.
- Each block runs on its own: a fresh ``HOME`` and XDG folders (so nothing touches the
  user's), ``mproxy`` and ``scapy`` from this interpreter's environment first on ``PATH``, and
  ``/tmp/`` in commands and shown output replaced by a fresh temporary folder.
- Text that differs between machines for a known reason (versions) is rewritten on both sides
  by ``NORMALISE``; add an entry there, with its reason, rather than loosening a comparison.
- ``tshark`` in a block is this machine's, run as ``nobody`` when the suite runs as root
  (``tshark_home``): Wireshark 4.2 and later ignore Lua plugins for root, and users run it
  as themselves.
- What cannot run here (it needs a remote host, or it is this suite itself) is listed in
  ``NOT_RUN`` with the reason and where it is run instead. A listed command that is no longer
  in the README fails the test, so the list cannot go stale.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from readme_examples import DOCUMENTS, INTERPRETERS, ROOT, Example, examples, output_matches
from wireshark import matrix

RUNNER = Path(__file__).with_name("readme_examples.py")

NOT_RUN = {  # command -> why it is not run here, and where it is run
    "make dissect": "run from a fresh clone with the system python3 by tests/test_first_contact.py (slow)",
    "make test": "runs this very suite; CI runs it (.ci/run)",
    "make wireshark-matrix": "builds the machine's Wireshark roots as root (minutes); make test runs it first (CI)",
}

NORMALISE = [
    # Scapy prints its own version in the shell banner and `mproxy --version` names it.
    (re.compile(r"Scapy \(?\d+\.\d+[\w.+-]*\)?"), "Scapy VERSION"),
    # `mproxy --version` names the Python it runs on.
    (re.compile(r"Python \d+\.\d+\.\d+\w*"), "Python VERSION"),
    # `mproxy wireshark install/status` name the machine's Wireshark and Lua (Debian 12: 4.0.17, Lua 5.2.4).
    (re.compile(r"^Wireshark: TShark .*"), "Wireshark: TShark VERSION (PATH)"),
    (re.compile(r"^Lua: +\d[\d.]*$"), "Lua: VERSION"),
    (re.compile(r"\btshark \d+\.\d+\.\d+ loads it"), "tshark VERSION loads it"),
]

EXAMPLES = [e for doc in DOCUMENTS for e in examples(doc.read_text(encoding="utf-8"), str(doc.relative_to(ROOT)))]


def normalise(line: str) -> str:
    for pattern, replacement in NORMALISE:
        line = pattern.sub(replacement, line)
    return line


def user_env(home: Path) -> dict[str, str]:
    """The user's shell, with a throwaway home and this environment's commands first on PATH."""
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_DATA_HOME=str(home / ".local/share"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", TERM="dumb",
               # the Wireshark matrix's roots are machine-wide, built once by make test, like tshark itself
               MPROXY_WIRESHARK_ROOTS=str(matrix.ROOTS))
    env.pop("PYTHONSTARTUP", None)
    return env


def blocks_of(found: list[Example]) -> list[list[Example]]:
    """The commands of one block share their temporary folder, so they run together, in order."""
    grouped: dict[tuple[str, int], list[Example]] = {}
    for example in found:
        grouped.setdefault((example.doc, example.block), []).append(example)
    return list(grouped.values())


def _param(block: list[Example]) -> pytest.ParameterSet:
    uses_tshark = any(word in e.source for e in block if e.kind == "command" for word in ("tshark", "wireshark"))
    marks = [pytest.mark.tshark] if uses_tshark else []
    return pytest.param(block, id=block[0].id, marks=marks)


def _run(example: Example, tmp: Path, env: dict[str, str]) -> None:
    where = f"{example.doc}:{example.lineno}"
    if example.kind == "command":
        command = example.source.replace("/tmp/", f"{tmp}/")
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False)
        expected = [normalise(line.replace("/tmp/", f"{tmp}/")) for line in example.expected]
        actual = [normalise(line) for line in result.stdout.splitlines()]
        wanted_exit = 2 if expected and expected[-1].startswith("mproxy: error:") else 0
        assert result.returncode == wanted_exit, f"{where}: `{example.source}` exited {result.returncode}:\n" \
            f"{result.stdout}"
        if not output_matches(expected, actual):
            diff = "\n".join(difflib.unified_diff(expected, actual, "README", "actual", lineterm=""))
            pytest.fail(f"{where}: `{example.source}` printed something else than the document shows:\n{diff}")
    elif example.kind == "unchecked":
        result = subprocess.run(["bash", "-c", example.source], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600, check=False)
        assert result.returncode == 0, f"{where}: `{example.source}` failed:\n{result.stdout}{result.stderr}"
    elif example.kind == "script":
        result = subprocess.run([sys.executable, "-"], input=example.source, cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=600, check=False)
        assert result.returncode == 0, f"{where}: the Python example failed:\n{result.stdout}{result.stderr}"
    else:
        _check_banner(example, env)
        result = subprocess.run([sys.executable, str(RUNNER), INTERPRETERS[example.interpreter], example.doc,
                                 str(example.lineno)],
                                input=example.source, cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=600, check=False)
        assert result.returncode == 0, f"{where}: the {example.interpreter} session differs:\n" \
            f"{result.stdout}{result.stderr}"


def _check_banner(example: Example, env: dict[str, str]) -> None:
    """What the README shows an interpreter print at start is what it prints (given no input)."""
    banner = [line for line in example.expected if line.strip()]
    if not banner:
        return
    started = subprocess.run(["bash", "-c", example.interpreter], stdin=subprocess.DEVNULL, cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    printed = [normalise(line) for line in (started.stdout + started.stderr).splitlines()]
    for line in banner:
        assert output_matches(["...", normalise(line), "..."], printed), (
            f"{example.doc}:{example.lineno}: `{example.interpreter}` does not print {line!r} at start:\n"
            + "\n".join(printed))


@pytest.mark.parametrize("block", [_param(b) for b in blocks_of(
    [e for e in EXAMPLES if e.source not in NOT_RUN])])
def test_readme_example(block: list[Example], tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "tmp"
    if _param(block).marks:
        home = tshark_home()
    home.mkdir(exist_ok=True)
    work.mkdir()
    env = user_env(home)
    if _param(block).marks:
        bin_dir = home / "bin"
        bin_dir.mkdir()
        matrix.wrapper(matrix.HOST, bin_dir, name="tshark", home_in_place=True)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    for example in block:
        _run(example, work, env)


def tshark_home() -> Path:
    """A home the unprivileged user tshark runs as can read: tshark in these examples is this
    machine's, run as ``nobody`` with the user's own HOME (so ``-G folders`` names the personal
    plugin folder ``mproxy wireshark install`` wrote to), as a user runs it; never as root."""
    home = Path(tempfile.mkdtemp(prefix="readme-home-", dir=matrix._stage_parent()))
    home.chmod(0o755)
    return home


def test_everything_not_run_here_is_still_in_the_readme_and_says_why() -> None:
    commands = {e.source for e in EXAMPLES if e.kind in ("command", "unchecked")}
    assert set(NOT_RUN) <= commands, f"NOT_RUN lists commands no document has now: {set(NOT_RUN) - commands}"
    assert all(reason.strip() for reason in NOT_RUN.values())


def test_the_readme_has_examples_of_every_kind() -> None:
    """The parser finds the README's examples (a change of fence style would otherwise run nothing)."""
    kinds = {e.kind for e in EXAMPLES if e.doc == "README.md"}
    assert {"command", "session", "unchecked"} <= kinds, kinds
    assert sum(e.kind == "command" for e in EXAMPLES) >= 8


@pytest.mark.parametrize(("expected", "actual", "matches"), [
    (["a", "...", "d"], ["a", "b", "c", "d"], True),
    (["a", "...", "d"], ["a", "d"], True),
    (["a", "...", "d"], ["a", "b", "c"], False),
    (["a ... d"], ["a bc d  "], True),
    (["a ... d"], ["a bc e"], False),
    (["a", "b"], ["a", "b", "c"], False),
    (["a", "b"], ["a"], False),
    (["..."], [], True),
    (["a"], ["a", "", "  "], True),
])
def test_output_comparison(expected: list[str], actual: list[str], matches: bool) -> None:
    assert output_matches(expected, actual) is matches


def test_an_unknown_block_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="tagged 'ruby'"):
        examples("```ruby\nputs 1\n```\n")


def test_console_text_outside_a_command_is_refused() -> None:
    with pytest.raises(ValueError, match="outside a command"):
        examples("```console\nhello\n$ echo\n```\n")
