"""Decoded records as Apache Parquet tables (``mproxy export``), streamed in row groups, committed atomically.

Layout: ``DIR/<table>/part-NNNNN.parquet`` for each table of
``export_schema.TABLES`` (``frames``, ``clients``, ``tunnels``, ``control``,
``problems``). A serial run writes part 0; a sharded run (``--jobs``, a Dask
cluster) writes one part per shard, each holding the whole tunnels of its
share of the connections, so every table is the union of its parts. SQL engines read a
table as ``DIR/<table>/*.parquet``.

Memory stays bounded: rows are gathered per table and written as a row group
every ``batch_rows`` rows (or ``batch_bytes`` of bodies), and the session
tracker gives up each client, control exchange and tunnel as soon as nothing
later can change it (``SessionTracker.take_finished``), so a fleet's worth of
captures never sits in memory.

Atomic: parts are written under a staging folder inside DIR
(``.mproxy-export-*``); only when every part is whole does ``Staging.commit``
move each table folder into place. A failed or interrupted run removes the
staging folder, so no reader ever sees a half-written table.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .decoder import DecodedFrame, Decoder, StageEvent
from .errors import UserError
from .export_schema import TABLES, arrow_schema
from .render import to_ndjson
from .secrets import mask_bytes, redact_control, redact_text, redact_value
from .sessions import ControlExchange, Session, SessionTracker

DEFAULT_BATCH_ROWS = 16384
"""Rows per Parquet row group: large enough to compress and scan well, small enough to keep memory flat
(about 120 MB peak RSS for the export of a 200 MB capture, most of it pyarrow itself)."""
CONVERT_ROWS = 4096
"""Rows held as Python tuples before they are made columnar; also how often finished clients are written."""
DEFAULT_BATCH_BYTES = 64 * 1024 * 1024
"""With ``--bodies``, a frames row group is written early once its bodies add up to this."""
STAGING_PREFIX = ".mproxy-export-"
PYARROW_MISSING = "mproxy export needs pyarrow: pip install 'mproxy-scapy[export]'"
_INT64 = (-(1 << 63), (1 << 63) - 1)


def require_pyarrow(*, load: bool = True) -> None:
    """A one-line error instead of an ImportError when the ``export`` extra is not installed.

    ``load=False`` only looks for it, without the 0.2 s of importing it: for a
    Dask client, whose workers write the tables (the client renames them).
    """
    try:
        if load:
            import pyarrow.parquet  # noqa: F401
        elif importlib.util.find_spec("pyarrow") is None:
            raise ImportError("pyarrow")
    except (ImportError, ValueError):  # ValueError: sys.modules["pyarrow"] is None, as a blocked import
        raise UserError(PYARROW_MISSING) from None


@dataclass(frozen=True)
class ExportOptions:
    """What changes the rows: bodies or not, secrets shown or not, and the row-group size."""

    bodies: bool = False
    show_secrets: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    batch_bytes: int = DEFAULT_BATCH_BYTES


class ParquetSink:
    """A table's part file, written a row group at a time."""

    def __init__(self, path: Path, table: str) -> None:
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = arrow_schema(table)
        self._writer = pq.ParquetWriter(str(path), self.schema)

    def write_row_group(self, batches: list[Any], rows: int) -> None:
        import pyarrow as pa

        self._writer.write_table(pa.Table.from_batches(batches, schema=self.schema), row_group_size=rows)

    def close(self) -> None:
        self._writer.close()


class MemorySink:
    """A table's batches kept in memory (one Dask partition, ``distributed.read_frames``)."""

    def __init__(self, table: str) -> None:
        self.schema = arrow_schema(table)
        self.batches: list[Any] = []

    def write_row_group(self, batches: list[Any], rows: int) -> None:
        self.batches.extend(batches)

    def close(self) -> None:
        pass

    def table(self) -> Any:
        import pyarrow as pa

        return pa.Table.from_batches(self.batches, schema=self.schema)


def parquet_sinks(folder: Path, part: int) -> dict[str, ParquetSink]:
    """Part ``part`` of every table under ``folder``: ``<table>/part-NNNNN.parquet``."""
    name = f"part-{part:05d}.parquet"
    return {table: ParquetSink(folder / table / name, table) for table in TABLES}


class TableWriter:
    """One table's rows: gathered as tuples, made columnar (Arrow) every ``CONVERT_ROWS`` rows, and handed
    to the sink as one row group every ``batch_rows`` rows (or on ``flush``).

    Python tuples cost about ten times the memory of the same rows in Arrow
    columns, so only a few thousand are held at a time while a row group
    of tens of thousands waits in Arrow form.
    """

    def __init__(self, sink: Any, batch_rows: int) -> None:
        self.sink = sink
        self.schema = sink.schema
        self.rows: list[tuple[Any, ...]] = []
        self.batches: list[Any] = []
        self.batched = 0
        self.pending_bytes = 0
        self.count = 0
        self._batch_rows = batch_rows
        self._convert_rows = min(batch_rows, CONVERT_ROWS)

    def append(self, row: tuple[Any, ...]) -> None:
        rows = self.rows
        rows.append(row)
        if len(rows) >= self._convert_rows:
            self._convert()
            if self.batched >= self._batch_rows:
                self.flush()

    def _convert(self) -> None:
        import pyarrow as pa

        columns = [_array(values, field.type)
                   for values, field in zip(zip(*self.rows, strict=True), self.schema, strict=True)]
        self.batches.append(pa.RecordBatch.from_arrays(columns, schema=self.schema))
        self.batched += len(self.rows)
        self.rows = []

    def flush(self) -> None:
        """Write what is held as one row group."""
        if self.rows:
            self._convert()
        if not self.batches:
            return
        self.sink.write_row_group(self.batches, self.batched)
        self.count += self.batched
        self.batches = []
        self.batched = 0
        self.pending_bytes = 0

    def close(self) -> None:
        self.flush()
        self.sink.close()

    def discard(self) -> None:
        """Close the sink after a failure, dropping rows not yet written (the staging folder goes anyway)."""
        self.rows = []
        self.batches = []
        with contextlib.suppress(Exception):  # the run has already failed; its first error is the one reported
            self.sink.close()


def _array(values: tuple[Any, ...], arrow_type: Any) -> Any:
    """One column; a hostile header's number past int64 becomes null (its frame names the problem)."""
    import pyarrow as pa

    try:
        return pa.array(values, type=arrow_type)
    except (OverflowError, pa.ArrowInvalid):
        if not pa.types.is_integer(arrow_type):
            raise
        low, high = _INT64
        return pa.array([v if v is None or low <= v <= high else None for v in values], type=arrow_type)


class Exporter:
    """Feed it every record of a decode (``add``), then ``close``: the five tables, one sink each.

    It takes closed tunnels out of ``decoder.tunnels`` as it writes their
    rows: build the decoder with ``keep_closed_tunnels=True`` so a tunnel
    closed between two prunes is still there to be written.
    """

    def __init__(self, decoder: Decoder, sinks: dict[str, Any], options: ExportOptions,
                 source: str | None = None) -> None:
        self.decoder = decoder
        self.options = options
        self.source = source
        self.tracker = SessionTracker()
        self.writers = {table: TableWriter(sinks[table], options.batch_rows) for table in TABLES}
        self._frames = self.writers["frames"]
        self._problems = self.writers["problems"]
        self._files: dict[Session, list[str | None]] = {}
        self._tunnel_files: dict[int, str | None] = {}
        self._tunnel_sessions: dict[int, int] = {}
        self._since_prune = 0
        self._prune_every = min(options.batch_rows, CONVERT_ROWS)

    def _file(self, record: Any) -> str | None:
        return record.pcap_file or self.source

    # -- records -------------------------------------------------------------------------------

    def add_all(self, records: Iterable[Any]) -> None:
        add = self.add
        for record in records:
            add(record)

    def add(self, record: Any) -> None:
        if type(record) is DecodedFrame:
            self._add_frame(record)
        elif isinstance(record, StageEvent):
            self._add_event(record)
        self._since_prune += 1
        if self._since_prune >= self._prune_every:
            self.prune()

    def _add_frame(self, record: DecodedFrame) -> None:
        frame = record.frame
        file = self._file(record)
        if record.tunnel not in self._tunnel_files:
            self._tunnel_files[record.tunnel] = file
        session = self.tracker.add(record)
        if session is not None:
            files = self._files.get(session)
            if files is None:
                self._files[session] = [file, file]
                self._tunnel_sessions[session.tunnel] = self._tunnel_sessions.get(session.tunnel, 0) + 1
            else:
                files[1] = file
        show = self.options.show_secrets
        kind = frame.kind
        control = error = None
        if kind == "control":
            value = frame.control
            if value is not None:
                control = to_ndjson(value if show else redact_control(value))
        elif kind == "error" and frame.control is not None:
            error = to_ndjson(frame.control if show else redact_value(frame.control))
        body = None
        if self.options.bodies and frame.body is not None:
            body = frame.body if show else _redacted_body(frame)
            self._frames.pending_bytes += len(body)
        problems = frame.problems
        self._frames.append((
            file, record.pcap_frame, record.ts, record.carrier, record.tunnel, record.direction, record.src,
            record.dst, frame.offset, frame.length, frame.version, frame.hdrlen, frame.family, frame.address,
            frame.port, frame.datalen, frame.service, frame.serviceport, frame.name, frame.servicename, kind,
            frame.dialect, frame.client_id, frame.body_len, frame.body_sha256,
            [p.to_json() for p in problems] if problems else [], control, error, record.reply_to,
            record.reply_time, body,
        ))
        if self._frames.pending_bytes >= self.options.batch_bytes:
            self._frames.flush()
        for problem in problems:
            self._problems.append((file, record.pcap_frame, record.ts, record.tunnel, record.direction, record.src,
                                   record.dst, "mproxy", problem.kind, problem.detail, frame.offset, None))

    def _add_event(self, event: StageEvent) -> None:
        file = self._file(event)
        if event.tunnel is not None and event.tunnel not in self._tunnel_files and event.kind == "detected":
            self._tunnel_files[event.tunnel] = file
        if not event.is_problem:
            return
        detail = event.detail if self.options.show_secrets else redact_text(event.detail)
        self._problems.append((file, event.pcap_frame, event.ts, event.tunnel, event.direction, event.src,
                               event.dst, event.stage, f"{event.stage}.{event.kind}", detail, None, event.nbytes))

    # -- what is finished ----------------------------------------------------------------------

    def prune(self) -> None:
        """Write the clients, control exchanges and tunnels that can no longer change, and forget them."""
        self._since_prune = 0
        tunnels = self.decoder.tunnels

        def tunnel_open(tunnel: int) -> bool:
            info = tunnels.get(tunnel)
            return info is not None and info.closed is None

        sessions, exchanges = self.tracker.take_finished(tunnel_open)
        for session in sessions:
            self._client_row(session)
        for exchange in exchanges:
            self._control_row(exchange)
        for reply in self.tracker.unmatched_replies:
            self._unmatched_row(reply)
        self.tracker.unmatched_replies.clear()
        self.tracker.out_of_band.clear()
        for tunnel_id in [t for t, info in tunnels.items() if info.closed is not None]:
            self._tunnel_row(tunnels.pop(tunnel_id))

    def _client_row(self, s: Session) -> None:
        first_file, last_file = self._files.pop(s, (self.source, self.source))
        inbound = s.inbound
        self.writers["clients"].append((
            s.tunnel, s.client_id, s.family, s.address, s.port, s.label, s.name, s.serviceport, inbound,
            first_file, s.first_frame, s.first_ts, last_file, s.last_frame, s.last_ts, s.duration,
            s.frames[inbound], s.frames[1 - inbound], s.data_bytes[inbound], s.data_bytes[1 - inbound],
            s.outcome, s.end_detail, s.pauses, s.resumes,
        ))

    def _json(self, record: DecodedFrame | None) -> str | None:
        if record is None or record.frame.control is None:
            return None
        value = record.frame.control
        return to_ndjson(value if self.options.show_secrets else redact_control(value))

    def _control_row(self, e: ControlExchange) -> None:
        request, reply = e.request, e.reply
        self.writers["control"].append((
            e.tunnel, e.direction, e.id, e.command, self._json(request), self._file(request), request.pcap_frame,
            request.ts, self._json(reply), None if reply is None else self._file(reply),
            None if reply is None else reply.pcap_frame, None if reply is None else reply.ts, e.latency, e.outcome,
        ))

    def _unmatched_row(self, reply: DecodedFrame) -> None:
        message = reply.frame.control
        self.writers["control"].append((
            reply.tunnel, 1 - reply.direction, -message[0], "", None, None, None, None, self._json(reply),
            self._file(reply), reply.pcap_frame, reply.ts, None, "unmatched_reply",
        ))

    def _tunnel_row(self, t: Any) -> None:
        info = t.carrier_info if self.options.show_secrets else redact_value(t.carrier_info)
        duration = t.last_ts - t.first_ts if t.first_ts is not None and t.last_ts is not None else 0.0
        self.writers["tunnels"].append((
            t.id, self._tunnel_files.pop(t.id, self.source), t.client, t.server, t.carrier,
            [(str(k), "" if v is None else str(v)) for k, v in info.items()], t.frames[0], t.frames[1],
            t.stream_bytes[0], t.stream_bytes[1], self._tunnel_sessions.pop(t.id, 0), t.first_ts, t.last_ts,
            duration, t.closed or "open",
        ))

    def close(self) -> dict[str, int]:
        """Write what is left (call after the decoder's ``close`` records went through ``add``); rows per table."""
        self.prune()
        for session in self.tracker.sessions:
            self._client_row(session)
        for exchange in self.tracker.exchanges:
            self._control_row(exchange)
        for tunnel_id in list(self.decoder.tunnels):
            self._tunnel_row(self.decoder.tunnels.pop(tunnel_id))
        for writer in self.writers.values():
            writer.close()
        return {table: writer.count for table, writer in self.writers.items()}

    def abort(self) -> None:
        """Close the files after a failure (the staging folder they are in is removed by ``Staging``)."""
        for writer in self.writers.values():
            writer.discard()


def _redacted_body(frame: Any) -> bytes:
    """The body as exported without ``--show-secrets``: a secret control command's arguments replaced
    (as in the ``control`` column), any other token masked with ``*`` at the same length."""
    body = frame.body
    if frame.kind == "control":
        value = frame.control
        if value is not None:
            shown = redact_control(value)
            if shown != value:
                return to_ndjson(shown).encode()
    return mask_bytes(body)


class Staging:
    """The export's staging folder inside DIR; ``commit`` moves each table folder into place.

    Used as a context manager: leaving it without ``commit`` (an error, Ctrl-C)
    removes the staging folder, and DIR itself when this run created it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._created = False
        try:
            for table in TABLES:
                target = directory / table
                if target.exists() and not target.is_dir():
                    raise UserError(f"{target}: exists and is not a table folder; choose another -o DIR")
            if not directory.exists():
                directory.mkdir(parents=True)
                self._created = True
            elif not directory.is_dir():
                raise UserError(f"{directory}: exists and is not a folder")
            self.path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory))
        except OSError as exc:
            raise UserError(f"{directory}: cannot write the export ({exc.strerror or exc})") from None
        self.committed = False

    def __enter__(self) -> Staging:
        return self

    def commit(self) -> None:
        """Every part is whole: replace each table folder of DIR by the new one."""
        try:
            for table in TABLES:
                target = self.directory / table
                if target.exists():
                    os.rename(target, self.path / f"previous-{table}")
                os.rename(self.path / table, target)
        except OSError as exc:
            raise UserError(f"{self.directory}: cannot move the export into place ({exc.strerror or exc})") from None
        self.committed = True

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if not self.committed and self._created:
            with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                self.directory.rmdir()


def export_part(records: Iterable[Any], decoder: Decoder, folder: Path, part: int, options: ExportOptions,
                source: str | None = None) -> dict[str, int]:
    """Write one part of every table from ``records`` (a whole decode, or one shard's); rows per table."""
    exporter = Exporter(decoder, parquet_sinks(folder, part), options, source)
    try:
        exporter.add_all(records)
        return exporter.close()
    except BaseException:
        exporter.abort()
        raise
