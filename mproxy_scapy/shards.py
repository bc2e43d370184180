"""The work of one shard for ``export`` and ``stats``, and running every shard on local processes.

Shard k of N reads every input and decodes the TCP connections of shard k
(``decoder.flow_shard``: connections dealt round by their number; see
``parallel.decode_shard_keyed`` for how the others' packets are passed over
cheaply). A tunnel, its clients and its
control exchanges live in one connection, so each shard can finish them on
its own; only what crosses shards is merged by the caller:

- ``export_shard`` writes part k of every table (``export.export_part``) into
  the run's staging folder and returns its row counts and decoder totals
  (without per-tunnel totals: those are in its tables);
- ``stats_shard`` returns its sessions, control exchanges and unmatched
  replies, each with the key of the record that made it, so the caller puts
  them in exactly one decoder's order (``merge_stats``).

The arguments are plain data (paths, numbers, ``DecodeOptions``): that is all
a task sends, to a local process (``LocalShards``, ``--jobs N``) or to a Dask
worker (``distributed.DaskShards``, ``--scheduler``), never capture bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .decoder import Decoder, Record, StageEvent
from .errors import UserError
from .export import ExportOptions, export_part
from .inputs import InputFile
from .parallel import DecodeOptions, Totals, decode_shard_keyed, merge_keyed, shard_summary
from .sessions import SessionTracker

Firsts = dict[str, tuple[tuple[int, int], StageEvent]]


def single_name(files: Sequence[InputFile]) -> str | None:
    """The name every record of a single input is in (with several, each record names its own file)."""
    return files[0].name if len(files) == 1 else None


def _keyed(files: Sequence[InputFile], index: int, count: int, options: DecodeOptions, decoder: Decoder,
           firsts: Firsts) -> Iterator[tuple[tuple[int, int], Record]]:
    """The shard's keyed records, noting the first record of each problem kind (for ``check_source``)."""
    for key, record in decode_shard_keyed(list(files), index, count, options, decoder=decoder):
        if type(record) is StageEvent and record.is_problem:
            firsts.setdefault(f"{record.stage}.{record.kind}", (key, record))
        yield key, record


def export_shard(files: Sequence[InputFile], index: int, count: int, options: DecodeOptions,
                 export: ExportOptions, staging: str) -> dict[str, Any]:
    """Part ``index`` of every table, written under ``staging``: its row counts and the decoder's totals."""
    decoder = options.make_decoder((index, count))
    firsts: Firsts = {}
    records = (record for _, record in _keyed(files, index, count, options, decoder, firsts))
    counts = export_part(records, decoder, Path(staging), index, export, single_name(files))
    return {"counts": counts, "summary": shard_summary(decoder, firsts, tunnels=False)}  # tunnels: in its tables


def stats_shard(files: Sequence[InputFile], index: int, count: int, options: DecodeOptions) -> dict[str, Any]:
    """The shard's sessions, control exchanges and unmatched replies, each with its record key; and totals."""
    decoder = options.make_decoder((index, count))
    tracker = SessionTracker()
    firsts: Firsts = {}
    made: dict[str, list[tuple[tuple[int, int], Any]]] = {"sessions": [], "exchanges": [], "unmatched": []}
    lists = (("sessions", tracker.sessions), ("exchanges", tracker.exchanges), ("unmatched", tracker.unmatched_replies))
    for key, record in _keyed(files, index, count, options, decoder, firsts):
        tracker.add(record)
        for name, items in lists:
            done = made[name]
            if len(items) > len(done):
                done.extend((key, item) for item in items[len(done):])
    return {**made, "summary": shard_summary(decoder, firsts)}


def merge_stats(parts: list[dict[str, Any]]) -> tuple[Totals, SessionTracker]:
    """The shards' results as one decoder's totals and one tracker's sessions, in one decoder's order."""
    totals = Totals()
    totals.add([part["summary"] for part in parts])
    tracker = SessionTracker()
    tracker.sessions = list(merge_keyed([part["sessions"] for part in parts]))
    tracker.exchanges = list(merge_keyed([part["exchanges"] for part in parts]))
    tracker.unmatched_replies = list(merge_keyed([part["unmatched"] for part in parts]))
    return totals, tracker


def merge_export(parts: list[dict[str, Any]]) -> tuple[Totals, dict[str, int]]:
    """The shards' decoder totals and the rows written per table, summed."""
    totals = Totals()
    totals.add([part["summary"] for part in parts])
    counts: dict[str, int] = {}
    for part in parts:
        for table, rows in part["counts"].items():
            counts[table] = counts.get(table, 0) + rows
    return totals, counts


class LocalShards:
    """Every shard in a worker process of this machine (``--jobs N``); a worker that dies fails the run."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, task: Callable[..., dict[str, Any]], make_args: Callable[[int], list[tuple[Any, ...]]]
            ) -> list[dict[str, Any]]:
        """``task(*args)`` for each shard's arguments (``make_args(shard count)``), the results in shard order."""
        args = make_args(self.jobs)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(max_workers=self.jobs, mp_context=context) as pool:
            futures = [pool.submit(task, *call) for call in args]
            try:
                return [future.result() for future in futures]
            except BrokenProcessPool:
                raise UserError("a worker process died before it finished: the output is incomplete") from None
            finally:
                for future in futures:
                    future.cancel()
