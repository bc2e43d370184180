"""Render ``dissectors/mproxy.lua`` from the field spec and the ``mproxy.lua.in`` template.

The template holds the dissector's logic; this module only turns the spec's
fields and tables into Lua source text. Every ``${name}`` in the template must
be supplied (a missing one raises), and every value supplied must be used, so
the template and the generator cannot drift apart silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from .. import parser, spec, websocket

TEMPLATE_NAME = "mproxy.lua.in"
STATS_TEMPLATE_NAME = "stats.lua.in"
"""The statistics (``-z mproxy,...``, Statistics > M-PROXY): a separate part appended to the dissector."""
GENERATE_COMMAND = "mproxy lua -o dissectors/mproxy.lua"
DEFAULT_OUTPUT = Path("dissectors") / "mproxy.lua"

_PROTOFIELD = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "int32": "int32",
    "string": "string",
    "bytes": "bytes",
    "framenum": "framenum",
    "relative_time": "relative_time",
}
_BASES = {"dec": "base.DEC", "hex": "base.HEX"}
_FRAMETYPES = {"control.reply_to": "frametype.REQUEST", "control.replied_in": "frametype.RESPONSE"}
_SEVERITIES = {"error": "expert.severity.ERROR", "warn": "expert.severity.WARN", "note": "expert.severity.NOTE"}
_GROUPS = {"gap": "expert.group.SEQUENCE", "truncated": "expert.group.MALFORMED"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    """The template and the values the generator supplies do not match."""


def lua_string(text: str) -> str:
    """A Lua string literal for any text (quotes, backslashes and control characters escaped)."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\{code:03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def lua_table(mapping: Mapping[str, str] | Iterable[str]) -> str:
    """A Lua table literal: ``{ ["key"] = "value", ... }``, or a set ``{ ["key"] = true }``."""
    if isinstance(mapping, Mapping):
        items = [f"    [{lua_string(k)}] = {lua_string(v)}," for k, v in mapping.items()]
    else:
        items = [f"    [{lua_string(k)}] = true," for k in sorted(mapping)]
    return "{\n" + "\n".join(items) + "\n}"


def lua_list(values: Iterable[str]) -> str:
    return "{ " + ", ".join(lua_string(v) for v in values) + " }"


def field_label(key: str) -> str:
    """Display name of a field in the tree: ``control.reply_to`` -> ``Reply to``."""
    words = key.split(".")[-1].replace("_", " ")
    return words[:1].upper() + words[1:]


def field_variable(field: spec.FieldSpec) -> str:
    """The key of a field in the Lua ``pf`` table (a Lua identifier)."""
    name = field.key.replace(".", "_")
    if not _IDENTIFIER.match(name):
        raise TemplateError(f"field key {field.key!r} does not make a Lua identifier")
    return name


def protofield(field: spec.FieldSpec) -> str:
    """One ``ProtoField`` constructor for a spec field."""
    try:
        kind = _PROTOFIELD[field.ftype]
    except KeyError:
        raise TemplateError(f"no ProtoField type for {field.key!r} ({field.ftype})") from None
    abbrev, label, description = lua_string(field.filter), lua_string(field_label(field.key)), lua_string(
        field.description
    )
    if kind in ("string", "bytes", "relative_time"):
        args = f"{abbrev}, {label}, {description}"
        if kind == "bytes":
            args = f"{abbrev}, {label}, base.NONE, {description}"
    elif kind == "framenum":
        args = f"{abbrev}, {label}, base.NONE, {_FRAMETYPES.get(field.key, 'frametype.NONE')}, nil, {description}"
    else:
        args = f"{abbrev}, {label}, {_BASES[field.base]}, nil, nil, {description}"
    return f"    {field_variable(field)} = ProtoField.{kind}({args}),"


def expert(kind: str, description: str) -> str:
    severity = _SEVERITIES[spec.PROBLEM_SEVERITY[kind]]
    group = _GROUPS.get(kind, "expert.group.MALFORMED" if severity.endswith("ERROR") else "expert.group.PROTOCOL")
    filter_name = lua_string(spec.PROBLEM_EXPERT_PREFIX + kind)
    return f"    {kind} = ProtoExpert.new({filter_name}, {lua_string(description)}, {group}, {severity}),"


CARRIER_EXPERT_PREFIX = "mproxy.carrier."
CARRIER_PROBLEMS = ("server_frame_masked", "decompression_capped", "inflate_error", "gap_in_compressed_message",
                    "ws_sync_lost", "ws_resynced")
"""The WebSocket carrier problems the Lua unframer reports (names and texts from websocket.WS_PROBLEMS)."""


def carrier_expert(kind: str) -> str:
    filter_name = lua_string(CARRIER_EXPERT_PREFIX + kind)
    description = lua_string(websocket.WS_PROBLEMS[kind])
    return f"    {kind} = ProtoExpert.new({filter_name}, {description}, expert.group.PROTOCOL, expert.severity.WARN),"


def template_values() -> dict[str, str]:
    """Every value the template uses, computed from the spec."""
    fields = spec.ALL_FIELDS + spec.STREAM_FIELDS
    missing = set(spec.PROBLEMS) ^ set(spec.PROBLEM_SEVERITY)
    if missing:
        raise TemplateError(f"PROBLEMS and PROBLEM_SEVERITY disagree on {sorted(missing)}")
    header_keys = [f.key for f in sorted(spec.HEADER_FIELDS, key=lambda f: f.header_index or 0)]
    return {
        "banner": banner(),
        "abbrev": spec.PROTOCOL_ABBREV,
        "title": spec.PROTOCOL_TITLE,
        "version_byte": str(spec.VERSION_1_BYTE),
        "min_header_fields": str(spec.MIN_HEADER_FIELDS),
        "max_body_held": str(parser.DEFAULT_MAX_BODY_HELD),
        "max_message": str(websocket.DEFAULT_MAX_MESSAGE),
        "redacted": lua_string(spec.REDACTED),
        "data_kind": lua_string(spec.DATA_KIND),
        "header_keys": lua_list(header_keys),
        "kinds": lua_table(spec.KINDS),
        "message_kinds": lua_table(spec.MESSAGE_KINDS),
        "known_services": lua_table(spec.KNOWN_SERVICES),
        "families": lua_table(spec.FAMILIES),
        "dialects": lua_table(spec.DIALECTS),
        "control_commands": lua_table(spec.CONTROL_COMMANDS),
        "secret_commands": lua_table(spec.SECRET_COMMANDS),
        "secret_command_text": lua_string(", ".join(sorted(spec.SECRET_COMMANDS))),
        "error_codes": lua_table(spec.ERROR_CODES),
        "body_subdissectors": lua_table(spec.BODY_SUBDISSECTORS),
        "labels": lua_table({f.key: field_label(f.key) for f in spec.HEADER_FIELDS}),
        "protofields": "\n".join(protofield(f) for f in fields),
        "field_list": "\n".join(f"    pf.{field_variable(f)}," for f in fields),
        "experts": "\n".join(expert(k, d) for k, d in spec.PROBLEMS.items()),
        "expert_list": "\n".join(f"    ex.{k}," for k in spec.PROBLEMS),
        "carrier_experts": "\n".join(carrier_expert(k) for k in CARRIER_PROBLEMS),
        "carrier_problem_texts": lua_table({k: websocket.WS_PROBLEMS[k] for k in CARRIER_PROBLEMS}),
        "carrier_expert_list": "\n".join(f"    carrier_ex.{k}," for k in CARRIER_PROBLEMS),
    }


def banner() -> str:
    return (
        "-- GENERATED FILE: DO NOT EDIT.\n"
        f"-- Made by `{GENERATE_COMMAND}` from mproxy_scapy/spec.py,\n"
        f"-- mproxy_scapy/wireshark/{TEMPLATE_NAME} and {STATS_TEMPLATE_NAME}; edit those and regenerate."
    )


def load_template() -> str:
    """The dissector's template followed by the statistics part (one Lua file, one set of placeholders)."""
    folder = resources.files(__package__)
    return (folder.joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")
            + folder.joinpath(STATS_TEMPLATE_NAME).read_text(encoding="utf-8"))


def render(template_text: str, values: Mapping[str, str]) -> str:
    """Substitute ``values`` for ``${name}``; a missing or an unused name is an error.

    Only the braced form is a placeholder: Lua patterns use a bare ``$``.
    """
    wanted = set(_PLACEHOLDER.findall(template_text))
    missing = wanted - set(values)
    if missing:
        raise TemplateError(f"template variables without a value: {sorted(missing)}")
    unused = set(values) - wanted
    if unused:
        raise TemplateError(f"values not used by the template: {sorted(unused)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template_text)


def generate_lua() -> str:
    """The full text of ``dissectors/mproxy.lua``."""
    return render(load_template(), template_values())
