"""docs/NDJSON.md and ``mproxy dissect --json`` agree: every key written is documented with its type, and back.

The decoder runs on every bundled capture (wss with its key log); each record is checked
against the table of its record type (frame or stage): no key outside the table, every
"always" key present, keys in the documented order, each value of the documented JSON type.
Then every documented key must have been written at least once, so the page cannot keep a
key the decoder dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_run import mproxy

from mproxy_scapy.render import FRAME_KEYS

from support import CAPTURES, REPO

DOC = REPO / "docs" / "NDJSON.md"
TYPES = {
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "string": lambda v: type(v) is str,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
    "JSON": lambda v: True,
}


def documented() -> dict[str, dict[str, tuple[str, bool]]]:
    """``{"frame" | "stage": {key: (type, always)}}`` in the order of the doc's tables."""
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    section = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## (Frame|Stage) records", line)
        if heading:
            section = tables.setdefault(heading.group(1).lower(), {})
        elif line.startswith("## "):
            section = None
        elif section is not None:
            row = re.match(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", line)
            if row:
                section[row.group(1)] = (row.group(2).strip(), row.group(3).strip() == "always")
    return tables


def type_ok(declared: str, value: object) -> bool:
    base, _, nullable = declared.partition(" or ")
    assert base in TYPES and nullable in ("", "null"), f"docs/NDJSON.md: unknown type {declared!r}"
    return (value is None and nullable == "null") or TYPES[base](value)


def bundled_records() -> list[dict]:
    records = []
    for capture in sorted(CAPTURES.glob("*.pcap*")):
        if capture.name.endswith(".ndjson"):
            continue
        args = ["dissect", str(capture), "--json"]
        keys = capture.with_suffix(".keys")
        if keys.exists():
            args += ["--tls-keylog", str(keys)]
        result = mproxy(*args)
        assert result.returncode == 0, result.stderr
        records += [json.loads(line) for line in result.stdout.splitlines()]
    # several inputs at once (the captures without a key log, and a file that is not a capture): pcap_file
    several = [str(p) for p in sorted(CAPTURES.glob("*.pcap*")) if not p.name.endswith(".ndjson")
               and not p.with_suffix(".keys").exists()]
    result = mproxy("dissect", "--json", *several, str(CAPTURES / "manifest.json"))
    assert result.returncode == 0, result.stderr
    records += [json.loads(line) for line in result.stdout.splitlines()]
    return records


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return bundled_records()


def test_the_doc_has_both_tables_and_the_renderers_keys():
    tables = documented()
    assert set(tables) == {"frame", "stage"}
    always = [key for key, (_, is_always) in tables["frame"].items() if is_always]
    assert always == list(FRAME_KEYS), "render.FRAME_KEYS and the doc's 'always' frame keys differ"


def test_every_record_matches_its_table(records):
    tables = documented()
    kinds = set()
    for record in records:
        table = tables["stage" if record["kind"] == "stage" else "frame"]
        kinds.add(record["kind"])
        unknown = set(record) - set(table)
        assert not unknown, f"keys not in docs/NDJSON.md: {sorted(unknown)} in {record}"
        missing = {key for key, (_, always) in table.items() if always} - set(record)
        assert not missing, f"documented as always present but missing: {sorted(missing)} in {record}"
        order = [key for key in table if key in record]
        assert list(record) == order, f"keys not in the documented order: {record}"
        for key, value in record.items():
            assert type_ok(table[key][0], value), f"{key}={value!r} is not {table[key][0]} in {record}"
    assert {"data", "connection", "control", "end", "error", "pause", "resume", "stage"} <= kinds


def test_every_documented_key_is_written_on_some_bundled_capture(records):
    tables = documented()
    for record_type, table in tables.items():
        seen = set().union(*(r for r in records if (r["kind"] == "stage") == (record_type == "stage")))
        assert set(table) <= seen, f"{record_type} keys documented but never written: {set(table) - seen}"


def test_dissect_help_points_to_the_doc_and_names_no_missing_file():
    result = mproxy("dissect", "--help")
    assert result.returncode == 0
    assert "docs/NDJSON.md" in result.stdout
    for name in re.findall(r"[\w/.-]+\.md", result.stdout):
        assert (REPO / name).exists(), f"`mproxy dissect --help` names {name}, which is not in the repository"


def test_docs_name_only_files_in_the_repository():
    """User-facing text (README, docs/, command help) names no file the user does not have."""
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for path in texts:
        for name in re.findall(r"\b((?:docs/)?[A-Z][A-Z_]+\.md)\b", path.read_text(encoding="utf-8")):
            where = REPO / name if (REPO / name).exists() else path.parent / Path(name).name
            assert where.exists(), f"{path.relative_to(REPO)} names {name}, which is not in the repository"
