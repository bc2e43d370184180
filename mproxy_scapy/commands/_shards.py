"""What ``export`` and ``stats`` share to run their work as shards of the TCP connections: ``--jobs N``
local processes, or the workers of a Dask cluster (``--scheduler ADDRESS``), and merging the shards' results back."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from ..errors import UserError
from ..export import ExportOptions, Staging
from ..parallel import Totals, cpu_count
from ..sessions import SessionTracker
from ..shards import LocalShards, export_shard, merge_export, merge_stats, stats_shard
from ._source import Source


def add_scheduler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the shards on this Dask cluster (tcp://HOST:8786): inputs, key log and -o DIR "
                        "must be at the same paths on every worker; --jobs N sets the shard count (default: one "
                        "per worker thread). Needs: pip install 'mproxy-scapy[dask]' (docs/DASK.md)")


def shard_runner(args: argparse.Namespace) -> Any:
    """Where the shards run: a Dask cluster, local processes (``--jobs`` > 1), or None for one decoder here."""
    if args.scheduler:
        from ..distributed import DaskShards

        return DaskShards(args.scheduler, shards=args.jobs if args.jobs > 1 else None)
    jobs = args.jobs or cpu_count()
    return LocalShards(jobs) if jobs > 1 else None


def _shard_files(source: Source) -> list[Any]:
    if any(f.is_stdin for f in source.files):
        raise UserError("standard input can be read by one process only: use --jobs 1 (and no --scheduler) with '-'")
    return source.files


def sharded_export(runner: Any, source: Source, options: ExportOptions, staging: Staging) -> tuple[Totals, dict]:
    """Part k of every table written by shard k into the staging folder; the shards' totals and row counts."""
    files = _shard_files(source)
    decode = replace(source.options, keep_closed_tunnels=True)
    folder = str(staging.path)
    parts = runner.run(export_shard, lambda count: [(files, k, count, decode, options, folder) for k in range(count)])
    return merge_export(parts)


def sharded_stats(runner: Any, source: Source) -> tuple[Totals, SessionTracker]:
    """The sessions and control exchanges of every shard, merged in one decoder's order, and the totals."""
    files = _shard_files(source)
    decode = replace(source.options, keep_closed_tunnels=True)
    parts = runner.run(stats_shard, lambda count: [(files, k, count, decode) for k in range(count)])
    return merge_stats(parts)
