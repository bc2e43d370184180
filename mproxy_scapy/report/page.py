"""The report as one HTML page that needs nothing else: styles, scripts, chart specs and data all inlined.

A report goes into tickets and mail and gets opened offline, behind proxies
that block CDNs, years later: so the Vega runtime is inlined too (from
``vl-convert``, which bundles it), and every value from the capture is
HTML-escaped (text from the wire) or JSON-escaped inside ``<script>``.
"""

from __future__ import annotations

import datetime
import html
import json
from importlib import resources
from typing import Any

from .. import __version__
from ..commands.stats import problem_meaning
from .charts import ARROWS, duration_text

MAX_TABLE_ROWS = 1000
"""Rows of the control table; the clients and problems tables are bounded by the model."""

SECTION_NOTES = {
    "timeline": "Each bar is one tunneled client, from its first frame (normally <code>connection</code>) to its "
    "<code>end</code> or <code>error</code>, or to the end of the capture. Colour: service. Dashed white: paused. "
    "Black diamond: ended by an error. Hover a bar for its packet numbers (Wireshark: Go to Packet).",
}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>`` or ``&`` can end the element or start a comment."""
    return (json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _n(value: int) -> str:
    return f"{value:,}"


def _table(columns: list[tuple[str, bool]], rows: list[list[Any]], *, table_id: str) -> str:
    """A sortable table; ``columns`` are (title, numeric). Numeric cells sort by value."""
    head = "".join(f"<th>{_e(title)}</th>" for title, _ in columns)
    body = []
    for row in rows:
        cells = []
        for (_, numeric), value in zip(columns, row, strict=True):
            if numeric and value is not None and value != "":
                text = f"{value:,}" if isinstance(value, int) else str(value)
                cells.append(f'<td class="num" data-sort="{_e(value)}">{_e(text)}</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


MAX_NAMED_FILES = 20
"""Capture files named in the header; a fleet's hundreds of rotated files are counted past this."""


def _files_text(files: list[str]) -> str:
    named = ", ".join(files[:MAX_NAMED_FILES])
    return named + (f" and {_n(len(files) - MAX_NAMED_FILES)} more" if len(files) > MAX_NAMED_FILES else "")


def _facts(data: dict[str, Any], files: list[str], selection: str) -> str:
    first = data["first_ts"]
    span = data["span"]
    carriers = ", ".join(f"{k} {v}" for k, v in sorted(data["carriers"].items()))
    stream = [sum(t["stream_bytes"][d] for t in data["tunnels"]) for d in (0, 1)]
    hidden = data["clients_hidden"]["count"]
    clients = _n(data["clients_total"]) + (f" ({_n(hidden)} less busy ones not drawn)" if hidden else "")
    problems = ", ".join(f"{kind} {_n(n)}" for kind, n in data["problems"].items()) or "none"
    facts = [
        ("capture files", _files_text(files)),
        *([("selected", f"{selection}: {_n(data['frames'])} records")] if selection else []),
        ("time span", f"{_utc(first)} + {span:.6f} s" if first is not None else "no packets"),
        ("packets", f"{_n(data['packets'])} TCP packets, {_n(data['connections'])} TCP connections"),
        ("tunnels", f"{_n(len(data['tunnels']))}" + (f" ({carriers})" if carriers else "")),
        ("tunneled clients", clients),
        ("tunnel bytes", f"{ARROWS[0]} device to relay {_n(stream[0])}, {ARROWS[1]} relay to device {_n(stream[1])}"),
        ("client data bytes", f"from clients {_n(data['client_bytes'][0])}, to clients {_n(data['client_bytes'][1])}"),
        ("problems", problems),
    ]
    return '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts) + "</dl>"


def _chart(name: str, specs: dict[str, Any], absent: str = "") -> str:
    """The place a chart is drawn in, or ``absent`` as a note when there is nothing to draw."""
    if name not in specs:
        return f'<p class="note">{_e(absent)}</p>' if absent else ""
    return f'<div class="chart" data-chart="{name}" id="chart-{name}"></div>'


def _clients_table(data: dict[str, Any]) -> str:
    columns = [("tunnel", True), ("client", False), ("service", False), ("name", False), ("bytes from client", True),
               ("bytes to client", True), ("start (s)", True), ("duration (s)", True), ("pauses", True),
               ("ended by", False), ("first packet", True), ("end packet", True)]
    rows = [[c["tunnel"], c["client"], c["service"], c["name"], c["bytes_in"], c["bytes_out"], c["start"],
             round(c["stop"] - c["start"], 6), c["pauses"], c["ended_by"] + (f": {c['error']}" if c["error"] else ""),
             c["first_packet"], c["end_packet"]] for c in data["clients"]]
    return _table(columns, rows, table_id="clients-table")


def _tunnels_table(data: dict[str, Any]) -> str:
    columns = [("tunnel", True), ("endpoints", False), ("carrier", False), ("clients", True),
               (f"frames {ARROWS[0]}", True), (f"frames {ARROWS[1]}", True), (f"bytes {ARROWS[0]}", True),
               (f"bytes {ARROWS[1]}", True), ("start (s)", True), ("duration (s)", True), ("closed", False)]
    rows = []
    for t in data["tunnels"]:
        info = "".join(f" {k}={v}" for k, v in t["carrier_info"].items() if k in ("path", "url", "tls"))
        rows.append([t["tunnel"], f"{t['client']} ↔ {t['server']}", t["carrier"] + info, t["sessions"],
                     t["frames"][0], t["frames"][1], t["stream_bytes"][0], t["stream_bytes"][1], t["start"],
                     t["duration"], t["closed"]])
    return _table(columns, rows, table_id="tunnels-table")


def _control_section(data: dict[str, Any], specs: dict[str, Any]) -> str:
    if not data["control"]:
        return "<p class=\"note\">No control requests.</p>"
    parts = [_chart("control", specs)]
    unanswered = data["unanswered"]
    if unanswered:
        parts.append(f"<h3>Unanswered control requests: {_n(len(unanswered))}</h3>")
        parts.append(_table([("request packet", True), ("time (s)", True), ("tunnel", True), ("id", True),
                             ("command", False), ("request", False)],
                            [[c["request_frame"], c["time"], c["tunnel"], c["id"], c["command"],
                              json.dumps(c["request"], ensure_ascii=False)] for c in unanswered[:MAX_TABLE_ROWS]],
                            table_id="unanswered-table"))
    else:
        parts.append('<p class="note">Every control request was answered.</p>')
    shown = data["control"][:MAX_TABLE_ROWS]
    parts.append(f"<h3>Control round-trips{'' if len(shown) == len(data['control']) else f' (first {len(shown)})'}"
                 "</h3>")
    parts.append(_table([("tunnel", True), ("id", True), ("command", False), ("request packet", True),
                         ("reply packet", True), ("time (s)", True), ("latency (s)", True), ("outcome", False)],
                        [[c["tunnel"], c["id"], c["command"], c["request_frame"], c["reply_frame"], c["time"],
                          c["latency"], c["outcome"]] for c in shown], table_id="control-table"))
    return "".join(parts)


def _problems_section(data: dict[str, Any], specs: dict[str, Any], selection: str = "") -> str:
    if not data["problems"]:
        if selection:
            return '<p class="note">No problems in the selected records.</p>'
        return '<p class="note">No problems: every byte of every tunnel decoded as M-PROXY frames.</p>'
    parts = [_chart("problems", specs)]
    parts.append(_table([("kind", False), ("count", True), ("meaning", False)],
                        [[kind, n, problem_meaning(kind)] for kind, n in data["problems"].items()],
                        table_id="problem-kinds-table"))
    omitted = data["problem_rows_omitted"]
    if omitted:
        parts.append(f'<p class="note">The first {_n(len(data["problem_rows"]))} problems are listed; '
                     f"{_n(omitted)} more are counted above.</p>")
    parts.append(_table([("packet", True), ("time (s)", True), ("tunnel", True), ("kind", False), ("detail", False)],
                        [[p["packet"], p["time"], p["tunnel"], p["kind"], p["detail"]] for p in data["problem_rows"]],
                        table_id="problems-table"))
    return "".join(parts)


def _empty_message(data: dict[str, Any]) -> str:
    if not data["packets"]:
        return "This capture holds no TCP packets, so there is no M-PROXY tunnel to show."
    return (f"No M-PROXY tunnel was found in this capture: {_n(data['packets'])} TCP packets in "
            f"{_n(data['connections'])} TCP connections were read, none of them carried M-PROXY frames.")


def render_page(data: dict[str, Any], specs: dict[str, dict[str, Any]], *, files: list[str], vega_js: str,
                show_secrets: bool, selection: str = "") -> str:
    """The whole page. ``vega_js`` is the inlined Vega, Vega-Lite and Vega-Embed bundle (unused without charts);
    ``selection`` names the frame filters given (the page is of the selected records)."""
    title = "M-PROXY report: " + (", ".join(files) if len(files) <= 3 else f"{_n(len(files))} capture files")
    secrets = ("Secrets are shown (--show-secrets)." if show_secrets
               else "Tokens are redacted (mproxy report --show-secrets shows them).")
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="sub">Made by mproxy-scapy {_e(__version__)}. Times are seconds since the first packet. '
            f"{_e(secrets)}</p>", _facts(data, files, selection)]
    if not data["tunnels"]:
        body.append(f'<p class="empty" id="empty">{_e(_empty_message(data))}</p>')
        if data["problems"]:
            body.append("<h2>Problems</h2>" + _problems_section(data, specs))
    else:
        hidden = data["clients_hidden"]
        hidden_note = ""
        if hidden["count"]:
            hidden_note = (f'<p class="note" id="hidden-clients">{_n(hidden["count"])} less busy clients are not '
                           f"drawn (together {_n(hidden['bytes_in'])} bytes from and {_n(hidden['bytes_out'])} "
                           "bytes to clients); the busiest are.</p>")
        body += [
            "<h2>Timeline</h2>", f'<p class="note">{SECTION_NOTES["timeline"]}</p>', hidden_note,
            _chart("timeline", specs, "No tunneled client" + (" matches the selection." if selection else ".")),
            "<h2>Throughput</h2>",
            _chart("throughput", specs, "No M-PROXY frame" + (" matches the selection." if selection else ".")),
            _chart("top_clients", specs),
            "<h2>Control requests</h2>", _control_section(data, specs),
            "<h2>Problems</h2>", _problems_section(data, specs, selection),
            "<h2>Tunneled clients</h2>", _clients_table(data),
            "<h2>Tunnels</h2>", _tunnels_table(data),
        ]
    scripts = "".join(f'<script type="application/json" id="spec-{name}">{_script_json(spec)}</script>'
                      for name, spec in specs.items())
    if specs:
        if "</script" in vega_js.lower():
            raise ValueError("the Vega bundle contains </script and cannot be inlined")
        scripts += f"<script>{vega_js}</script>"
    scripts += f"<script>{_asset('page.js')}</script>"
    interval = f"; intervals of {duration_text(data['interval'])}" if data.get("interval") else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"generator\" content=\"mproxy-scapy {_e(__version__)}{_e(interval)}\">"
            f"<title>{_e(title)}</title><style>{_asset('page.css')}</style></head>"
            f"<body><main>{''.join(body)}</main>{scripts}</body></html>\n")
