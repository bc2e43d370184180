"""Many capture inputs read as one: discovery, opening (gzip, zstd, standard input) and the merge by time.

A fleet keeps directories of rotated captures per relay (``tcpdump -C``/``-G``/``-W``),
often compressed, from many relays. ``expand_inputs`` turns the command line's
files, directories and ``-`` into a list of ``InputFile``; ``open_inputs`` streams
their capture items (``pcap.Segment`` / ``pcap.SourceProblem``) as one capture.

How files become one capture: the same rule as ``mergecap`` (its default,
chronological merge). The next item is always the earliest packet at the head of
any input (ties go to the input given first), so

- files of one capture point (a rotation: time ranges that follow each other)
  come out one after the other, and a TCP connection, tunnel or tunneled
  client that goes on across a rotation boundary goes on in the decoder (no
  false gap, no second tunnel), exactly as ``mergecap`` then ``mproxy`` gives;
- captures of different relays (overlapping times) are interleaved by time.

No capture point is guessed from file names: a file's place is decided by its
packets' times alone, so any naming (``relay.pcap``, ``relay.pcap1``,
``relay-2026120105.pcap.gz``) works. A file is opened only when the merge time
reaches its first packet (each file is peeked once at the start for that time),
so a directory of 1000 rotated files holds one file open at a time, not 1000.
Items of one file keep their own order, as mergecap keeps them.

Which file and packet (``pcap_file``, ``pcap_frame``): with one input the items'
``frame_no`` is the packet number in it, exactly as ``pcap.open_capture`` gives.
With several, ``frame_no`` is a *packet reference*: an int that orders packets
in merged order and says which file and which packet of it (see ``PacketRef``).
``InputSet.locate`` / ``InputSet.label`` turn references on decoded records back
into ``pcap_file`` (the file's name as given or found) and ``pcap_frame`` (the
packet number within that file, 1-based, as Wireshark numbers it).
"""

from __future__ import annotations

import heapq
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import UserError

STDIN = "-"
"""The input name that reads a capture from standard input."""

CAPTURE_NAME = re.compile(r"\.(pcap|pcapng|cap)\d*(\.gz|\.zst)?$", re.IGNORECASE)
"""Files a directory contributes: ``.pcap``, ``.pcapng``, ``.cap``, with the number tcpdump ``-C``/``-W``
appends (``relay.pcap3``), and their ``.gz`` / ``.zst`` forms. A file named on the command line is read
whatever its name."""

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_FRAME_BITS = 40
_FILE_BITS = 20
_SEQ_SHIFT = _FRAME_BITS + _FILE_BITS
_FRAME_MASK = (1 << _FRAME_BITS) - 1
_FILE_MASK = (1 << _FILE_BITS) - 1
MAX_INPUTS = 1 << _FILE_BITS
"""Files one run may read (a packet reference has 20 bits for the file)."""


class PacketRef:
    """How a packet reference (an item's ``frame_no`` when several inputs are read) is made.

    ``(sequence << 60) | (file index << 40) | packet number in the file``: the
    sequence number (0, 1, 2, ... in merged order) makes references grow as the
    merged capture goes on, like mergecap's packet numbers, so everything that
    compares packet numbers (the reassembler's least-recently-active order)
    behaves as on one merged file; the rest says where the packet is.
    """

    @staticmethod
    def make(sequence: int, file_index: int, frame: int) -> int:
        return (sequence << _SEQ_SHIFT) | (file_index << _FRAME_BITS) | frame

    @staticmethod
    def file_index(ref: int) -> int:
        return (ref >> _FRAME_BITS) & _FILE_MASK

    @staticmethod
    def frame(ref: int) -> int:
        return ref & _FRAME_MASK


@dataclass(frozen=True)
class InputFile:
    """One capture input: ``path`` to open (``"-"`` is standard input), ``name`` as records show it."""

    path: str
    name: str
    size: int | None
    """Bytes on disk (compressed size for .gz/.zst); None for standard input."""

    @property
    def is_stdin(self) -> bool:
        return self.path == STDIN


def expand_inputs(specs: Sequence[str | os.PathLike[str]]) -> list[InputFile]:
    """The capture files named by ``specs``: files, directories (searched recursively), and ``-`` (stdin).

    A directory contributes every file whose name matches ``CAPTURE_NAME``, in
    sorted path order; a file named directly is taken whatever its name. Each
    file comes once even when named twice. Raises ``UserError`` (one line) for a
    missing path, an unreadable directory or file, a directory with no capture,
    ``-`` given twice, or ``-`` while standard input is a terminal. The order
    of the list only breaks ties between packets of equal time (see module doc).
    """
    found: list[InputFile] = []
    seen: set[str] = set()
    for spec in specs:
        text = os.fspath(spec)
        if text == STDIN:
            if STDIN in seen:
                raise UserError("'-' (standard input) can be given only once")
            if sys.stdin is None or sys.stdin.isatty():
                raise UserError("'-' reads a capture from standard input, but it is a terminal: pipe a capture "
                                "in, e.g. tcpdump -U -w - -i eth0 | mproxy dissect -")
            seen.add(STDIN)
            found.append(InputFile(STDIN, STDIN, None))
            continue
        path = Path(text)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise UserError(f"{text}: no such file or directory") from None
        except OSError as exc:
            raise UserError(f"{text}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(mode):
            members = _walk(path)
            if not members:
                raise UserError(f"{text}: no capture files (.pcap, .pcapng, .cap, optionally .gz/.zst) in this "
                                "directory")
        else:
            if not os.access(path, os.R_OK):
                raise UserError(f"{text}: permission denied")
            members = [path]
        for member in members:
            key = os.path.realpath(member)
            if key in seen:
                continue
            seen.add(key)
            found.append(InputFile(os.fspath(member), os.fspath(member), member.stat().st_size))
    if len(found) > MAX_INPUTS:
        raise UserError(f"{len(found)} capture files: at most {MAX_INPUTS} can be read in one run")
    return found


def _walk(directory: Path) -> list[Path]:
    """Capture files under ``directory``, recursively, sorted; an unreadable folder is an error, not a skip."""

    def fail(exc: OSError) -> None:
        raise UserError(f"{exc.filename or directory}: cannot read directory: {exc.strerror or exc}")

    found = []
    for root, dirs, files in os.walk(directory, onerror=fail):
        dirs.sort()
        for name in sorted(files):
            if CAPTURE_NAME.search(name):
                member = Path(root, name)
                if not os.access(member, os.R_OK):
                    raise UserError(f"{member}: permission denied")
                found.append(member)
    return found


def open_stream(source: InputFile) -> Any:
    """A ``pcap.CaptureReader`` of one input, decompressing .gz/.zst by content, reading stdin without seeking.

    Raises ``UserError`` when the input cannot be opened or is not a capture.
    A plain or gzip file is opened by the reader itself (its own buffering,
    the single-file path of earlier versions); zstd and standard input are
    handed to it as streams, and standard input is never read ahead of
    the records asked for, so a pipe's records are decoded as they come.
    """
    from .pcap import READ_BUFFER, open_capture

    if source.is_stdin:
        stream: BinaryIO = sys.stdin.buffer
        head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
        return open_capture(_decompressing(stream, head, "standard input"))
    try:
        raw = open(source.path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - the reader closes it
    except OSError as exc:
        raise UserError(f"{source.name}: cannot open: {exc.strerror or exc}") from None
    try:
        head = raw.read(4)
        raw.seek(0)
    except OSError as exc:
        raw.close()
        raise UserError(f"{source.name}: cannot read: {exc.strerror or exc}") from None
    if head == _ZSTD_MAGIC:
        return open_capture(_decompressing(raw, head, source.name))
    return open_capture(raw)


class _Named:
    """A (decompressing) stream with the name the reader shows in its messages, and the stored file's position."""

    def __init__(self, stream: Any, name: str, stored: Any) -> None:
        self._stream = stream
        self._stored = stored
        self.name = name
        self.read = stream.read

    def tell(self) -> int:
        return self._stored.tell()

    def close(self) -> None:
        self._stream.close()


def _decompressing(stream: BinaryIO, head: bytes, name: str) -> Any:
    """``stream`` itself, or a decompressing reader on it when ``head`` is a gzip or zstd magic."""
    if head == _ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raise UserError(f"{name}: zstd-compressed, and the zstandard package is not installed "
                            "(pip install zstandard)") from None
        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True, closefd=True)
        return _Named(reader, name, stream)
    if head[:2] == _GZIP_MAGIC:
        import gzip

        return _Named(gzip.GzipFile(fileobj=stream, mode="rb"), name, stream)
    return _Named(stream, name, stream)


class _Head:
    """One open input in the merge: its reader, its next item and that item's time."""

    __slots__ = ("index", "item", "items", "reader", "ts")

    def __init__(self, index: int, reader: Any) -> None:
        self.index = index
        self.reader = reader
        self.items: Iterator[Any] = iter(reader)
        self.item: Any = None
        self.ts = float("-inf")

    def advance(self) -> bool:
        """The next item into ``item``/``ts``; False at the end of the file."""
        item = next(self.items, None)
        if item is None:
            return False
        self.item = item
        if item.ts is not None:
            self.ts = item.ts
        return True


class InputSet:
    """The merged capture items of several inputs; iterate it once. See the module doc for the order.

    ``files`` are the inputs as given; ``opened`` lists them in the order they
    were first opened, which is the file index in packet references.
    ``bytes_done()`` says how many input bytes (on disk) are read so far, for a
    progress bar over all inputs. ``skipped`` counts inputs that were not
    captures (each reported as a ``not_a_capture`` item and on ``on_skip``).
    ``quiet`` (a ``tcp.QuietSkipper``, for a decoder shard) is handed to the
    reader of a single input (``pcap.CaptureReader.skip_quiet``); several
    inputs are merged by time after they are read, in another order than
    they are read, so their readers drop nothing.
    """

    def __init__(self, files: Sequence[InputFile], *, on_skip: Callable[[InputFile, str], None] | None = None,
                 quiet: Any = None) -> None:
        if not files:
            raise UserError("no capture input")
        self.files = list(files)
        self._quiet = quiet
        self.opened: list[InputFile] = []
        self.skipped = 0
        self._on_skip = on_skip
        self._active: list[_Head] = []
        self._done_bytes = 0
        self.several = len(self.files) > 1
        """References are used (several inputs); with one input items are exactly those of its reader."""

    # -- where a packet is ---------------------------------------------------------------------

    def locate(self, ref: int) -> tuple[str | None, int]:
        """``(pcap_file, pcap_frame)`` of an item's ``frame_no``: (None, ref) with a single input."""
        if not self.several:
            return None, ref
        return self.opened[PacketRef.file_index(ref)].name, PacketRef.frame(ref)

    def label(self, records: Iterable[Any]) -> Iterator[Any]:
        """Decoded records with ``pcap_file`` and per-file ``pcap_frame`` set from their packet references."""
        if not self.several:
            yield from records
            return
        opened = self.opened
        for record in records:
            ref = record.pcap_frame
            if ref is not None:
                record.pcap_file = opened[(ref >> _FRAME_BITS) & _FILE_MASK].name
                record.pcap_frame = ref & _FRAME_MASK
            yield record

    def bytes_total(self) -> int | None:
        """Bytes of all inputs on disk; None when one is standard input (its length is unknown)."""
        if any(f.size is None for f in self.files):
            return None
        return sum(f.size or 0 for f in self.files)

    def bytes_done(self) -> int:
        return self._done_bytes + sum(head.reader.position for head in self._active)

    # -- the items -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        if not self.several:
            return self._single()
        return self._merged()

    def _single(self) -> Iterator[Any]:
        """The one reader's own iterator (opened now): no layer in between, as fast as ``pcap.open_capture``."""
        source = self.files[0]
        reader = open_stream(source)
        if self._quiet is not None:
            reader.skip_quiet(self._quiet)
        self.opened.append(source)
        self._active.append(_Head(0, reader))
        return iter(reader)

    def _merged(self) -> Iterator[Any]:
        """The heap merge, opening each file when the merge time reaches its first packet."""
        pending, problems = self._peek_all()
        seq = 0
        for problem in problems:  # inputs that are not captures: reported first, once
            problem.frame_no = PacketRef.make(seq, problem.frame_no, 0)
            seq += 1
            yield problem
        heap: list[tuple[float, int, _Head]] = []
        # pending: (first ts, given index, InputFile, reader or None), earliest first
        while heap or pending:
            if pending and (not heap or (pending[0][0], pending[0][1]) < (heap[0][0], heap[0][1])):
                _, given, source, reader = heapq.heappop(pending)
                head = self._open_head(given, source, reader)
                if head is not None:
                    heapq.heappush(heap, (head.ts, given, head))
                continue
            _, given, head = heap[0]
            item = head.item
            item.frame_no = (seq << _SEQ_SHIFT) | (head.index << _FRAME_BITS) | item.frame_no
            seq += 1
            yield item
            # stream this file on while it stays the earliest: one comparison per item for a rotation
            limit = (pending[0][0], pending[0][1]) if pending else None
            second = heap[1:3]
            bound = min(((entry[0], entry[1]) for entry in second), default=None)
            if limit is None or (bound is not None and bound < limit):
                limit = bound
            items = head.items
            base = head.index << _FRAME_BITS
            ts = head.ts
            # (ts, given) > limit, without a tuple per item: past the limit's time, or at it and given later
            until, tie_later = (limit[0], given > limit[1]) if limit is not None else (float("inf"), False)
            for item in items:
                if item.ts is not None:
                    ts = item.ts
                if ts > until or (ts == until and tie_later):
                    head.item, head.ts = item, ts
                    heapq.heapreplace(heap, (ts, given, head))
                    break
                item.frame_no = (seq << _SEQ_SHIFT) | base | item.frame_no
                seq += 1
                yield item
            else:
                heapq.heappop(heap)
                self._active.remove(head)
                self._done_bytes += self.opened[head.index].size or 0

    def _peek_all(self) -> tuple[list[tuple[float, int, InputFile, Any]], list[Any]]:
        """Each input's first packet time; standard input stays open (it cannot be read twice)."""
        from .pcap import SourceProblem

        pending = []
        problems = []
        for given, source in enumerate(self.files):
            try:
                reader = open_stream(source)
            except UserError as exc:
                self.skipped += 1
                if self._on_skip is not None:
                    self._on_skip(source, str(exc))
                index = len(self.opened)
                self.opened.append(source)
                problems.append(SourceProblem(index, None, "not_a_capture", f"{exc}: skipped"))
                continue
            first = next(iter(reader), None)
            ts = first.ts if first is not None and first.ts is not None else float("-inf")
            if first is None:
                reader.close()
                continue  # a capture without packets gives nothing
            if source.is_stdin:
                pending.append((ts, given, source, (reader, first)))
            else:
                reader.close()
                pending.append((ts, given, source, None))
        heapq.heapify(pending)
        return pending, problems

    def _open_head(self, given: int, source: InputFile, kept: Any) -> _Head | None:
        index = len(self.opened)
        if kept is not None:
            reader, first = kept
        else:
            try:
                reader = open_stream(source)
            except UserError as exc:
                raise UserError(f"{source.name}: could be read at the start but not now ({exc}): "
                                "did it vanish or change during the run?") from None
            first = next(iter(reader), None)
            if first is None:
                raise UserError(f"{source.name}: had packets at the start but has none now: did it change "
                                "during the run?")
        self.opened.append(source)
        head = _Head(index, reader)
        head.item = first
        if first.ts is not None:
            head.ts = first.ts
        self._active.append(head)
        return head


def open_inputs(specs: Sequence[str | os.PathLike[str]] | Sequence[InputFile], *,
                on_skip: Callable[[InputFile, str], None] | None = None) -> InputSet:
    """The merged capture items of ``specs`` (paths, directories, ``-``, or ``InputFile`` from ``expand_inputs``).

    Iterate the result for ``Segment``/``SourceProblem`` items in merged order;
    feed them to a ``decoder.Decoder`` and pass its records through
    ``InputSet.label`` to get ``pcap_file``/``pcap_frame`` (``decode_inputs``
    does both). An input that is not a capture, when there are several, is
    skipped: a ``SourceProblem`` of kind ``not_a_capture`` comes first and
    ``on_skip(input, message)`` is called; with a single input it raises
    ``UserError`` as ``pcap.open_capture`` does.
    """
    if specs and all(isinstance(spec, InputFile) for spec in specs):
        return InputSet(specs, on_skip=on_skip)  # type: ignore[arg-type]
    return InputSet(expand_inputs(specs), on_skip=on_skip)  # type: ignore[arg-type]


def decode_inputs(inputs: InputSet, decoder: Any) -> Iterator[Any]:
    """Every record of the merged inputs, labelled with ``pcap_file``/``pcap_frame`` (see ``InputSet.label``)."""
    return inputs.label(decoder.decode(inputs))
