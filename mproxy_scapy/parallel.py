"""Decoding on every core: shards of TCP connections in worker processes, merged back into capture order.

Worker k of N reads the same inputs in the same order and decodes only the TCP
connections of shard k (``decoder.flow_shard``: connections dealt round by
their number). Every worker keeps the TCP state of every connection, so
connection (tunnel) numbers, port reuse and evictions are exactly those of one
decoder; what the other shards' connections still cost it is mostly reading
their packets: their in-order data and ACKs make no events, and with a single
input the packet reader drops them right after their IP and TCP headers,
before they are even Segments (``tcp.QuietSkipper``; dropped packets are
counted back into the record keys and totals). On the raw-TCP benchmark
capture a worker of two still spends about 0.19 s more than half of one
decoder's 1.2 s (benchmarks/README.md). Each record leaves a worker with its key
(``Decoder.decode_keyed``): the parent merges the workers' streams by key,
which gives exactly the records, in exactly the order, that one decoder gives.
Workers send batches through pipes; a full pipe stops its worker until the
parent reads, so memory stays bounded (one batch and one pipe buffer
per worker), and a worker with few records of its own sends where it has got to
(a watermark) so the others need not wait for it.

Two ways to use it:

- ``decode_shard(paths, index, count, options)``: one shard's records, in a
  process of your own (a Dask task, say); ``DecodeOptions`` is plain data and
  pickles.
- ``JobRun(files, options, jobs, transform)``: ``--jobs N`` of the commands.
  ``transform(record, decoder)`` runs in the worker (it may render the record
  to text, or drop it by returning None); the parent gets the results in
  capture order, then ``Totals`` that stand in for the decoder's totals.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .decoder import END_OF_ITEMS, Decoder, Record, StageEvent, TunnelInfo
from .errors import UserError
from .inputs import InputFile, InputSet, expand_inputs

BATCH = 512
"""Records per message from a worker."""
WATERMARK_ITEMS = 8192
"""A worker says how far it has read at least this often (in capture items), records or not."""
HELD_BYTES = 16 << 20
"""Records the parent holds per worker ahead of the merge (as sent): what a worker may run ahead besides its pipe."""
PIPE_BYTES = 1 << 20
"""Pipe buffer asked for per worker (Linux F_SETPIPE_SZ): how far a worker may run ahead of the merge."""
_F_SETPIPE_SZ = 1031
_DONE = (END_OF_ITEMS + 2, 0)


@dataclass(frozen=True)
class DecodeOptions:
    """Everything a decoder is made from, as plain data that pickles (for worker processes and Dask tasks).

    ``keylog`` is a path to an NSS key log (each process loads it itself);
    the ``max_*`` bounds are those of ``docs/HARDENING.md``;
    ``keep_closed_tunnels`` keeps every tunnel's totals (``mproxy stats``);
    ``report_closed`` makes a tunnel's end a record (``Decoder.report_closed``).
    """

    show_secrets: bool = False
    keylog: str | None = None
    max_flows: int | None = None
    max_buffered: int | None = None
    max_frame_held: int | None = None
    max_message: int | None = None
    keep_closed_tunnels: bool = False
    report_closed: bool = False

    def make_decoder(self, shard: tuple[int, int] | None = None) -> Decoder:
        """A fresh decoder with these options; ``shard=(index, count)`` decodes only that shard's connections."""
        from .carrier import DEFAULT_MAX_MESSAGE, Carrier
        from .parser import DEFAULT_MAX_BODY_HELD
        from .tcp import DEFAULT_MAX_BUFFERED, DEFAULT_MAX_FLOWS, TcpReassembler
        from .tls import KeyLog

        keylog = KeyLog.load(self.keylog) if self.keylog else None
        show_secrets = self.show_secrets
        max_message = self.max_message or DEFAULT_MAX_MESSAGE
        decoder = Decoder(show_secrets=show_secrets, keylog=keylog,
                       max_body_held=self.max_frame_held or DEFAULT_MAX_BODY_HELD,
                       keep_closed_tunnels=self.keep_closed_tunnels, shard=shard,
                       reassembler=TcpReassembler(max_flows=self.max_flows or DEFAULT_MAX_FLOWS,
                                                  max_buffered_per_flow=self.max_buffered or DEFAULT_MAX_BUFFERED),
                       carrier_factory=lambda: Carrier(show_secrets=show_secrets, max_message=max_message))
        decoder.report_closed = self.report_closed
        return decoder


def decode_shard(paths: Sequence[str | os.PathLike[str]] | Sequence[InputFile], index: int, count: int,
                 options: DecodeOptions, *, decoder: Decoder | None = None) -> Iterator[Record]:
    """The records of shard ``index`` of ``count`` over ``paths``, in capture order, labelled.

    ``paths`` are files, directories or ``InputFile`` (``inputs.expand_inputs``),
    merged by time as ``inputs.open_inputs`` does. Records carry ``pcap_file``
    (several inputs) and the per-file ``pcap_frame``. The shards' records
    together are one decoder's records; merge them in capture order with
    ``merge_keyed`` on ``decode_shard_keyed``. Pass ``decoder`` (from
    ``options.make_decoder((index, count))``) to read its totals afterwards.
    Standard input (``-``) cannot be shared by several shards.
    """
    for _, record in decode_shard_keyed(paths, index, count, options, decoder=decoder):
        yield record


def decode_shard_keyed(paths: Sequence[str | os.PathLike[str]] | Sequence[InputFile], index: int, count: int,
                       options: DecodeOptions, *, decoder: Decoder | None = None,
                       on_skip: Callable[[InputFile, str], None] | None = None,
                       tick: Callable[[int, InputSet], None] | None = None) -> Iterator[tuple[tuple[int, int], Record]]:
    """``decode_shard`` with each record's merge key (``Decoder.decode_keyed``).

    ``tick(n, inputs)`` is called before the n-th capture item when n is a
    multiple of ``WATERMARK_ITEMS``: every record still to come has a key of at
    least ``(n, 0)``.
    """
    files = _files(paths)
    if count > 1 and any(f.is_stdin for f in files):
        raise UserError("standard input can be read by one decoder only (use --jobs 1)")
    if decoder is None:
        decoder = options.make_decoder((index, count))
    skipper = decoder.quiet_skipper() if len(files) == 1 else None
    inputs = InputSet(files, on_skip=on_skip, quiet=skipper)
    if skipper is not None:
        return _skipped_back(decoder.decode_keyed(_numbered(inputs, skipper, tick), numbered=True), skipper, decoder)
    items: Iterable[Any] = inputs if tick is None else _ticking(inputs, tick)
    keyed = decoder.decode_keyed(items)
    if not inputs.several:
        return keyed
    return _labelled(keyed, inputs)


def _files(paths: Sequence[str | os.PathLike[str]] | Sequence[InputFile]) -> list[InputFile]:
    if paths and all(isinstance(p, InputFile) for p in paths):
        return list(paths)  # type: ignore[arg-type]
    return expand_inputs(paths)  # type: ignore[arg-type]


def _ticking(inputs: InputSet, tick: Callable[[int, InputSet], None]) -> Iterator[Any]:
    for n, item in enumerate(inputs):
        if not n % WATERMARK_ITEMS:
            tick(n, inputs)
        yield item


def _numbered(inputs: InputSet, skipper: Any, tick: Callable[[int, InputSet], None] | None
              ) -> Iterator[tuple[int, Any]]:
    """The items the reader yields, each with its number in the capture (packets the reader dropped counted:
    they are all counted by the time the next item comes, the reader reads nothing ahead); ticks as
    ``_ticking`` does. Notes for ``_skipped_back`` whether dropped packets came after the last item with a time."""
    due = 0
    for index, item in enumerate(inputs):
        n = index + skipper.count
        if item.ts is not None:
            skipper.after = False
        if tick is not None and n >= due:
            tick(n, inputs)
            due = n - n % WATERMARK_ITEMS + WATERMARK_ITEMS
        yield n, item


def _skipped_back(keyed: Iterator[tuple[tuple[int, int], Record]], skipper: Any,
                  decoder: Decoder) -> Iterator[tuple[tuple[int, int], Record]]:
    """The records; then the packet count and last time of a decoder whose reader dropped packets
    (``tcp.QuietSkipper``) made those of one that saw them."""
    yield from keyed
    decoder.packets += skipper.count
    if skipper.after:
        decoder.last_ts = skipper.last_ts


def _labelled(keyed: Iterator[tuple[tuple[int, int], Record]],
              inputs: InputSet) -> Iterator[tuple[tuple[int, int], Record]]:
    locate = inputs.locate
    for key, record in keyed:
        if record.pcap_frame is not None:
            record.pcap_file, record.pcap_frame = locate(record.pcap_frame)
        yield key, record


def merge_keyed(streams: Sequence[Iterable[tuple[tuple[int, int], Any]]]) -> Iterator[Any]:
    """The values of several shards' keyed streams in key order (ties: the earlier stream): one decoder's order."""
    import heapq

    for _, value in heapq.merge(*streams, key=lambda pair: pair[0]):
        yield value


class Totals:
    """The totals of all shards, read by the commands as they read a ``Decoder``'s (same attribute names)."""

    def __init__(self) -> None:
        self.packets = 0
        self.connections = 0
        self.tunnel_count = 0
        self.tls_not_decrypted = 0
        self.skipped: Counter[str] = Counter()
        self.skipped_bytes = 0
        self.problem_counts: Counter[str] = Counter()
        self.first_problems: dict[str, StageEvent] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.tunnels: dict[int, TunnelInfo] = {}
        self.extra: list[Any] = []
        """Each worker's ``transform.totals`` (if it has them), in worker order."""

    def add(self, parts: list[dict[str, Any]]) -> None:
        """Fold the shards' end-of-run summaries (``shard_summary``) in, in shard order."""
        first = parts[0]
        self.packets, self.first_ts, self.last_ts = first["packets"], first["first_ts"], first["last_ts"]
        firsts: dict[str, tuple[tuple[int, int], StageEvent]] = {}
        tunnels: list[tuple[tuple[int, int], int, int, TunnelInfo]] = []
        for worker, part in enumerate(parts):
            self.connections += part["connections"]
            self.tunnel_count += part["tunnel_count"]
            self.tls_not_decrypted += part["tls_not_decrypted"]
            self.skipped.update(part["skipped"])
            self.skipped_bytes += part["skipped_bytes"]
            self.problem_counts.update(part["problem_counts"])
            for name, (key, event) in part["first_problems"].items():
                if name not in firsts or key < firsts[name][0]:
                    firsts[name] = (key, event)
            for tunnel in part["tunnels"]:
                tunnels.append(((tunnel.order[0], tunnel.order[1]), worker, tunnel.order[2], tunnel))
            self.extra.append(part["extra"])
        self.first_problems = {name: event for name, (_, event) in firsts.items()}
        for *_, tunnel in sorted(tunnels, key=lambda entry: entry[:3]):
            self.tunnels[tunnel.id] = tunnel


def shard_summary(decoder: Decoder, firsts: dict[str, tuple[tuple[int, int], StageEvent]],
                  extra: Any = None, *, tunnels: bool = True) -> dict[str, Any]:
    """What a shard sends back at its end, for ``Totals.add``: ``decoder``'s totals as plain data that pickles.

    ``firsts`` is the first problem record of each kind (``stage.kind``) with
    its record key, so the merged ``first_problems`` are one decoder's;
    ``extra`` is whatever the shard's transform counted (``Totals.extra``).
    ``tunnels=False`` leaves out each tunnel's totals (``TunnelInfo``), for a
    caller that does not read ``Totals.tunnels``: with a fleet's captures they
    would be most of what comes back.
    """
    return {
        "packets": decoder.packets, "first_ts": decoder.first_ts, "last_ts": decoder.last_ts,
        "connections": decoder.connections, "tunnel_count": decoder.tunnel_count,
        "tls_not_decrypted": decoder.tls_not_decrypted, "skipped": dict(decoder.skipped),
        "skipped_bytes": decoder.skipped_bytes, "problem_counts": dict(decoder.problem_counts),
        "first_problems": firsts, "tunnels": list(decoder.tunnels.values()) if tunnels else [], "extra": extra,
    }


def _worker(writer: Any, files: list[InputFile], index: int, count: int, options: DecodeOptions,
            transform: Callable[[Record, Decoder], Any] | None, skip_note: Callable[[InputFile, str], None] | None
            ) -> None:
    """One shard in a worker process: keyed (and transformed) records to ``writer`` in batches, then the totals."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    batch: list[tuple[tuple[int, int], Any]] = []
    send = writer.send
    progress = [0]

    def tick(n: int, inputs: InputSet) -> None:
        if index == 0:
            progress[0] = inputs.bytes_done()
        send(("batch", batch[:], (n, 0), progress[0]))
        batch.clear()

    try:
        decoder = options.make_decoder((index, count))
        firsts: dict[str, tuple[tuple[int, int], StageEvent]] = {}
        keyed = decode_shard_keyed(files, index, count, options, decoder=decoder,
                                   on_skip=skip_note if index == 0 else None, tick=tick)
        append = batch.append
        for key, record in keyed:
            if type(record) is StageEvent and record.is_problem:
                name = f"{record.stage}.{record.kind}"
                if name not in firsts:
                    firsts[name] = (key, record)
            value = transform(record, decoder) if transform is not None else record
            if value is not None:
                append((key, value))
                if len(batch) >= BATCH:
                    send(("batch", batch[:], key, progress[0]))
                    batch.clear()
        send(("batch", batch[:], _DONE, progress[0]))
        send(("end", shard_summary(decoder, firsts, getattr(transform, "totals", None))))
    except UserError as exc:
        send(("error", str(exc)))
    except BrokenPipeError:
        pass  # the parent is gone (its output closed): nothing to tell it
    except Exception as exc:  # a bug: say which worker and what, the parent stops with it
        import traceback

        send(("error", f"worker {index} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        writer.close()


class _Worker:
    """The parent's side of one worker: its process, pipe, records received and not yet merged."""

    def __init__(self, index: int, process: Any, reader: Any) -> None:
        self.index = index
        self.process = process
        self.reader = reader
        self.pending: deque[tuple[tuple[int, int], Any]] = deque()
        self.low: tuple[int, int] = (0, 0)
        """Every record still to come from this worker has at least this key."""
        self.summary: dict[str, Any] | None = None
        self.progress = 0
        self.pending_bytes = 0
        self.pending_count = 0
        """Bytes and records received since ``pending`` was last empty (its average record size)."""

    @property
    def done(self) -> bool:
        return self.summary is not None and not self.pending

    @property
    def held(self) -> int:
        """About how many bytes (as sent) of records this worker has waiting here."""
        return self.pending_bytes * len(self.pending) // self.pending_count if self.pending_count else 0

    def receive(self, jobs: int) -> None:
        """The worker's next message (blocking); a worker that died or failed is a ``UserError``."""
        try:
            data = self.reader.recv_bytes()
            message = pickle.loads(data)
        except (EOFError, OSError, pickle.UnpicklingError):
            raise UserError(self._death(jobs)) from None
        if message[0] == "batch":
            _, records, low, progress = message
            if not self.pending:
                self.pending_bytes = self.pending_count = 0
            self.pending.extend(records)
            self.pending_bytes += len(data)
            self.pending_count += len(records)
            self.low = low
            self.progress = progress
        elif message[0] == "end":
            self.summary = message[1]
            self.low = _DONE
        else:
            raise UserError(message[1])

    def _death(self, jobs: int) -> str:
        self.process.join(2)
        code = self.process.exitcode
        if code is None:
            how = "stopped answering"
        elif code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return (f"worker {self.index + 1} of {jobs} (pid {self.process.pid}) {how} before it finished: "
                "the output is incomplete")


class JobRun:
    """``--jobs N``: iterate for the transformed records in capture order; ``totals`` once iteration has ended."""

    def __init__(self, files: Sequence[InputFile], options: DecodeOptions, jobs: int,
                 transform: Callable[[Record, Decoder], Any] | None = None,
                 skip_note: Callable[[InputFile, str], None] | None = None) -> None:
        if any(f.is_stdin for f in files):
            raise UserError("standard input can be read by one process only: use --jobs 1 with '-'")
        self.files = list(files)
        self.options = options
        self.jobs = jobs
        self.transform = transform
        self.skip_note = skip_note
        self.totals = Totals()
        self.workers: list[_Worker] = []

    def bytes_done(self) -> int:
        """Input bytes read so far (worker 1's count: every worker reads all inputs)."""
        return self.workers[0].progress if self.workers else 0

    def start(self) -> None:
        import multiprocessing  # 10 ms of start-up that --jobs 1 does not pay

        method = "fork" if sys.platform.startswith("linux") else "spawn"
        context = multiprocessing.get_context(method)
        if method == "fork":
            self.options.make_decoder()  # the stages' modules imported once here, not once in every worker
        for index in range(self.jobs):
            reader, writer = context.Pipe(duplex=False)
            _widen(writer)
            process = context.Process(target=_worker, name=f"mproxy-worker-{index + 1}", daemon=True,
                                      args=(writer, self.files, index, self.jobs, self.options, self.transform,
                                            self.skip_note))
            process.start()
            writer.close()  # only the worker may hold the write end: its death then reads as end of file
            self.workers.append(_Worker(index, process, reader))

    def stop(self) -> None:
        """End every worker still running (by its own process), and reap them."""
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.process.join(5)
            worker.reader.close()

    def __iter__(self) -> Iterator[Any]:
        self.start()
        try:
            yield from self._merge()
            self.totals.add([w.summary for w in self.workers])  # type: ignore[misc]
        finally:
            self.stop()

    def _merge(self) -> Iterator[Any]:
        """The k-way merge by key: a worker holds the merge back only while it may still send a smaller key."""
        from multiprocessing.connection import wait

        workers = self.workers
        jobs = self.jobs
        while True:
            best: _Worker | None = None
            for worker in workers:
                if worker.pending and (best is None or worker.pending[0][0] < best.pending[0][0]):
                    best = worker
            # a worker with nothing pending might still send a smaller key than the best one: hear from it first
            waiting = next((w for w in workers if not w.pending and w.summary is None
                            and (best is None or w.low < best.pending[0][0])), None)
            if waiting is not None:
                # while it is awaited, read whatever the others have sent too (up to HELD_BYTES each), so a
                # worker that runs ahead is not stopped by a full pipe while another one is slow to answer
                readers = {w.reader: w for w in workers if w.summary is None and (w is waiting or w.held < HELD_BYTES)}
                for reader in wait(list(readers)):
                    readers[reader].receive(jobs)
                continue
            if best is None:
                return
            bound = _DONE
            for worker in workers:
                if worker is not best:
                    edge = worker.pending[0][0] if worker.pending else worker.low
                    if edge < bound:
                        bound = edge
            pending = best.pending
            popleft = pending.popleft
            while pending and pending[0][0] <= bound:
                yield popleft()[1]


def _widen(connection: Any) -> None:
    """A bigger pipe buffer, so a worker runs further ahead of the merge (Linux; elsewhere the default)."""
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError):
        pass


def cpu_count() -> int:
    """Cores this process may use (``--jobs 0``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
