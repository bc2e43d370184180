"""What the capture-reading sub-commands share: the FILE / ``-i IFACE`` arguments, opening the
source with one-line errors, the progress bar, and the bundled default capture."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..decoder import Decoder, Record
from ..errors import UserError
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
    """FILE (optional when the bundled capture is the default) and, for live-capable commands, -i/BPF."""
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE",
                        help="pcap or pcapng capture (default: the bundled example capture)")
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
                        "$SSLKEYLOGFILE, else a FILE-stem.keys file next to the capture")
    parser.add_argument("--show-secrets", action="store_true",
                        help="show tokens (control arguments, access_token, Authorization) instead of redacting")
    add_bound_arguments(parser)


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


def make_decoder(args: argparse.Namespace, *, keep_closed_tunnels: bool = False) -> Decoder:
    """The decoder for these arguments: secrets shown or not, a TLS key log if one is given or found."""
    from ..tls import KeyLog

    keylog_path = args.tls_keylog or os.environ.get("SSLKEYLOGFILE")
    if keylog_path is None and args.file is not None and not getattr(args, "interface", None):
        sibling = args.file.with_suffix(".keys")
        keylog_path = sibling if sibling.is_file() else None
    if keylog_path is not None and not Path(keylog_path).is_file():
        raise UserError(f"{keylog_path}: no such TLS key log file")
    keylog = KeyLog.load(keylog_path) if keylog_path else None
    for warning in keylog.warnings if keylog is not None else ():
        print(f"mproxy: warning: {safe_text(warning)}", file=sys.stderr)
    from ..carrier import Carrier
    from ..tcp import TcpReassembler

    show_secrets, max_message = args.show_secrets, args.max_message
    return Decoder(show_secrets=show_secrets, keylog=keylog, max_body_held=args.max_frame_held,
                   keep_closed_tunnels=keep_closed_tunnels,
                   reassembler=TcpReassembler(max_flows=args.max_flows, max_buffered_per_flow=args.max_buffered),
                   carrier_factory=lambda: Carrier(show_secrets=show_secrets, max_message=max_message))


def open_items(args: argparse.Namespace) -> Iterable[Any]:
    """The capture items for ``args``; every way of failing to open becomes a UserError."""
    iface = getattr(args, "interface", None)
    if iface:
        if args.file is not None:
            raise UserError("give either FILE or -i IFACE, not both")
        return _live_items(iface, getattr(args, "bpf", None), args.duration, args.count)
    path = args.file if args.file is not None else bundled_capture()
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a capture file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{path}: permission denied")
    from ..pcap import open_capture

    items = _guarded(open_capture(str(path)), str(path))
    if sys.stderr.isatty() and path.stat().st_size >= PROGRESS_MIN_BYTES:
        return _with_progress(items, path)
    return items


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


def _with_progress(items: Iterator[Any], path: Path) -> Iterator[Any]:
    """A rich progress bar on stderr while a big file decodes.

    The reader's byte position is not part of its interface, so the position
    is estimated: each item counts its TCP payload plus a typical per-packet
    overhead (record header, link, IP and TCP headers).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    total = path.stat().st_size
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), DownloadColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"decoding {escape(safe_text(path.name))}", total=total)
        done = 0
        step = 0
        for item in items:
            payload = getattr(item, "payload", None)
            done += (len(payload) if payload is not None else 0) + 70
            step += 1
            if step == 2000:
                progress.update(task, completed=min(done, total))
                step = 0
            yield item


_FATAL_SOURCE_PROBLEMS = ("truncated_record", "bad_record_length")


def tls_hint(decoder: Decoder) -> None:
    """Say so when TLS connections went by undecrypted: they may be the wss:// tunnels the user wants."""
    if decoder.tls_not_decrypted:
        print(f"mproxy: {decoder.tls_not_decrypted} TLS connections were not decrypted (wss:// tunnels need "
              "--tls-keylog KEYLOG)", file=sys.stderr)


def check_source(args: argparse.Namespace, decoder: Decoder) -> None:
    """After the output: a capture that could not be read to its end is an error (exit 2).

    What was decoded before the damage has been printed by then; this adds
    the one line that says the file is damaged. A file with no packet of a
    link type we read is an error too.
    """
    tls_hint(decoder)
    where = args.interface if getattr(args, "interface", None) else str(args.file or bundled_capture())
    for kind in _FATAL_SOURCE_PROBLEMS:
        event = decoder.first_problems.get(f"capture.{kind}")
        if event is not None:
            raise UserError(f"{where}: truncated or damaged capture at packet {event.pcap_frame}: {event.detail} "
                            "(records before it were decoded)")
    unsupported = decoder.first_problems.get("capture.unsupported_linktype")
    if unsupported is not None and decoder.packets == 0:
        raise UserError(f"{where}: {unsupported.detail}")


def decode_records(args: argparse.Namespace, decoder: Decoder) -> Iterator[Record]:
    """The records of the chosen source; a live capture ends cleanly on Ctrl-C."""
    items = open_items(args)
    if not getattr(args, "interface", None):
        yield from decoder.decode(items)
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
