"""Shards of a decode on a Dask cluster: the frames table as a Dask DataFrame, and ``--scheduler`` for export/stats.

The split is the one of ``--jobs``: shard k of N reads every input and decodes
the TCP connections of shard k, dealt round by connection number
(``decoder.flow_shard``, ``parallel.decode_shard_keyed``).
A task sends a worker the input paths, the shard number and the decode
options (plain data; a TLS key log goes as its path), never capture bytes, so
the inputs, the key log and, for ``export``, the output folder must be on
storage every worker reaches at the same path (a shared file system). What
comes back is small: for ``read_frames`` the shard's frames, for ``export``
row counts (the workers write the Parquet parts themselves), for ``stats``
the shard's sessions and control exchanges (docs/DASK.md).

Needs the ``dask`` extra: ``pip install 'mproxy-scapy[dask]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .errors import UserError
from .export import Exporter, ExportOptions, MemorySink
from .export_schema import TABLES, arrow_schema
from .inputs import InputFile, expand_inputs
from .parallel import DecodeOptions, decode_shard
from .shards import single_name

DASK_MISSING = "Dask is not installed: pip install 'mproxy-scapy[dask]'"


def _require_dask(*, dataframe: bool) -> None:
    """A one-line error when the ``dask`` extra is missing; ``dask.dataframe`` (0.9 s to import) only if used."""
    try:
        import distributed  # noqa: F401

        if dataframe:
            import dask.dataframe  # noqa: F401
    except ImportError:
        raise UserError(DASK_MISSING) from None


def frames_meta() -> Any:
    """The frames table with no rows as pandas (Arrow-backed columns): the meta of ``read_frames``."""
    import pandas as pd

    return arrow_schema("frames").empty_table().to_pandas(types_mapper=pd.ArrowDtype)


def frames_shard(files: Sequence[InputFile], index: int, count: int, options: DecodeOptions,
                 export: ExportOptions) -> Any:
    """The frames table of one shard as a pandas DataFrame (rows in capture order within the shard)."""
    import pandas as pd

    options = replace(options, keep_closed_tunnels=True)
    decoder = options.make_decoder((index, count))
    sinks = {table: MemorySink(table) for table in TABLES}
    exporter = Exporter(decoder, sinks, export, single_name(files))
    exporter.add_all(decode_shard(files, index, count, options, decoder=decoder))
    exporter.close()
    return sinks["frames"].table().to_pandas(types_mapper=pd.ArrowDtype)


def read_frames(paths: Sequence[str | os.PathLike[str]], shards: int = 2, *, options: DecodeOptions | None = None,
                bodies: bool = False) -> Any:
    """The frames table of ``paths`` as a ``dask.dataframe.DataFrame``: one partition per shard.

    ``paths`` are capture files or directories, read as one capture merged
    by packet time (as the ``mproxy`` commands read INPUT...). Nothing is
    decoded until you compute: each partition is then decoded by a worker of
    the current Dask scheduler (a ``distributed.Client``, if one is active),
    from the paths. Rows are in capture order within a partition; the
    partitions together are the rows of ``mproxy export``'s frames table.
    ``options`` (``parallel.DecodeOptions``) sets the key log, secrets and
    bounds; ``bodies`` fills the ``body`` column.
    """
    _require_dask(dataframe=True)
    import dask.dataframe as dd

    if shards < 1:
        raise ValueError("shards must be at least 1")
    files = expand_inputs(list(paths))
    options = options or DecodeOptions()
    export = ExportOptions(bodies=bodies, show_secrets=options.show_secrets)
    return dd.from_map(_FramesTask(files, shards, options, export), range(shards), meta=frames_meta(),
                       divisions=[None] * (shards + 1), enforce_metadata=False)


class _FramesTask:
    """``frames_shard`` for one partition index (a picklable callable for ``dask.dataframe.from_map``)."""

    def __init__(self, files: list[InputFile], count: int, options: DecodeOptions, export: ExportOptions) -> None:
        self.files = files
        self.count = count
        self.options = options
        self.export = export

    def __call__(self, index: int) -> Any:
        return frames_shard(self.files, index, self.count, self.options, self.export)


class DaskShards:
    """Every shard as a task on an existing Dask cluster (``--scheduler ADDRESS``); a failed task fails the run."""

    def __init__(self, address: str, shards: int | None = None) -> None:
        _require_dask(dataframe=False)
        self.address = address
        self.shards = shards

    def count(self, client: Any) -> int:
        """Shards to cut: as asked, else one per worker thread of the cluster."""
        if self.shards:
            return self.shards
        threads = sum(client.nthreads().values())
        return max(1, threads)

    def run(self, task: Callable[..., dict[str, Any]], make_args: Callable[[int], list[tuple[Any, ...]]]
            ) -> list[dict[str, Any]]:
        """``task(*args)`` for each shard's arguments (``make_args(shard count)``) on the cluster, in shard order."""
        from distributed import Client
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        try:
            client = Client(self.address, timeout=30, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
        with client:
            args = make_args(self.count(client))
            futures = [client.submit(task, *call, pure=False, key=f"mproxy-{task.__name__}-{i}-of-{len(args)}")
                       for i, call in enumerate(args)]
            try:
                return client.gather(futures)
            except (KilledWorker, FutureCancelledError) as exc:
                raise UserError(f"a Dask worker died before its shard finished ({exc}): the output is "
                                "incomplete") from None
            except FileNotFoundError as exc:
                raise UserError(f"a Dask worker cannot read {exc.filename}: inputs must be on storage every "
                                "worker reaches at the same path") from None
            except UserError:
                raise
            except Exception as exc:  # a worker without mproxy-scapy, a task that cannot be unpickled, ...
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise UserError(f"a shard failed on the Dask cluster at {self.address}: {type(exc).__name__}: "
                                f"{reason} (each worker needs mproxy-scapy installed)") from None
            finally:
                client.cancel(futures)
