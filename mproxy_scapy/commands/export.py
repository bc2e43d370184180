"""``mproxy export INPUT... -o DIR``: the decoded captures as Parquet tables for SQL (schema: docs/EXPORT.md)."""

from __future__ import annotations

import argparse
import importlib.abc
import sys
from pathlib import Path
from typing import Any

from ..export import DEFAULT_BATCH_ROWS, ExportOptions, Staging, export_part, require_pyarrow
from ..export_schema import SCHEMA_VERSION
from ..shards import single_name
from ._shards import add_scheduler_argument, shard_runner, sharded_export
from ._source import Source, add_file_argument, check_source, positive_int


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write the frames, clients, tunnels, control round-trips and problems as Parquet tables",
        description="Decode captures into Apache Parquet tables under DIR (DIR/<table>/part-*.parquet): "
        "frames, clients (one row per tunneled connection), tunnels, control (request/reply pairs with "
        "latency) and problems. The schema is versioned and documented in docs/EXPORT.md. Tables are "
        "written to a staging folder and moved into place only when the whole run succeeded.",
        epilog="Bodies are left out unless --bodies; tokens are redacted (bodies: masked) unless --show-secrets. "
        "Needs pyarrow: pip install 'mproxy-scapy[export]'.",
    )
    add_file_argument(parser, live=False)
    add_scheduler_argument(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="folder for the tables (created if missing; existing tables in it are replaced)")
    parser.add_argument("--bodies", action="store_true", help="also export each frame's body (binary column)")
    parser.add_argument("--row-group", type=positive_int, default=DEFAULT_BATCH_ROWS, metavar="ROWS",
                        help=f"rows per Parquet row group; bounds memory (default {DEFAULT_BATCH_ROWS})")
    parser.set_defaults(func=run)


class _NoPandas(importlib.abc.MetaPathFinder):
    """pyarrow imports pandas (about 45 MB of RSS) the first time ``pa.array`` is handed a sequence, only to
    ask whether it is a pandas object. The export hands it tuples of plain values, so a process that has not
    loaded pandas yet does without: this finder makes ``import pandas`` fail, which pyarrow takes as
    "pandas is not installed". Not used with ``--scheduler`` (the Dask client may need pandas)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not loaded by mproxy export", name=name)


def _without_pandas() -> None:
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def run(args: argparse.Namespace) -> int:
    require_pyarrow(load=not args.scheduler)
    if not args.scheduler:
        _without_pandas()
    options = ExportOptions(bodies=args.bodies, show_secrets=args.show_secrets, batch_rows=args.row_group)
    runner = shard_runner(args)
    source = Source(args, keep_closed_tunnels=True, jobs=1)
    with Staging(args.output) as staging:
        if runner is None:
            counts = export_part(source, source.totals, staging.path, 0, options, single_name(source.files))
        else:
            source.totals, counts = sharded_export(runner, source, options, staging)
        check_source(source)
        staging.commit()
    rows = ", ".join(f"{count} {table}" for table, count in counts.items())
    print(f"exported {rows} to {args.output} (schema version {SCHEMA_VERSION})", file=sys.stderr)
    return 0
