"""A packer under test, as a child process spoken to one JSON line at a time (docs/CONFORMANCE.md).

Every request has a deadline. A packer that hangs, exits, or writes something
that is not one JSON object per line raises ``PackerFailure`` with what went
wrong and the tail of its stderr; the process is then stopped (it and its own
children: it runs in a session of its own, so only processes started for it
are signalled) and started afresh on the next request.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any

from ..errors import UserError

MAX_LINE = 64 * 1024 * 1024
"""Longest answer line read (a 16 MiB body is about 22 MB of base64); longer is garbage."""
STDERR_KEPT = 40
"""Lines of the packer's stderr kept to show with a failure."""


class PackerFailure(Exception):
    """The packer did not answer a request properly: ``kind`` is timeout, exited or garbage."""

    def __init__(self, kind: str, detail: str, stderr: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.stderr = stderr


class PackerProcess:
    """``COMMAND`` started on first use; ``request(obj)`` sends one line and returns the parsed answer."""

    def __init__(self, command: str, *, timeout: float = 10.0) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise UserError(f"--packer: cannot split {command!r}: {exc}") from None
        if not self.argv:
            raise UserError("--packer: empty command")
        self.command = command
        self.timeout = timeout
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_KEPT)
        self._written = threading.Event()
        self._written.set()

    def __enter__(self) -> PackerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> subprocess.Popen[bytes]:
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
        except OSError as exc:
            raise UserError(f"--packer: cannot start {self.argv[0]!r}: {exc.strerror or exc}") from None
        self.starts += 1
        self._lines = queue.Queue()
        self._stderr = deque(maxlen=STDERR_KEPT)
        assert proc.stdout is not None and proc.stderr is not None
        threading.Thread(target=_read_lines, args=(proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=_read_stderr, args=(proc.stderr, self._stderr), daemon=True).start()
        self._proc = proc
        return proc

    def stderr_text(self) -> str:
        return "\n".join(self._stderr)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        assert proc.stdin is not None
        line = (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        deadline = time.monotonic() + self.timeout
        # written by a thread: a packer that stops reading its stdin must not block us on a full pipe
        written = self._written = threading.Event()
        broken: list[OSError] = []
        threading.Thread(target=_write, args=(proc.stdin, line, written, broken), daemon=True).start()
        if not written.wait(self.timeout):
            self._fail("timeout", f"did not read the request within {self.timeout:g} s")
        if broken:
            self._fail("exited", f"exited with status {self._wait_status()} before reading the request")
        try:
            answer = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self._fail("timeout", f"did not answer within {self.timeout:g} s")
        if answer is None:
            self._fail("exited", f"exited with status {self._wait_status()} without answering")
        if len(answer) > MAX_LINE:
            self._fail("garbage", f"an answer line longer than {MAX_LINE} bytes")
        try:
            parsed = json.loads(answer)
        except (UnicodeDecodeError, ValueError):
            self._fail("garbage", f"answered {answer[:120]!r}, not a JSON line")
        if not isinstance(parsed, dict):
            self._fail("garbage", f"answered {answer[:120]!r}, not a JSON object")
        return parsed

    def _wait_status(self) -> str:
        proc = self._proc
        if proc is None:
            return "?"
        try:
            return str(proc.wait(timeout=2))
        except subprocess.TimeoutExpired:
            return "unknown (still running)"

    def _fail(self, kind: str, detail: str) -> Any:
        # let the stderr reader catch up with what the packer said before it failed
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)
        self.stop()
        raise PackerFailure(kind, detail, self.stderr_text())

    def stop(self) -> None:
        """Stop the packer we started (and its session: only processes it started are in it).

        Its stdin is closed first, which ends a well-behaved packer; one that is
        still running then gets SIGTERM, then SIGKILL. Closing a pipe a write is
        blocked on would wait for that write, so then the signals come first.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None and self._written.is_set() and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
        if proc.poll() is None:
            _signal_session(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _signal_session(proc, signal.SIGKILL)
                proc.wait()
        self._written.wait(5)  # the writer thread sees the broken pipe and lets go of stdin
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


def _signal_session(proc: subprocess.Popen[bytes], signum: int) -> None:
    """The child leads a process group of its own (start_new_session): signal that group only."""
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)


def _write(stream: Any, line: bytes, written: threading.Event, broken: list[OSError]) -> None:
    try:
        stream.write(line)
        stream.flush()
    except OSError as exc:  # BrokenPipeError: the packer exited; ValueError-free: the stream is ours until stop()
        broken.append(exc)
    finally:
        written.set()


def _read_lines(stream: Any, out: queue.Queue[bytes | None]) -> None:
    """Answer lines as they come; None when the packer closed its stdout (exited)."""
    try:
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                break
            out.put(line)
    except (OSError, ValueError):
        pass
    out.put(None)


def _read_stderr(stream: Any, kept: deque[str]) -> None:
    try:
        for raw in iter(lambda: stream.readline(65536), b""):
            kept.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
    except (OSError, ValueError):
        pass
