"""The analyzer's M-PROXY parser: a byte stream in, frame records out.

Unlike the reference unpacker it never guesses silently: every byte of the
stream ends up in exactly one record (a frame, skipped garbage, or a gap), so
``sum(r.length for r in records)`` equals the stream's length, lost bytes
included.

Resynchronisation rule. After a complete frame the next byte is expected to
start a frame. A header whose datalen is plain decimal digits is decoded even
when something else is wrong with it (a bad version byte, too few fields,
non-UTF-8 bytes; after a version byte other than 0xFE the header must also
have every mark of a real one): the problem is named on the record. A header that can only
be read as ``hdrlen + 256`` bytes is decoded as a wrapped header. A header
whose datalen cannot be read gives a record for the header alone, and then,
as after any garbage or lost bytes, the parser scans for the next byte 0xFE
followed by a header that has every mark of a real one (``ParsedHeader
.looks_like_frame_start``); the bytes passed over become one
``garbage_skipped`` record.

Decisions are taken as soon as the bytes at hand settle them, never later: a
header (or the 256 bytes that could make it a wrapped one) that already holds
a byte no believable header has (``_RULED_OUT``: a control byte, a newline
before other text, a byte never found in UTF-8) is not waited for. So a record
comes out with the chunk that completes it, the packet a streaming dissector
(Wireshark's, in one pass) shows it in.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from .header import ParsedHeader, number_or_none
from .jscompat import json_parse
from .spec import MIN_HEADER_FIELDS, PROBLEMS, VERSION_1_BYTE

DEFAULT_MAX_BODY_HELD = 16 * 1024 * 1024
"""A body longer than this is hashed and counted as it streams past, never held whole."""

WRAP = 256
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_CONTROL_BYTE = re.compile(rb"[\x00-\x1f\x7f]")
_RULED_OUT = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f\xc0\xc1\xf5-\xff]|\n[^\n]")
"""Bytes no header that passes ``looks_like_frame_start`` can hold, whatever bytes follow them."""
_NAME_CONTINUATION = re.compile(rb"[\w.*:-]*(?:,[\w.-]*)?(?:,\n)?")
_HOST_NAME = re.compile(r"(?:[\w*-]{1,63}\.)*[\w*-]{1,63}\.?")


class Problem(NamedTuple):
    kind: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class Frame:
    """One record of the stream: an M-PROXY frame, or (kind ``garbage``/``gap``) bytes that are not one.

    ``offset`` and ``length`` place the record in the direction's byte stream.
    ``body`` is None when the body was not held (too large, lost, or the
    frame is truncated); ``body_len`` still says how many body bytes passed.
    """

    __slots__ = (
        "_control",
        "_sha256",
        "address",
        "body",
        "body_len",
        "datalen",
        "dialect",
        "family",
        "gap_bytes",
        "hdrlen",
        "header",
        "kind",
        "length",
        "name",
        "offset",
        "port",
        "problems",
        "service",
        "servicename",
        "serviceport",
        "version",
    )

    def __init__(self, offset: int, length: int, kind: str) -> None:
        self.offset = offset
        self.length = length
        self.kind = kind
        self.version: int | None = None
        self.hdrlen: int | None = None
        self.header: str | None = None
        self.family: str | None = None
        self.address: str | None = None
        self.port: int | None = None
        self.datalen: int | None = None
        self.service: str | None = None
        self.serviceport: int | None = None
        self.name: str | None = None
        self.servicename: str | None = None
        self.dialect: str | None = None
        self.body: bytes | None = None
        self.body_len = 0
        self.problems: list[Problem] = []
        self.gap_bytes = 0
        self._sha256: str | None = None
        self._control: Any = None

    @classmethod
    def from_header(cls, offset: int, version: int, hdrlen: int, header: ParsedHeader) -> Frame:
        frame = cls(offset, 2 + hdrlen, header.kind)
        values = header.values
        frame.version = version
        frame.hdrlen = hdrlen & 0xFF
        frame.header = header.text
        frame.family = values["family"]
        frame.address = values["address"]
        frame.port = number_or_none(values["port"])
        frame.datalen = header.datalen
        frame.service = values["service"]
        frame.serviceport = number_or_none(values["serviceport"])
        frame.name = values["name"]
        frame.servicename = values["servicename"]
        frame.dialect = header.dialect
        frame.problems = [Problem(k, d) for k, d in header.problems]
        if version != VERSION_1_BYTE:
            frame.problems.insert(0, Problem("bad_version", f"version byte 0x{version:02x}, v1 is 0xfe"))
        return frame

    @property
    def is_frame(self) -> bool:
        return self.kind not in ("garbage", "gap")

    @property
    def client_id(self) -> str | None:
        """The reference's ``addrToId`` of the tunneled client; None for control and non-frames."""
        if not self.is_frame or self.kind == "control":
            return None
        port = "" if self.port is None else str(self.port)
        return f"{self.family or ''},{self.address or ''},{port}"

    @property
    def body_sha256(self) -> str | None:
        """The body's sha256; a frame that declares an empty body has the hash of the empty string.

        None when the body was not all seen (truncated, lost bytes) and for garbage and gap records.
        """
        if self._sha256 is None:
            if self.body is not None:
                self._sha256 = hashlib.sha256(self.body).hexdigest()
            elif self.datalen == 0 and self.is_frame and not self.gap_bytes:
                self._sha256 = _EMPTY_SHA256
        return self._sha256

    @property
    def control(self) -> Any:
        """The decoded JSON of a control or error body; None when absent or not JSON."""
        if self._control is None and self.kind in ("control", "error") and self.body:
            try:  # JSON.parse's rules (no NaN/Infinity: NDJSON output stays JSON); nesting past the stack is not JSON
                self._control = json_parse(self.body.decode("utf-8"))
            except (ValueError, RecursionError):
                self._control = None
        return self._control

    def add_problem(self, kind: str, detail: str) -> None:
        assert kind in PROBLEMS, kind
        self.problems.append(Problem(kind, detail))

    def to_scapy(self) -> Any:
        """This frame as a Scapy ``MProxy`` packet (built on demand, never on the fast path)."""
        from .layer import MProxy

        return MProxy.from_frame(self)

    def __repr__(self) -> str:
        problems = f" problems={[str(p) for p in self.problems]}" if self.problems else ""
        return (
            f"<Frame @{self.offset}+{self.length} {self.kind} {self.client_id or ''} "
            f"service={self.service!r} datalen={self.datalen}{problems}>"
        )


class _BodyStream:
    """A frame whose body passes through without being held: too large, or partly lost."""

    __slots__ = ("frame", "hasher", "remaining")

    def __init__(self, frame: Frame, remaining: int) -> None:
        self.frame = frame
        self.remaining = remaining
        self.hasher: Any = hashlib.sha256()


_NEED_MORE = 0
_PROGRESS = 1


class FrameParser:
    """Incremental M-PROXY parser for one direction of one tunnel.

    ``feed(data)``, ``gap(nbytes)`` (bytes lost in the capture) and ``close()``
    each return the records completed by that call.
    ``synced=False`` is for a stream picked up mid-way: bytes are skipped
    until a believable frame start.
    """

    def __init__(self, *, synced: bool = True, max_body_held: int = DEFAULT_MAX_BODY_HELD) -> None:
        self._buf = bytearray()
        self._base = 0
        self._synced = synced
        self._garbage_offset = 0
        self._garbage_len = 0
        self._streaming: _BodyStream | None = None
        # (frame, header end, total) of a frame whose header is read and whose body is still arriving:
        # the header is parsed once per frame, not again on every segment of a long body.
        self._waiting: tuple[Frame, int, int] | None = None
        self.max_body_held = max_body_held
        self.bytes_seen = 0

    @property
    def buffered(self) -> int:
        """Bytes held now waiting for the rest of a frame (bounded by one header + one held body)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        out: list[Frame] = []
        if not data:
            return out
        self.bytes_seen += len(data)
        self._buf += data
        if self._waiting is not None and len(self._buf) < self._waiting[2]:
            return out
        self._run(out, final=False)
        return out

    def close(self) -> list[Frame]:
        out: list[Frame] = []
        self._run(out, final=True)
        if self._streaming is not None:
            stream, self._streaming = self._streaming, None
            frame = stream.frame
            frame.length -= stream.remaining
            frame.add_problem("truncated", f"stream ended {stream.remaining} bytes before the frame's end")
            out.append(frame)
        self._flush_incomplete(out)
        return out

    def gap(self, nbytes: int) -> list[Frame]:
        """``nbytes`` of the stream were lost here: account for them and resynchronise."""
        out: list[Frame] = []
        if nbytes <= 0:
            return out
        self.bytes_seen += nbytes
        if self._streaming is None:
            self._run(out, final=True)
        self._waiting = None
        if self._streaming is None and self._synced and self._buf:
            self._start_streaming_if_header_known()
        if self._streaming is not None:
            stream = self._streaming
            lost_inside = min(nbytes, stream.remaining)
            stream.frame.gap_bytes += lost_inside
            stream.remaining -= lost_inside
            self._base += lost_inside
            stream.hasher = None
            nbytes -= lost_inside
            stream.frame.body = None
            if stream.remaining == 0:
                self._finish_stream(out)
            if nbytes == 0:
                return out
        self._flush_incomplete(out)
        record = Frame(self._base, nbytes, "gap")
        record.gap_bytes = nbytes
        record.add_problem("gap", f"{nbytes} bytes lost in the capture at stream offset {self._base}")
        out.append(record)
        self._base += nbytes
        self._synced = False
        return out

    def _run(self, out: list[Frame], final: bool) -> None:
        while True:
            if self._streaming is not None:
                if not self._stream_body(out):
                    return
                continue
            if not self._buf:
                return
            step = self._at_boundary(out, final) if self._synced else self._scan(out, final)
            if step == _NEED_MORE:
                return

    def _consume(self, count: int) -> None:
        del self._buf[:count]
        self._base += count

    def _at_boundary(self, out: list[Frame], final: bool) -> int:
        buf = self._buf
        available = len(buf)
        if self._waiting is not None:
            frame, header_end, total = self._waiting
            if available >= total:
                self._waiting = None
                return self._complete_held(out, frame, header_end, total)
            if not final:
                return _NEED_MORE
            self._waiting = None
        if available < 2 or available < 2 + buf[1]:
            if final:
                return self._short_at_end(out)
            if available > 2 and buf[0] != VERSION_1_BYTE and _RULED_OUT.search(buf, 2):
                self._synced = False  # after another version byte only a believable header is read
                return _PROGRESS
            return _NEED_MORE
        version = buf[0]
        hdrlen = buf[1]
        header_end = 2 + hdrlen
        header = ParsedHeader(bytes(buf[2:header_end]))
        if header.decodable and (version == VERSION_1_BYTE or header.looks_like_frame_start()):
            wrapped = self._wrapped_alternative(header, header_end, final)
            if wrapped is _NEED_MORE:
                return _NEED_MORE
            if wrapped is not None:
                header, header_end = wrapped, header_end + WRAP
        else:
            if version != VERSION_1_BYTE:
                self._synced = False
                return _PROGRESS
            settled = _RULED_OUT.search(buf, 2, header_end + WRAP) is not None
            if available < header_end + WRAP and not final and not settled:
                return _NEED_MORE
            longer = ParsedHeader(bytes(buf[2 : header_end + WRAP]))
            if not settled and longer.looks_like_frame_start():
                header, header_end = longer, header_end + WRAP
            elif not _CONTROL_BYTE.search(buf, 2, header_end):
                frame = Frame.from_header(self._base, version, hdrlen, header)
                out.append(frame)
                self._consume(header_end)
                self._synced = False
                return _PROGRESS
            else:
                self._synced = False
                return _PROGRESS
        frame = Frame.from_header(self._base, version, header_end - 2, header)
        if header_end - 2 > 255:
            frame.add_problem(
                "hdrlen_wrapped",
                f"hdrlen byte says {hdrlen} but the header is {header_end - 2} bytes (a packer wrote len & 0xff)",
            )
        datalen = header.datalen or 0
        total = header_end + datalen
        if available >= total and datalen <= self.max_body_held:
            return self._complete_held(out, frame, header_end, total)
        if datalen > self.max_body_held:
            self._consume(header_end)
            frame.length = total
            self._streaming = _BodyStream(frame, datalen)
            return _PROGRESS
        if not final:
            self._waiting = (frame, header_end, total)
        return _NEED_MORE

    def _complete_held(self, out: list[Frame], frame: Frame, header_end: int, total: int) -> int:
        """The whole frame is in the buffer: take its body and emit it."""
        frame.length = total
        frame.body = bytes(self._buf[header_end:total]) if total > header_end else None
        frame.body_len = total - header_end
        self._check_body(frame)
        out.append(frame)
        self._consume(total)
        return _PROGRESS

    def _wrapped_alternative(self, header: ParsedHeader, header_end: int, final: bool) -> Any:
        """A header longer than 255 bytes usually still parses at ``hdrlen``: the name is cut short.

        It is read as wrapped when the 256 bytes after the short header are all
        name text (host-name characters, at most one more comma for a
        connection's servicename, Go's trailing newline), the longer header
        has the same datalen, and its name is a host name (DNS labels of at
        most 63 characters: a long run of body text is not). Those 256 bytes must lie inside the frame's own
        body, so the decision never waits for bytes past the frame (which would
        hold a frame back until the next one arrives): a wrapped header with a
        body shorter than 256 bytes is not recognised, and the bytes it
        misplaces are reported as skipped when the parser resynchronises.
        """
        buf = self._buf
        datalen = header.datalen or 0
        if header.field_count < 7 or not header.values["name"] or buf[0] != VERSION_1_BYTE:
            return None
        if datalen < WRAP or datalen > self.max_body_held:
            return None
        tail_end = header_end + WRAP
        if len(buf) < tail_end:
            return None if final else _NEED_MORE
        if not _NAME_CONTINUATION.fullmatch(buf, header_end, tail_end):
            return None
        longer = ParsedHeader(bytes(buf[2:tail_end]))
        if longer.datalen != header.datalen or not _HOST_NAME.fullmatch(longer.values["name"] or ""):
            return None
        return longer

    def _check_body(self, frame: Frame) -> None:
        if frame.kind == "control" and frame.body is not None and not isinstance(frame.control, list):
            frame.add_problem("bad_body", "control body is not a JSON array")
        elif frame.kind in ("pause", "resume") and frame.body is not None:
            count = frame.body.strip()
            if count and not count.isdigit():
                frame.add_problem("bad_body", f"{frame.kind} body is not a byte count")

    def _start_streaming_if_header_known(self) -> None:
        """Before a gap: a frame whose header is complete keeps its place; its body is then streamed."""
        buf = self._buf
        if len(buf) < 2 or len(buf) < 2 + buf[1]:
            return
        header = ParsedHeader(bytes(buf[2 : 2 + buf[1]]))
        if not header.decodable:
            return
        header_end = 2 + buf[1]
        frame = Frame.from_header(self._base, buf[0], buf[1], header)
        datalen = header.datalen or 0
        frame.length = header_end + datalen
        held = len(buf) - header_end
        if held >= datalen:
            return
        self._consume(header_end)
        self._streaming = _BodyStream(frame, datalen)
        self._stream_body([])

    def _stream_body(self, out: list[Frame]) -> bool:
        stream = self._streaming
        assert stream is not None
        take = min(stream.remaining, len(self._buf))
        if take:
            if stream.hasher is not None:
                stream.hasher.update(memoryview(self._buf)[:take])
            stream.frame.body_len += take
            stream.remaining -= take
            self._consume(take)
        if stream.remaining:
            return False
        self._finish_stream(out)
        return True

    def _finish_stream(self, out: list[Frame]) -> None:
        stream = self._streaming
        assert stream is not None
        self._streaming = None
        frame = stream.frame
        if stream.hasher is not None:
            frame._sha256 = stream.hasher.hexdigest()
        if frame.gap_bytes:
            frame.add_problem("gap", f"{frame.gap_bytes} body bytes lost in the capture")
            self._synced = True
        out.append(frame)

    def _flush_incomplete(self, out: list[Frame]) -> None:
        """What is left when the stream ends or breaks: a truncated frame, or garbage."""
        if self._buf:
            if self._synced and self._buf[0] == VERSION_1_BYTE:
                out.append(self._partial_record(len(self._buf)))
            else:
                self._skip(len(self._buf))
        self._flush_garbage(out)

    def _partial_record(self, count: int) -> Frame:
        """The start of a frame whose end never came: decoded as far as it goes."""
        buf = self._buf
        record: Frame
        if count >= 2 and count >= 2 + buf[1]:
            header = ParsedHeader(bytes(buf[2 : 2 + buf[1]]))
            record = Frame.from_header(self._base, buf[0], buf[1], header)
            record.body_len = count - 2 - buf[1]
            record.length = count
        else:
            record = Frame(self._base, count, "garbage")
        record.add_problem("truncated", f"{count} bytes of an incomplete frame at stream offset {self._base}")
        self._consume(count)
        return record

    def _short_at_end(self, out: list[Frame]) -> int:
        """The stream ends inside what should be a frame: keep any believable frame after it."""
        start = self._find_frame_start(1, final=True)
        if start < 0:
            return _NEED_MORE
        if self._buf[0] == VERSION_1_BYTE:
            out.append(self._partial_record(start))
        else:
            self._skip(start)
            self._flush_garbage(out)
        return _PROGRESS

    def _find_frame_start(self, position: int, final: bool) -> int:
        """Index of the next believable frame start, or -1 if there is none.

        ``-2 - i`` means a frame may start at ``i`` but its header is not all here yet.
        """
        buf = self._buf
        while True:
            candidate = buf.find(VERSION_1_BYTE, position)
            if candidate < 0:
                return -1
            if len(buf) < candidate + 2 or len(buf) < candidate + 2 + buf[candidate + 1]:
                if not final and not _RULED_OUT.search(buf, candidate + 2):
                    return -2 - candidate
                position = candidate + 1
                continue
            header_end = candidate + 2 + buf[candidate + 1]
            # a believable header has at least MIN_HEADER_FIELDS - 1 commas: counting them is cheap,
            # so garbage full of 0xFE bytes is not parsed as a header at every one
            if buf.count(b",", candidate + 2, header_end) >= MIN_HEADER_FIELDS - 1 and ParsedHeader(
                bytes(buf[candidate + 2 : header_end])
            ).looks_like_frame_start():
                return candidate
            position = candidate + 1

    def _scan(self, out: list[Frame], final: bool) -> int:
        start = self._find_frame_start(0, final)
        if start == -1:
            self._skip(len(self._buf))
            return _NEED_MORE
        if start < -1:
            self._skip(-2 - start)
            return _NEED_MORE
        self._skip(start)
        self._flush_garbage(out)
        self._synced = True
        return _PROGRESS

    def _skip(self, count: int) -> None:
        if count <= 0:
            return
        if self._garbage_len == 0:
            self._garbage_offset = self._base
        self._garbage_len += count
        self._consume(count)

    def _flush_garbage(self, out: list[Frame]) -> None:
        if not self._garbage_len:
            return
        record = Frame(self._garbage_offset, self._garbage_len, "garbage")
        where = "before the first frame" if self._garbage_offset == 0 else f"at stream offset {self._garbage_offset}"
        record.add_problem("garbage_skipped", f"{self._garbage_len} bytes that are not M-PROXY {where}")
        out.append(record)
        self._garbage_len = 0


def iter_frames(data: bytes | Iterable[bytes], *, synced: bool = True) -> list[Frame]:
    """All records of a whole stream (bytes, or an iterable of chunks)."""
    parser = FrameParser(synced=synced)
    out: list[Frame] = []
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out
