"""What the report shows, aggregated while the records stream past.

Per tunneled client the counting is that of ``mproxy stats`` (its
``SessionTracker`` and ``summarize``: one aggregation for both commands).
This module adds what a picture needs and a table does not: when each client
ended and paused, bytes per time interval per tunnel direction, problems over
time, and the problems themselves with their packet numbers.

Memory, beyond the tracker's one small object per client: at most
``MAX_PAUSES`` pause periods per client, time series in at most
``bins.DEFAULT_MAX_BINS`` intervals whatever the span, and at most
``MAX_PROBLEM_ROWS`` problems kept as rows (all are counted).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..commands.stats import summarize
from ..decoder import DecodedFrame, StageEvent
from ..secrets import redact_text
from ..sessions import Session, SessionTracker
from ..textout import safe_text
from .bins import TimeBins

MAX_PAUSES = 50
"""Pause periods drawn per client; more are counted (``pauses``) but not drawn."""
MAX_PROBLEM_ROWS = 1000
"""Problems listed one per row; the rest are counted by kind and over time."""
DEFAULT_MAX_CLIENTS = 3000
"""Clients drawn on the timeline; past it the busiest are drawn and the rest summarised."""


class _Marks:
    """When a client's session ended (its first ``end``/``error``) and its pause periods."""

    __slots__ = ("end_frame", "end_ts", "pauses")

    def __init__(self) -> None:
        self.end_ts: float | None = None
        self.end_frame: int | None = None
        self.pauses: list[list[Any]] = []
        """``[pause time, resume time or None, pause packet]`` each."""


class ReportModel:
    """Feed it every record (``add``), then ``finish(decoder)`` gives the report's data as plain dicts.

    ``keep`` is the ``dissect`` frame filter (None: every frame); with a
    filter other than ``--problems-only``, stage problems are left out as
    ``dissect`` leaves them out.
    """

    def __init__(self, *, keep: Callable[[DecodedFrame], bool] | None = None, stage_events: bool = True,
                 show_secrets: bool = False) -> None:
        self.keep = keep
        self.stage_events = stage_events
        self.show_secrets = show_secrets
        self.tracker = SessionTracker()
        self._marks: dict[Session, _Marks] = {}
        self._throughput: TimeBins | None = None
        self._problem_bins: TimeBins | None = None
        self.problem_counts: Counter[str] = Counter()
        self.problem_rows: list[dict[str, Any]] = []
        self.frames = 0

    def _bins(self, ts: float) -> tuple[TimeBins, TimeBins]:
        if self._throughput is None or self._problem_bins is None:
            self._throughput, self._problem_bins = TimeBins(ts), TimeBins(ts)
        return self._throughput, self._problem_bins

    def add(self, record: Any) -> None:
        if type(record) is DecodedFrame:
            if self.keep is not None and not self.keep(record):
                return
            self.frames += 1
            ts = record.ts
            throughput, _ = self._bins(ts)
            frame = record.frame
            throughput.add(ts, (record.tunnel, record.direction), frame.length)
            for problem in frame.problems:
                self._problem(record, problem.kind, problem.detail)
            session = self.tracker.add(record)
            if session is not None and frame.kind in ("end", "error", "pause", "resume"):
                self._mark(session, frame.kind, record)
        elif isinstance(record, StageEvent) and record.is_problem and self.stage_events:
            self._problem(record, f"{record.stage}.{record.kind}", record.detail)

    def _mark(self, session: Session, kind: str, record: DecodedFrame) -> None:
        marks = self._marks.get(session)
        if marks is None:
            marks = self._marks[session] = _Marks()
        if kind in ("end", "error"):
            if marks.end_ts is None:
                marks.end_ts, marks.end_frame = record.ts, record.pcap_frame
        elif kind == "pause":
            if len(marks.pauses) < MAX_PAUSES:
                marks.pauses.append([record.ts, None, record.pcap_frame])
        elif marks.pauses and marks.pauses[-1][1] is None:
            marks.pauses[-1][1] = record.ts

    def _problem(self, record: DecodedFrame | StageEvent, kind: str, detail: str) -> None:
        self.problem_counts[kind] += 1
        ts = record.ts
        if ts is not None:
            self._bins(ts)[1].add(ts, kind)
        if len(self.problem_rows) < MAX_PROBLEM_ROWS:
            self.problem_rows.append({
                "packet": record.pcap_frame, "ts": ts, "tunnel": record.tunnel, "kind": kind,
                "detail": safe_text(detail if self.show_secrets else redact_text(detail)),
            })

    def finish(self, decoder: Any, *, max_clients: int = DEFAULT_MAX_CLIENTS) -> dict[str, Any]:
        """The report's data; times are seconds since the capture's first packet, as ``dissect`` prints them.

        ``decoder`` is the ``Decoder``, or with ``--jobs`` the workers' summed ``Totals`` (same attributes).
        """
        sessions = self.tracker.sessions
        # only the drawn clients become rows (a dict each): a fleet's million clients stay Session objects
        drawn_sessions = heapq.nlargest(max_clients, sessions, key=_data_bytes)
        summary = summarize(decoder, _Drawn(self.tracker, drawn_sessions), show_secrets=self.show_secrets)
        per_tunnel = Counter(s.tunnel for s in sessions)
        for tunnel in summary["tunnels"]:
            tunnel["sessions"] = per_tunnel[tunnel["tunnel"]]
        first = decoder.first_ts or 0.0
        end = (decoder.last_ts or first) - first
        drawn = [self._client_row(row, session, first, end)
                 for row, session in zip(summary["sessions"], drawn_sessions, strict=True)]
        drawn.sort(key=lambda c: (c["tunnel"], c["start"]))
        for row, client in enumerate(drawn):
            client["row"] = row
        client_bytes = [sum(s.data_bytes[s.inbound] for s in sessions),
                        sum(s.data_bytes[1 - s.inbound] for s in sessions)]
        throughput, problem_bins = self._throughput, self._problem_bins
        if throughput is not None and problem_bins is not None:
            problem_bins.use_width_of(throughput)
            throughput.use_width_of(problem_bins)
        offset = (throughput.origin - first) if throughput is not None else 0.0
        for row in self.problem_rows:
            row["time"] = round(row.pop("ts") - first, 6) if row["ts"] is not None else None
        control = summary["control"]
        return {
            "first_ts": decoder.first_ts, "span": round(end, 6), "packets": decoder.packets,
            "connections": decoder.connections, "frames": self.frames,
            "tunnels": summary["tunnels"], "carriers": summary["carriers"], "skipped": summary["skipped"],
            "clients_total": len(sessions), "clients": drawn,
            "clients_hidden": {
                "count": len(sessions) - len(drawn),
                "bytes_in": client_bytes[0] - sum(c["bytes_in"] for c in drawn),
                "bytes_out": client_bytes[1] - sum(c["bytes_out"] for c in drawn),
            },
            "client_bytes": client_bytes,
            "problems": dict(sorted(self.problem_counts.items())),
            "problem_rows": self.problem_rows,
            "problem_rows_omitted": sum(self.problem_counts.values()) - len(self.problem_rows),
            "interval": throughput.width if throughput is not None else None,
            "throughput": [{"time": round(start + offset, 6), "tunnel": tunnel, "direction": direction,
                            "bytes": amount}
                           for start, (tunnel, direction), amount in (throughput.rows() if throughput else ())],
            "problem_bins": [{"time": round(start + offset, 6), "kind": kind, "count": count}
                             for start, kind, count in (problem_bins.rows() if problem_bins else ())],
            "control": [dict(c, time=_rel(e.request.ts, first)) for c, e in zip(control, self.tracker.exchanges,
                                                                                strict=True)],
            "unanswered": [dict(c, time=_rel(e.request.ts, first)) for c, e in zip(control, self.tracker.exchanges,
                                                                                   strict=True)
                           if c["reply_frame"] is None],
        }

    def _client_row(self, row: dict[str, Any], session: Session, first: float, end: float) -> dict[str, Any]:
        """A stats session row plus where its bar ends, its pauses and its packet numbers."""
        marks = self._marks.get(session)
        stop = marks.end_ts - first if marks is not None and marks.end_ts is not None else end
        pauses = []
        if marks is not None:
            pauses = [[round(p - first, 6), round((r if r is not None else first + stop) - first, 6), frame]
                      for p, r, frame in marks.pauses]
        error = row["error"]
        return dict(
            row,
            client=safe_text(row["client"]), name=safe_text(row["name"]), service=safe_text(row["service"]),
            error=safe_text(error if self.show_secrets else redact_text(error)),
            stop=round(max(stop, row["start"] or 0.0), 6),
            first_packet=session.first_frame, last_packet=session.last_frame,
            end_packet=marks.end_frame if marks is not None else None,
            pause_periods=pauses,
        )


class _Drawn:
    """The tracker as ``summarize`` reads it, with only the sessions to draw."""

    def __init__(self, tracker: SessionTracker, sessions: list[Session]) -> None:
        self.sessions = sessions
        self.exchanges = tracker.exchanges
        self.unmatched_replies = tracker.unmatched_replies


def _data_bytes(session: Session) -> int:
    return session.data_bytes[0] + session.data_bytes[1]


def _rel(ts: float, first: float) -> float:
    return round(ts - first, 6)
