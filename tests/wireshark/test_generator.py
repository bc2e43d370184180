"""The generator: the checked-in dissector is what the spec and template make, and the template is strict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mproxy_scapy import spec
from mproxy_scapy.cli import main
from mproxy_scapy.wireshark import generator

REPO = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO / "dissectors" / "mproxy.lua"


def test_checked_in_dissector_is_what_the_generator_makes() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == generator.generate_lua()


def test_lua_check_command_passes_on_the_checked_in_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lua", "--check", "-o", str(CHECKED_IN)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_lua_check_command_fails_on_a_changed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = tmp_path / "mproxy.lua"
    changed.write_text(generator.generate_lua().replace("M-PROXY tunnel protocol", "edited by hand"))
    assert main(["lua", "--check", "-o", str(changed)]) == 1
    captured = capsys.readouterr()
    assert "edited by hand" in captured.out
    assert "mproxy lua -o" in captured.err


def test_lua_output_writes_the_generated_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "mproxy.lua"
    assert main(["lua", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == generator.generate_lua()


def test_banner_says_generated_and_the_command() -> None:
    head = generator.generate_lua().splitlines()[:3]
    assert "DO NOT EDIT" in head[0]
    assert "`mproxy lua -o dissectors/mproxy.lua`" in head[1]


def test_a_missing_template_variable_is_an_error() -> None:
    with pytest.raises(generator.TemplateError, match="without a value"):
        generator.render("local x = ${nothing_gives_this}", {})


def test_an_unused_value_is_an_error() -> None:
    with pytest.raises(generator.TemplateError, match="not used"):
        generator.render("local x = 1", {"extra": "2"})


def test_lua_patterns_with_a_bare_dollar_are_left_alone() -> None:
    assert generator.render('s:match("^%d+$") ${a}', {"a": "1"}) == 's:match("^%d+$") 1'


def test_lua_strings_escape_quotes_backslashes_and_control_characters() -> None:
    assert generator.lua_string('a"b\\c\n\x7f') == '"a\\"b\\\\c\\010\\127"'


def test_every_spec_field_is_a_protofield_with_its_filter_name() -> None:
    lua = generator.generate_lua()
    for field in spec.ALL_FIELDS + spec.STREAM_FIELDS:
        assert re.search(rf'ProtoField\.\w+\("{re.escape(field.filter)}"', lua), field.filter


def test_every_problem_is_an_expert_info_with_its_name() -> None:
    lua = generator.generate_lua()
    for kind, description in spec.PROBLEMS.items():
        assert f'ProtoExpert.new("{spec.PROBLEM_EXPERT_PREFIX}{kind}", "{description}"' in lua


def test_value_tables_come_from_the_spec() -> None:
    lua = generator.generate_lua()
    for table in (spec.KINDS, spec.CONTROL_COMMANDS, spec.ERROR_CODES, spec.KNOWN_SERVICES, spec.FAMILIES):
        for key, description in table.items():
            assert f'["{key}"] = {generator.lua_string(description)},' in lua
    for command in spec.SECRET_COMMANDS:
        assert f'["{command}"] = true,' in lua


def test_the_template_is_packaged_next_to_the_generator() -> None:
    assert (Path(generator.__file__).parent / generator.TEMPLATE_NAME).is_file()
