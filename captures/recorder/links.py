"""The tunnel's two carriers, as the relay and the device write to them.

A link owns one end of the tunnel connection: it writes whole M-PROXY frames (logging
each to the truth at the moment it is written, under the same lock, so the truth's order
is the wire's order) and reads whatever bytes arrive.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

from websockets.exceptions import ConnectionClosed

from .truth import TruthLog, endpoint


class Packed(NamedTuple):
    """One frame as its packer made it: header (with version and hdrlen) and body."""

    header: bytes
    body: bytes
    packer: str


class Link(ABC):
    carrier = ""

    def __init__(self, truth: TruthLog, direction: str, local: tuple, peer: tuple) -> None:
        self.truth = truth
        self.direction = direction
        self.src = endpoint(local)
        self.dst = endpoint(peer)
        self.offset = 0
        self.write_count = 0
        self._lock = threading.Lock()

    def send(self, frames: Sequence[Packed], *, split_body: bool = False) -> None:
        """Write frames in one piece, or one frame's header and body as two writes/messages.

        The truth gets each frame's ``write_index`` (the first write, or WebSocket message,
        of this direction that carries it) and ``writes`` (how many carry it).
        """
        with self._lock:
            if split_body:
                (frame,) = frames
                writes = [frame.header] + ([frame.body] if frame.body else [])
            else:
                writes = [b"".join(f.header + f.body for f in frames)]
            for frame in frames:
                whole = frame.header + frame.body
                self.truth.record(
                    direction=self.direction,
                    src=self.src,
                    dst=self.dst,
                    carrier=self.carrier,
                    offset=self.offset,
                    frame=whole,
                    packer=frame.packer,
                    write_index=self.write_count,
                    writes=len(writes) if split_body else 1,
                )
                self.offset += len(whole)
            self.write_count += len(writes)
            for data in writes:
                self._write(data)

    @abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abstractmethod
    def recv(self) -> bytes | None:
        """The next bytes from the peer, None once the tunnel is closed."""

    @abstractmethod
    def close(self) -> None: ...


class RawLink(Link):
    carrier = "tcp"

    def __init__(self, sock: socket.socket, truth: TruthLog, direction: str) -> None:
        super().__init__(truth, direction, sock.getsockname(), sock.getpeername())
        self.sock = sock

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes | None:
        try:
            return self.sock.recv(65536) or None
        except OSError:
            return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)


class WsLink(Link):
    """A WebSocket connection (client or server side of ``websockets.sync``): binary messages."""

    carrier = "websocket"

    def __init__(self, conn, truth: TruthLog, direction: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(truth, direction, conn.socket.getsockname(), conn.socket.getpeername())
        self.conn = conn

    def _write(self, data: bytes) -> None:
        self.conn.send(data)

    def recv(self) -> bytes | None:
        try:
            message = self.conn.recv()
        except ConnectionClosed:
            return None
        return message if isinstance(message, bytes) else message.encode()

    def close(self) -> None:
        self.conn.close()
