"""What the capture-reading sub-commands share: the INPUT... / ``-i IFACE`` / ``--jobs`` arguments,
opening the source (``inputs.py``, or worker processes through ``parallel.py``) with one-line errors,
the progress bar, and the bundled default capture."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..decoder import Decoder, Record
from ..errors import UserError
from ..inputs import InputFile, InputSet, expand_inputs
from ..parallel import DecodeOptions, JobRun, cpu_count
from ..textout import safe_text

BUNDLED_CAPTURE = "websocket.pcap"
PROGRESS_MIN_BYTES = 16 * 1024 * 1024
"""Files smaller than this decode too fast for a progress bar to help."""


def bundled_capture() -> Path:
    """The capture shown when no FILE is given: packaged data, else the repository's captures/."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir / "data" / BUNDLED_CAPTURE, package_dir.parent / "captures" / BUNDLED_CAPTURE):
        if candidate.is_file():
            return candidate
    raise UserError(f"no FILE given and the bundled capture {BUNDLED_CAPTURE} is not installed")


def add_file_argument(parser: argparse.ArgumentParser, *, live: bool) -> None:
    """INPUT... (the bundled capture when none), --jobs, and for live-capable commands -i/BPF; sets ``args.inputs``."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="pcap/pcapng files (also .gz/.zst), directories (searched recursively) or - for "
                        "standard input, read as one capture merged by packet time (default: the bundled "
                        "example capture)")
    parser.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N",
                        help="decode on N processes, TCP connections split between them, output unchanged "
                        "(default 1; 0: one per core)")
    if live:
        parser.add_argument("-i", "--interface", metavar="IFACE",
                            help="capture live on this interface instead of reading a file (needs root)")
        parser.add_argument("-f", "--filter", dest="bpf", metavar="BPF",
                            help="BPF capture filter for -i, e.g. 'tcp port 443'")
        parser.add_argument("-a", "--duration", type=float, metavar="SECONDS",
                            help="with -i: stop after this many seconds (default: until Ctrl-C)")
        parser.add_argument("-c", "--count", type=int, metavar="N", help="with -i: stop after N packets")
    parser.add_argument("--tls-keylog", type=Path, metavar="KEYLOG",
                        help="NSS key log (SSLKEYLOGFILE) to decrypt wss:// tunnels (TLS 1.3; TLS 1.2 with ECDHE and "
                        "AES-GCM or ChaCha20); default: "
                        "$SSLKEYLOGFILE, else a FILE-stem.keys file next to a single capture")
    parser.add_argument("--show-secrets", action="store_true",
                        help="show tokens (control arguments, access_token, Authorization) instead of redacting")
    add_bound_arguments(parser)


def _jobs(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes (0: one per core)")
    return int(text)


def input_files(args: argparse.Namespace) -> list[InputFile]:
    """``args.inputs`` expanded (``inputs.expand_inputs``); the bundled capture when none is given."""
    specs = getattr(args, "inputs", None) or [bundled_capture()]
    return expand_inputs(specs)


def byte_count(text: str) -> int:
    """A positive number of bytes, with an optional K, M or G suffix (powers of 1024)."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of bytes (e.g. 65536, 64K, 16M)")
    return int(digits) * scale


def positive_int(text: str) -> int:
    """A count of at least 1."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def add_bound_arguments(parser: argparse.ArgumentParser) -> None:
    """The memory bounds a hostile capture runs into (docs/HARDENING.md); past each one a problem is reported."""
    from ..carrier import DEFAULT_MAX_MESSAGE
    from ..parser import DEFAULT_MAX_BODY_HELD
    from ..tcp import DEFAULT_MAX_BUFFERED, DEFAULT_MAX_FLOWS

    bounds = parser.add_argument_group("resource bounds")
    bounds.add_argument("--max-flows", type=positive_int, default=DEFAULT_MAX_FLOWS, metavar="N",
                        help="TCP connections tracked at once; the least recently active is evicted (reported) "
                        f"past it (default {DEFAULT_MAX_FLOWS})")
    bounds.add_argument("--max-buffered", type=byte_count, default=DEFAULT_MAX_BUFFERED, metavar="BYTES",
                        help="out-of-order bytes held per connection direction; past it the hole is declared "
                        f"lost, a gap (default {DEFAULT_MAX_BUFFERED})")
    bounds.add_argument("--max-frame-held", type=byte_count, default=DEFAULT_MAX_BODY_HELD, metavar="BYTES",
                        help="body bytes held for one incomplete M-PROXY frame; a larger body streams through "
                        f"hashed, not held (default {DEFAULT_MAX_BODY_HELD})")
    bounds.add_argument("--max-message", type=byte_count, default=DEFAULT_MAX_MESSAGE, metavar="BYTES",
                        help="decompressed bytes per WebSocket message (permessage-deflate); the rest is "
                        f"dropped and reported (default {DEFAULT_MAX_MESSAGE})")


def decode_options(args: argparse.Namespace, files: list[InputFile], *, keep_closed_tunnels: bool = False,
                   report_closed: bool = False) -> DecodeOptions:
    """The decoder settings of these arguments: secrets shown or not, a TLS key log if one is given or found."""
    keylog_path = args.tls_keylog or os.environ.get("SSLKEYLOGFILE")
    if keylog_path is None and len(files) == 1 and not files[0].is_stdin and not getattr(args, "interface", None):
        sibling = Path(files[0].path).with_suffix(".keys")
        keylog_path = sibling if sibling.is_file() else None
    if keylog_path is not None and not Path(keylog_path).is_file():
        raise UserError(f"{keylog_path}: no such TLS key log file")
    if keylog_path:  # read here once for its warnings; each decoder (process) loads it again for itself
        from ..tls import KeyLog

        for warning in KeyLog.load(keylog_path).warnings:
            print(f"mproxy: warning: {safe_text(warning)}", file=sys.stderr)
    return DecodeOptions(show_secrets=args.show_secrets, keylog=os.fspath(keylog_path) if keylog_path else None,
                         max_flows=args.max_flows, max_buffered=args.max_buffered,
                         max_frame_held=args.max_frame_held, max_message=args.max_message,
                         keep_closed_tunnels=keep_closed_tunnels, report_closed=report_closed)


class Source:
    """What a command reads: its records in capture order (iterate once), then ``totals``.

    With ``--jobs 1`` (or a live interface, or standard input) one ``Decoder``
    in this process does the work and is ``totals``; with more, worker
    processes do (``parallel.JobRun``) and ``totals`` is their sum, with the
    same attribute names. ``transform(record, decoder)`` runs where the
    record is decoded (in the workers with --jobs) and what it returns, unless
    None, is what iterating gives; its ``totals`` attribute, if any, comes back
    in ``extras`` (one per decoder). ``interactive`` is true when records come
    from something still running (an interface, a pipe): print them at once.
    ``jobs`` overrides ``--jobs`` (1 for a command that needs the one decoder
    while records stream, as ``check`` does with ``totals.tunnels``).
    """

    def __init__(self, args: argparse.Namespace, *, keep_closed_tunnels: bool = False, report_closed: bool = False,
                 transform: Callable[[Record, Any], Any] | None = None, jobs: int | None = None) -> None:
        self.args = args
        self.transform = transform
        self.live = bool(getattr(args, "interface", None))
        if self.live and args.inputs:
            raise UserError("give either INPUT or -i IFACE, not both")
        self.files = [] if self.live else input_files(args)
        self.interactive = self.live or any(f.is_stdin for f in self.files)
        self.options = decode_options(args, self.files, keep_closed_tunnels=keep_closed_tunnels,
                                      report_closed=report_closed)
        asked = args.jobs or cpu_count()
        if jobs is None:
            jobs = asked
        elif asked > jobs:
            print(f"mproxy: --jobs: {args.command} decodes in one process", file=sys.stderr)
        if jobs > 1 and self.interactive:
            print("mproxy: --jobs: a live capture or standard input is decoded by one process", file=sys.stderr)
            jobs = 1
        self.jobs = jobs
        self.totals: Any = self.options.make_decoder() if jobs == 1 else None
        self.extras: list[Any] = []
        self.inputs: InputSet | None = None

    @property
    def where(self) -> str:
        """The source in messages: the interface, the single input, or how many inputs."""
        if self.live:
            return self.args.interface
        return self.files[0].name if len(self.files) == 1 else f"{len(self.files)} inputs"

    @property
    def label(self) -> str:
        """The progress bar's name for the inputs."""
        return Path(self.files[0].name).name if len(self.files) == 1 else f"{len(self.files)} inputs"

    def __iter__(self) -> Iterator[Any]:
        transform = self.transform
        if self.jobs > 1:
            run = JobRun(self.files, self.options, self.jobs, transform, _note_skipped)
            values = _with_progress(iter(run), run.bytes_done, self._progress_total(), self.label)
            yield from values
            self.totals = run.totals
            self.extras = run.totals.extra
            return
        decoder = self.totals
        records = decode_records(self, decoder)
        if transform is None:
            yield from records
        else:
            for record in records:
                value = transform(record, decoder)
                if value is not None:
                    yield value
        self.extras = [getattr(transform, "totals", None)]

    def _progress_total(self) -> int | None:
        total = sum(f.size or 0 for f in self.files)
        if not sys.stderr.isatty() or total < PROGRESS_MIN_BYTES or any(f.is_stdin for f in self.files):
            return None
        return total


def _note_skipped(source: InputFile, message: str) -> None:
    """An input that is not a capture, among several: said on stderr (it is a ``not_a_capture`` record too)."""
    print(f"mproxy: {message}: skipped", file=sys.stderr, flush=True)


def open_items(source: Source) -> Iterable[Any]:
    """The capture items of ``source``; every way of failing to open becomes a UserError."""
    args = source.args
    if source.live:
        return _live_items(args.interface, getattr(args, "bpf", None), args.duration, args.count)
    inputs = source.inputs = InputSet(source.files, on_skip=_note_skipped)
    items = _guarded(inputs, source.where)
    total = source._progress_total()
    return _with_progress(items, inputs.bytes_done, total, source.label) if total is not None else items


def _live_items(iface: str, bpf: str | None, duration: float | None, count: int | None) -> Iterator[Any]:
    from ..pcap import live_capture

    capture = live_capture(iface, bpf, timeout=duration, count=count)
    print(f"mproxy: capturing on {iface}" + (f" ({bpf})" if bpf else "") + ", Ctrl-C to stop", file=sys.stderr,
          flush=True)
    return _guarded(capture, iface)


def _guarded(items: Iterable[Any], where: str) -> Iterator[Any]:
    """Source failures (not a capture, unsupported link type, no permission) as one-line errors.

    Raised while iterating, since a lazy reader only finds out on its first read.
    """
    try:
        yield from items
    except UserError:
        raise
    except PermissionError as exc:
        raise UserError(f"{where}: permission denied ({exc.strerror or exc}); live capture needs root "
                        "or CAP_NET_RAW") from None
    except OSError as exc:
        raise UserError(f"{where}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def _with_progress(items: Iterator[Any], done: Callable[[], int], total: int | None, what: str) -> Iterator[Any]:
    """A rich progress bar on stderr over all inputs' bytes (as stored) while they decode."""
    if total is None:
        yield from items
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), DownloadColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"decoding {escape(safe_text(what))}", total=total)
        step = 0
        for item in items:
            step += 1
            if step == 2000:
                progress.update(task, completed=min(done(), total))
                step = 0
            yield item


_FATAL_SOURCE_PROBLEMS = ("truncated_record", "bad_record_length")


def tls_hint(decoder: Decoder) -> None:
    """Say so when TLS connections went by undecrypted: they may be the wss:// tunnels the user wants."""
    if decoder.tls_not_decrypted:
        print(f"mproxy: {decoder.tls_not_decrypted} TLS connections were not decrypted (wss:// tunnels need "
              "--tls-keylog KEYLOG)", file=sys.stderr)


def check_source(source: Source) -> None:
    """After the output: an input that could not be read to its end is an error (exit 2).

    What was decoded before the damage has been printed by then; this adds
    the one line that says the input is damaged. Inputs with no packet of a
    link type we read, or none that is a capture at all, are an error too.
    """
    totals = source.totals
    tls_hint(totals)
    for kind in _FATAL_SOURCE_PROBLEMS:
        event = totals.first_problems.get(f"capture.{kind}")
        if event is not None:
            where = event.pcap_file or source.where
            raise UserError(f"{where}: truncated or damaged capture at packet {event.pcap_frame}: {event.detail} "
                            "(records before it were decoded)")
    unsupported = totals.first_problems.get("capture.unsupported_linktype")
    if unsupported is not None and totals.packets == 0:
        raise UserError(f"{unsupported.pcap_file or source.where}: {unsupported.detail}")
    skipped = totals.problem_counts.get("capture.not_a_capture", 0)
    if skipped and skipped == len(source.files):
        raise UserError(f"none of the {skipped} inputs is a pcap or pcapng capture")


def decode_records(source: Source, decoder: Decoder) -> Iterator[Record]:
    """The records of ``source`` from one decoder; a live capture ends cleanly on Ctrl-C."""
    items = open_items(source)
    if not source.live:
        assert source.inputs is not None
        yield from source.inputs.label(decoder.decode(items))
        return
    yield from _until_interrupted(iter(items), decoder)


def _until_interrupted(items: Iterator[Any], decoder: Decoder) -> Iterator[Record]:
    """Live records until the capture ends or Ctrl-C, then what the decoder still holds.

    Ctrl-C while waiting for a packet interrupts the wait; Ctrl-C while the
    caller prints a record only marks the capture as stopping, so no line is
    cut in half and the summary still comes.
    """
    waiting = False
    stopping = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        if waiting:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        while not stopping:
            waiting = True
            try:
                item = next(items)
            except (StopIteration, KeyboardInterrupt):
                break
            finally:
                waiting = False
            yield from decoder.feed(item)
        if stopping:
            print("mproxy: capture stopped", file=sys.stderr)
        yield from decoder.close()
    finally:
        signal.signal(signal.SIGINT, previous)
