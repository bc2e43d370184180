"""The report's charts as Vega-Lite specifications, built with Altair from the model's plain data.

Vega-Lite because a chart is then a JSON document: the page inlines it with
the Vega runtime (no network), ``vl-convert`` renders the same document to PNG
without a browser, and a test can count a chart's marks through the Vega view.
Every chart gets a fixed width so the page and the PNG look the same.
Mark names (``client_bars``...) are stable: the browser test finds marks by them.

Rows go into the spec's top-level ``datasets`` after Altair has built and
validated the chart around named data: Altair validates inline rows one by
one against the schema, which took 25 s for the 2000 clients of the
benchmark capture; the rows are plain numbers and strings made here.
"""

from __future__ import annotations

from typing import Any

import altair as alt

WIDTH = 880
LABELLED_ROWS = 60
"""Up to this many clients the timeline names each row; past it rows are thin and unlabelled."""
TIMELINE_MAX_HEIGHT = 1600
TOP_CLIENTS = 20
THROUGHPUT_TUNNELS = 8
"""Tunnels drawn as their own throughput lines; the others are summed into one line per direction."""
MAX_LATENCY_POINTS = 5000
"""Answered control requests drawn; past it an even sample is, and the titles say so (the page stays small)."""
ARROWS = ("→", "←")
"""Tunnel direction 0 (tunnel client, the device, to the relay) and 1, as ``dissect`` prints them."""


class Datasets(dict[str, list[dict[str, Any]]]):
    """The rows of one chart by dataset name; ``use`` registers rows and gives Altair the named reference."""

    def use(self, name: str, rows: list[dict[str, Any]]) -> alt.NamedData:
        self[name] = rows
        return alt.NamedData(name=name)


def duration_text(seconds: float) -> str:
    """A short human interval: ``10 ms``, ``2 s``, ``20 min``."""
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def timeline(data: dict[str, Any], sets: Datasets) -> alt.LayerChart | None:
    """One bar per tunneled client from its first frame to its end/error (or the capture's end)."""
    clients = data["clients"]
    if not clients:
        return None
    count = len(clients)
    labelled = count <= LABELLED_ROWS
    step = max(1, min(18, TIMELINE_MAX_HEIGHT // max(count, 1)))
    span = data["span"] or 1e-6
    bars, pauses, errors, firsts = [], [], [], []
    seen_tunnels: set[int] = set()
    repeats: dict[str, int] = {}
    for c in clients:
        # one row per session: a client id used again (a reused port) gets its own row
        label = f"t{c['tunnel']} {c['client']}"
        repeats[label] = repeats.get(label, 0) + 1
        if not labelled:
            label += f" #{c['row']}"
        elif repeats[label] > 1:
            label += f" ({repeats[label]})"
        ended = c["ended_by"] + (f": {c['error']}" if c["error"] else "")
        packets = f"#{c['first_packet']} … #{c['end_packet'] or c['last_packet']}"
        bars.append({
            "row": c["row"], "label": label, "tunnel": c["tunnel"], "client": c["client"], "name": c["name"],
            "service": c["service"] or "(none)", "start": c["start"], "stop": c["stop"],
            "draw_stop": max(c["stop"], c["start"] + span / 500), "duration": round(c["stop"] - c["start"], 6),
            "bytes_in": c["bytes_in"], "bytes_out": c["bytes_out"], "ended": ended, "packets": packets,
            "pauses": c["pauses"],
        })
        for start, stop, packet in c["pause_periods"]:
            pauses.append({"label": label, "start": start, "stop": max(stop, start + span / 500), "packet": packet,
                           "client": c["client"]})
        if c["ended_by"] == "error":
            errors.append({"label": label, "start": c["stop"], "client": c["client"], "error": c["error"],
                           "packet": c["end_packet"]})
        if c["tunnel"] not in seen_tunnels:
            seen_tunnels.add(c["tunnel"])
            firsts.append({"label": label, "tunnel": f"tunnel {c['tunnel']}"})

    y_axis = alt.Axis(title=None, labelLimit=260) if labelled else alt.Axis(
        title=f"{count} clients, grouped by tunnel, by start", labels=False, ticks=False, domain=False)
    y = alt.Y("label:N", sort=alt.EncodingSortField("row", op="min"), axis=y_axis,
              scale=alt.Scale(paddingInner=0.2 if step > 3 else 0))
    x_scale = alt.Scale(domain=[0, span], nice=False)
    zoom = alt.selection_interval(bind="scales", encodings=["x"], name="timeline_zoom")
    bar_layer = alt.Chart(sets.use("clients", bars), name="client_bars").mark_bar(
        cornerRadius=1 if step > 3 else 0).encode(
        x=alt.X("start:Q", title="seconds since the first packet (scroll to zoom, drag to pan)", scale=x_scale,
                axis=alt.Axis(tickCount=10, labelOverlap=True)),
        x2="draw_stop:Q", y=y,
        color=alt.Color("service:N", title="service", scale=alt.Scale(scheme="tableau10")),
        tooltip=[
            alt.Tooltip("client:N", title="client"), alt.Tooltip("name:N", title="name"),
            alt.Tooltip("service:N", title="service"), alt.Tooltip("tunnel:Q", title="tunnel"),
            alt.Tooltip("bytes_in:Q", title="bytes from client", format=","),
            alt.Tooltip("bytes_out:Q", title="bytes to client", format=","),
            alt.Tooltip("ended:N", title="ended by"), alt.Tooltip("packets:N", title="packets"),
            alt.Tooltip("start:Q", title="start (s)", format=".6f"),
            alt.Tooltip("duration:Q", title="duration (s)", format=".6f"),
            alt.Tooltip("pauses:Q", title="pauses"),
        ],
    ).add_params(zoom)
    layers: list[alt.Chart] = [bar_layer]
    if pauses:
        layers.append(alt.Chart(sets.use("pauses", pauses), name="pause_marks").mark_bar(
            color="#ffffff", opacity=0.65, stroke="#555555", strokeDash=[2, 2], strokeWidth=0.6).encode(
            x="start:Q", x2="stop:Q", y=y,
            tooltip=[alt.Tooltip("client:N", title="paused client"), alt.Tooltip("start:Q", title="paused at (s)"),
                     alt.Tooltip("stop:Q", title="resumed at (s)"), alt.Tooltip("packet:Q", title="pause packet")]))
    if errors:
        layers.append(alt.Chart(sets.use("errors", errors), name="error_marks").mark_point(
            shape="diamond", filled=True, color="#111111", stroke="#ffffff", strokeWidth=0.8,
            size=max(20, min(90, step * 6))).encode(
            x="start:Q", y=y,
            tooltip=[alt.Tooltip("client:N", title="client"), alt.Tooltip("error:N", title="error"),
                     alt.Tooltip("packet:Q", title="error packet")]))
    if len(firsts) > 1 or labelled:
        layers.append(alt.Chart(sets.use("tunnels", firsts), name="tunnel_rules").mark_rule(
            color="#888888", strokeDash=[4, 3]).encode(y=alt.Y("label:N", sort=alt.EncodingSortField("row", op="min"),
                                                               bandPosition=0)))
        layers.append(alt.Chart(sets.use("tunnels", firsts), name="tunnel_labels").mark_text(
            align="right", baseline="top", dx=-4, dy=2, color="#444444", fontWeight="bold").encode(
            y=alt.Y("label:N", sort=alt.EncodingSortField("row", op="min"), bandPosition=0),
            x=alt.value(WIDTH), text="tunnel:N"))
    hidden = data["clients_hidden"]["count"]
    title = f"Tunneled clients over time ({count} drawn"
    title += f"; {hidden} less busy clients not drawn)" if hidden else ")"
    return alt.layer(*layers).properties(width=WIDTH, height=max(40, step * count), title=title).resolve_scale(
        color="independent")


DIRECTION_TITLES = (f"{ARROWS[0]} device to relay (direction 0)", f"{ARROWS[1]} relay to device (direction 1)")


def throughput(data: dict[str, Any], sets: Datasets) -> alt.VConcatChart | None:
    """Tunnel bytes (whole M-PROXY frames) per interval: a panel per direction, a line per tunnel.

    One panel per direction, each with its own scale, because the two usually
    differ by orders of magnitude (requests one way, downloads the other).
    """
    if not data["throughput"]:
        return None
    totals: dict[int, int] = {}
    for row in data["throughput"]:
        totals[row["tunnel"]] = totals.get(row["tunnel"], 0) + row["bytes"]
    shown = set(sorted(totals, key=totals.__getitem__, reverse=True)[:THROUGHPUT_TUNNELS])
    sums: dict[tuple[float, str, int], int] = {}
    times: set[float] = set()
    series: set[str] = set()
    for row in data["throughput"]:
        name = f"tunnel {row['tunnel']}" if row["tunnel"] in shown else "other tunnels"
        key = (row["time"], name, row["direction"])
        sums[key] = sums.get(key, 0) + row["bytes"]
        times.add(row["time"])
        series.add(name)
    interval = data["interval"] or 1.0
    # empty intervals are drawn as zero, not bridged by the line
    grid = sorted({round(i * interval, 6) for i in range(int(max(times, default=0) / interval) + 2)} | times)
    rows = [{"time": t, "tunnel": s, "direction": d, "bytes": sums.get((t, s, d), 0)}
            for d in (0, 1) for s in sorted(series) for t in grid]
    source = sets.use("throughput", rows)
    span = max(data["span"], grid[-1] if grid else 0) or 1e-6
    per = duration_text(interval)

    def panel(direction: int) -> alt.Chart:
        zoom = alt.selection_interval(bind="scales", encodings=["x"], name=f"throughput_zoom_{direction}")
        return alt.Chart(source, name=f"throughput_lines_{direction}").mark_line(interpolate="step-after").encode(
            x=alt.X("time:Q", title="seconds since the first packet", scale=alt.Scale(domain=[0, span], nice=False)),
            y=alt.Y("bytes:Q", title=f"bytes per {per}"),
            color=alt.Color("tunnel:N", title="tunnel"),
            tooltip=[alt.Tooltip("tunnel:N"), alt.Tooltip("time:Q", title="from (s)"),
                     alt.Tooltip("bytes:Q", title=f"bytes in {per}", format=",")],
        ).transform_filter(alt.datum.direction == direction).add_params(zoom).properties(
            width=WIDTH, height=180, title=DIRECTION_TITLES[direction])

    return alt.vconcat(panel(0), panel(1)).properties(
        title=f"Tunnel throughput: bytes of M-PROXY frames per {per}").resolve_scale(color="shared")


def top_clients(data: dict[str, Any], sets: Datasets) -> alt.Chart | None:
    """The clients that moved the most data bytes, each way."""
    if not data["clients"]:
        return None
    ranked = sorted(data["clients"], key=lambda c: c["bytes_in"] + c["bytes_out"], reverse=True)[:TOP_CLIENTS]
    rows = []
    for rank, c in enumerate(ranked):
        label = f"t{c['tunnel']} {c['client']} {c['name']}".strip()
        for direction, key in (("from client", "bytes_in"), ("to client", "bytes_out")):
            rows.append({"rank": rank, "label": label, "direction": direction, "bytes": c[key],
                         "service": c["service"]})
    return alt.Chart(sets.use("top_clients", rows), name="top_client_bars").mark_bar().encode(
        y=alt.Y("label:N", sort=alt.EncodingSortField("rank", op="min"), title=None,
                axis=alt.Axis(labelLimit=360)),
        x=alt.X("bytes:Q", title="data bytes", stack="zero"),
        color=alt.Color("direction:N", title="direction", scale=alt.Scale(range=["#4c78a8", "#f58518"])),
        tooltip=[alt.Tooltip("label:N", title="client"), alt.Tooltip("service:N", title="service"),
                 alt.Tooltip("direction:N"), alt.Tooltip("bytes:Q", format=",")],
    ).properties(width=WIDTH - 360, height=max(40, 18 * len(ranked)),
                 title=f"Top {len(ranked)} clients by data bytes")


def control_latency(data: dict[str, Any], sets: Datasets) -> alt.VConcatChart | None:
    """Control request/reply latency over time and by command (None when no request was answered)."""
    rows = [{"time": c["time"], "latency_ms": round(c["latency"] * 1000, 3), "command": c["command"] or "(none)",
             "id": c["id"], "tunnel": c["tunnel"], "request": c["request_frame"], "reply": c["reply_frame"],
             "outcome": c["outcome"]}
            for c in data["control"] if c["latency"] is not None]
    if not rows:
        return None
    answered = len(rows)
    stride = -(-answered // MAX_LATENCY_POINTS)
    rows = rows[::stride]
    sampled = f" (one in {stride} of {answered:,} answered requests)" if stride > 1 else ""
    zoom = alt.selection_interval(bind="scales", encodings=["x"], name="latency_zoom")
    tooltip = [alt.Tooltip("command:N"), alt.Tooltip("latency_ms:Q", title="latency (ms)"),
               alt.Tooltip("id:Q", title="id"), alt.Tooltip("tunnel:Q"), alt.Tooltip("request:Q", title="request #"),
               alt.Tooltip("reply:Q", title="reply #"), alt.Tooltip("outcome:N")]
    over_time = alt.Chart(sets.use("latency", rows), name="latency_points").mark_point(filled=True).encode(
        x=alt.X("time:Q", title="request time (seconds since the first packet)"),
        y=alt.Y("latency_ms:Q", title="latency (ms)"),
        color=alt.Color("command:N", title="command"), tooltip=tooltip,
    ).add_params(zoom).properties(width=WIDTH, height=220, title=f"Control request → reply latency over time{sampled}")
    by_command = alt.Chart(sets.use("latency", rows), name="latency_by_command").mark_boxplot(extent="min-max").encode(
        y=alt.Y("command:N", title=None), x=alt.X("latency_ms:Q", title="latency (ms)"),
        color=alt.Color("command:N", legend=None),
    ).properties(width=WIDTH - 200, title=f"Latency by command (min, quartiles, max){sampled}")
    return alt.vconcat(over_time, by_command).resolve_scale(color="shared")


def problems_over_time(data: dict[str, Any], sets: Datasets) -> alt.Chart | None:
    """Problems per interval, stacked by kind (None when there are none).

    The stack is computed here (``low``/``high``): Vega-Lite does not stack
    bars whose x is a range (interval start to end).
    """
    if not data["problem_bins"]:
        return None
    interval = data["interval"] or 1.0
    rows = []
    height: dict[float, int] = {}
    for r in sorted(data["problem_bins"], key=lambda r: (r["time"], r["kind"])):
        low = height.get(r["time"], 0)
        height[r["time"]] = low + r["count"]
        rows.append(dict(r, stop=round(r["time"] + interval, 6), low=low, high=low + r["count"]))
    span = max(data["span"], max(r["stop"] for r in rows)) or 1e-6
    zoom = alt.selection_interval(bind="scales", encodings=["x"], name="problems_zoom")
    return alt.Chart(sets.use("problems", rows), name="problem_bars").mark_bar().encode(
        x=alt.X("time:Q", title="seconds since the first packet", scale=alt.Scale(domain=[0, span], nice=False)),
        x2="stop:Q",
        y=alt.Y("low:Q", title=f"problems per {duration_text(interval)}"), y2="high:Q",
        color=alt.Color("kind:N", title="problem"),
        tooltip=[alt.Tooltip("kind:N"), alt.Tooltip("time:Q", title="from (s)"), alt.Tooltip("count:Q")],
    ).add_params(zoom).properties(width=WIDTH, height=200, title="Problems over time")


CHARTS = (
    ("timeline", timeline),
    ("throughput", throughput),
    ("top_clients", top_clients),
    ("control", control_latency),
    ("problems", problems_over_time),
)


def chart_specs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every chart the data has something for, by name, as Vega-Lite JSON documents with their rows inlined."""
    specs = {}
    for name, build in CHARTS:
        sets = Datasets()
        chart = build(data, sets)
        if chart is not None:
            spec = chart.to_dict()
            spec["datasets"] = dict(sets)
            specs[name] = spec
    return specs
