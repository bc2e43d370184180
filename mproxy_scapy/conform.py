"""Differential testing of a packer under test against proxy-packer 2.0.4 (``mproxy conform``).

The oracle is our codec (``codec.pack``/``pack_header``/``Unpacker``), which is
byte-exact with the reference. Cases are line-protocol requests
(docs/CONFORMANCE.md): the reference vectors, named edge cases, then random
ones from Hypothesis. A divergence is shrunk while it still breaks the same
reference behaviour (``rules.BEHAVIOURS``), then reported with both outputs
and a hexdump diff.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jscompat
from .codec import Unpacker, pack, pack_header
from .packerproc import PackerFailure, PackerProcess
from .spec import HANDLER_BY_KIND

REFERENCE_DATA = Path(__file__).resolve().parent / "data" / "reference"
MAX_SHRINK_CALLS = 400
"""Packer calls one divergence may spend on shrinking."""
MAX_FAILURES_IN_A_ROW = 5
"""After this many cases in a row without a proper answer the packer is given up."""
MAX_RANDOM_DIVERGENCES = 5
"""Distinct behaviours the random phase looks for before it stops."""
_HANDLERS = sorted(set(HANDLER_BY_KIND.values()))


# -- cases and the oracle ------------------------------------------------------------------------

@dataclass
class Case:
    """One request. ``request`` is what goes on the line, except for unpack cases, which hold
    ``frames`` (pack requests) and ``cuts`` (chunk boundaries) and are turned into chunks on the way."""

    name: str
    group: str
    request: dict[str, Any]


class Refused:
    """The reference throws on this input (or the packer answered ``{"error": ...}``)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refused)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"error: {self.message}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body_value(request: dict[str, Any]) -> Any:
    """The body as the reference is handed it (None for null and for a missing body: both falsy there)."""
    body = request.get("body")
    if body is None:
        return None
    if "base64" in body:
        return base64.b64decode(body["base64"])
    return body["json"]


def body_bytes_sent(request: dict[str, Any]) -> bytes:
    """What a relay writes after ``packHeader``'s header: the body bytes the header counted."""
    value = body_value(request)
    if not jscompat.is_truthy(value):
        return b""
    if isinstance(value, bytes):
        return value
    return jscompat.encode_utf8(jscompat.json_stringify(value))


def expected_wire(request: dict[str, Any]) -> bytes | Refused:
    """What proxy-packer's ``pack``/``packHeader`` returns for this request."""
    meta = request.get("meta")
    try:
        if request["op"] == "pack":
            return pack(meta, body_value(request), request.get("service"))
        return pack_header(meta, body_value(request), request.get("service"))
    except (TypeError, AttributeError) as exc:  # the reference reads a property of null: TypeError
        return Refused(str(exc))


def stream_of(frames: list[dict[str, Any]]) -> bytes:
    """The byte stream of these frames as a relay writes it (packHeader's body after its header)."""
    out = bytearray()
    for frame in frames:
        wire = expected_wire(frame)
        assert isinstance(wire, bytes), frame
        out += wire
        if frame["op"] == "packHeader":
            out += body_bytes_sent(frame)
    return bytes(out)


def chunks_of(request: dict[str, Any]) -> list[bytes]:
    data = stream_of(request["frames"])
    points = sorted({0, len(data), *(c for c in request.get("cuts", []) if 0 < c < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def expected_events(chunks: list[bytes]) -> list[dict[str, Any]]:
    """The handler calls proxy-packer's unpacker makes for these chunks, as the line protocol writes them."""
    calls: list[dict[str, Any]] = []

    def recorder(name: str) -> Callable[[dict[str, Any]], None]:
        def record(tun: dict[str, Any]) -> None:
            fields = {k: v for k, v in tun.items() if k != "data" and v is not None}
            fields["data"] = None if tun.get("data") is None else b64(tun["data"])
            calls.append({"handler": name, "fields": fields})
        return record

    unpacker = Unpacker({name: recorder(name) for name in _HANDLERS})
    for chunk in chunks:
        unpacker.feed(chunk)
    return calls


def wire_request(case_request: dict[str, Any]) -> dict[str, Any]:
    """The line sent for a case (unpack cases become chunks)."""
    if case_request["op"] == "unpack":
        return {"op": "unpack", "chunks": [b64(c) for c in chunks_of(case_request)]}
    return case_request


# -- comparing and naming the behaviour broken ---------------------------------------------------

@dataclass
class Outcome:
    """A case's result: ``behaviour`` is None when the packer agrees with the reference."""

    behaviour: str | None
    detail: str = ""
    expected: Any = None
    actual: Any = None
    stderr: str = ""
    unsupported: bool = False
    failure: str | None = None


def run_case(packer: PackerProcess, request: dict[str, Any]) -> Outcome:
    """Send one case and judge the answer."""
    unpack = request["op"] == "unpack"
    expected: Any = expected_events(chunks_of(request)) if unpack else expected_wire(request)
    try:
        answer = packer.request(wire_request(request))
    except PackerFailure as exc:
        return Outcome("PP14", f"the packer {exc.detail}", expected, None, exc.stderr, failure=exc.kind)
    if unpack:
        if answer.get("unsupported") is True:
            return Outcome(None, "unpack not supported", expected, None, unsupported=True)
        events = answer.get("events")
        if not isinstance(events, list):
            return Outcome("PP14", f"answered {_short(answer)} to unpack, not {{\"events\": [...]}}", expected, None,
                           packer.stderr_text(), failure="garbage")
        if events == expected:
            return Outcome(None, expected=expected, actual=events)
        return Outcome("PP13", _events_detail(expected, events), expected, events)
    actual: bytes | Refused
    if "wire" in answer and isinstance(answer["wire"], str):
        try:
            actual = base64.b64decode(answer["wire"], validate=True)
        except ValueError:
            return Outcome("PP14", f"answered {_short(answer)}: wire is not base64", expected, None,
                           packer.stderr_text(), failure="garbage")
    elif "error" in answer:
        actual = Refused(str(answer["error"]))
    else:
        return Outcome("PP14", f"answered {_short(answer)}, not {{\"wire\": ...}}", expected, None,
                       packer.stderr_text(), failure="garbage")
    if actual == expected:
        return Outcome(None, expected=expected, actual=actual)
    behaviour, detail = classify(request, expected, actual)
    return Outcome(behaviour, detail, expected, actual, packer.stderr_text() if isinstance(actual, Refused) else "")


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _events_detail(expected: list[Any], actual: list[Any]) -> str:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return f"event {index}: the reference delivers {_short(want)}, the packer {_short(got)}"
    return f"the reference delivers {len(expected)} events, the packer {len(actual)}"


def classify(request: dict[str, Any], expected: bytes | Refused, actual: bytes | Refused) -> tuple[str, str]:
    """Which reference behaviour (``rules.BEHAVIOURS``) the packer's different answer breaks first."""
    if isinstance(expected, Refused):
        return "PP12", f"the reference throws ({expected.message}); the packer answered {len(actual)} bytes" \
            if isinstance(actual, bytes) else "the reference throws"
    if isinstance(actual, Refused):
        return "PP15", f"the packer refused ({actual.message}); the reference packs {len(expected)} bytes"
    if actual[:1] != expected[:1]:
        return "PP01", f"version byte {actual[:1].hex() or 'missing'}, the reference writes fe"
    op, service = request["op"], request.get("service")
    header_part = pack_header(request.get("meta"), body_value(request), service, oldways=op == "pack")
    header = header_part[2:]
    body = expected[len(header_part):]
    got_header = actual[2:2 + actual[1]] if len(actual) > 1 else b""
    if got_header.endswith(b"\n") or got_header == header + b"," or actual[2:4 + len(header)] == header + b",\n":
        return "PP10", f"header {got_header!r}: the Go dialect's trailing comma and newline; the reference writes " \
            f"{header!r}"
    if actual[2:2 + len(header)] == header and actual[1:2] != expected[1:2]:
        return "PP02", f"hdrlen byte {actual[1]}, the reference writes {expected[1]} (header {len(header)} bytes)"
    if len(header) > 255 and actual[1:2] != expected[1:2]:
        return "PP02", f"hdrlen byte {actual[1] if len(actual) > 1 else 'missing'} for a {len(header)}-byte header; " \
            f"the reference writes {len(header)} & 0xff = {expected[1]}"
    if got_header != header:
        return _header_behaviour(op, service, header, got_header, body)
    got_body = actual[2 + len(got_header):]
    if body == b" " and got_body == b"":
        return "PP05", "the reference pads the empty body to one space"
    if op == "packHeader" and got_body and not body:
        return "PP06", f"packHeader wrote {len(got_body)} body bytes; the reference writes the header only"
    if request.get("body") is not None and "json" in request["body"]:
        return "PP07", "the body differs from JSON.stringify of the value"
    return "PP11", f"the body differs (the reference's {len(body)} bytes, the packer's {len(got_body)})"


def _header_behaviour(op: str, service: Any, header: bytes, got: bytes, body: bytes) -> tuple[str, str]:
    shown = f"header {got!r}, the reference writes {header!r}"
    if got.endswith(b"\n") or (got.endswith(b",") and not header.endswith(b",")):
        return "PP10", shown
    want_fields, got_fields = header.split(b","), got.split(b",")
    if service == "control":
        return "PP09", shown
    if service == "connection" and (len(got_fields) != len(want_fields) or got_fields[4:5] != [b"connection"]):
        return "PP08", shown
    for index, (want, have) in enumerate(zip(want_fields, got_fields, strict=False)):
        if want != have:
            if index == 3:
                if body == b" " and have == b"0" and op == "pack":
                    return "PP05", f"datalen {have.decode(errors='replace')}: the reference pads the empty body " \
                        "to one space (datalen 1)"
                return "PP04", f"datalen {have.decode(errors='replace')!r}, the reference writes " \
                    f"{want.decode()!r} (body bytes)"
            if index == 7 and service == "connection":
                return "PP08", shown
            return "PP03", f"field {index}: {have!r}, the reference writes {want!r}; {shown}"
    return "PP03", shown


# -- shrinking -----------------------------------------------------------------------------------

def _shorter(value: Any) -> Iterator[Any]:
    """Candidates simpler than ``value``, most aggressive first."""
    if isinstance(value, bool):
        if value:
            yield False
    elif isinstance(value, int):
        if value:
            yield 0
        same_digits = 10 ** (len(str(abs(value))) - 1)
        if abs(value) > same_digits:
            yield same_digits if value > 0 else -same_digits
        if abs(value) > 1:
            yield int(value / 2)
    elif isinstance(value, float):
        yield 0
        if value != int(value):
            yield int(value)
    elif isinstance(value, (str, bytes)):
        yield from _shorter_sequence(value)
        if isinstance(value, str) and not value.isascii():
            yield "".join(c if c.isascii() else "a" for c in value)
    elif isinstance(value, list):
        if value:
            yield []
        for index in range(len(value)):
            yield value[:index] + value[index + 1:]
        for index, item in enumerate(value):
            for simpler in _shorter(item):
                yield [*value[:index], simpler, *value[index + 1:]]
    elif isinstance(value, dict):
        if value:
            yield {}
        for key in list(value):
            yield {k: v for k, v in value.items() if k != key}
        for key, item in value.items():
            for simpler in _shorter(item):
                yield {**value, key: simpler}


def _shorter_sequence(value: Any) -> Iterator[Any]:
    """Empty, then ever smaller pieces cut from the end, then from the start."""
    size = len(value)
    if not size:
        return
    yield value[:0]
    step = size // 2
    while step >= 1:
        yield value[:size - step]
        step //= 2
    step = size // 2
    while step >= 1:
        yield value[step:]
        step //= 2


def _body_candidates(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "base64" in body:
        for data in _shorter(base64.b64decode(body["base64"])):
            yield {"base64": b64(data)}
    else:
        for value in _shorter(body["json"]):
            yield {"json": value}


def shrink_candidates(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Requests simpler than ``request``: fewer keys, frames and cuts, shorter values."""
    if request["op"] == "unpack":
        frames, cuts = request["frames"], request.get("cuts", [])
        if cuts:
            yield {**request, "cuts": []}
            for index in range(len(cuts)):
                yield {**request, "cuts": cuts[:index] + cuts[index + 1:]}
        for index in range(len(frames)):
            if len(frames) > 1:
                yield {**request, "frames": frames[:index] + frames[index + 1:]}
        for index, frame in enumerate(frames):
            for simpler in shrink_candidates(frame):
                yield {**request, "frames": [*frames[:index], simpler, *frames[index + 1:]]}
        return
    for key in ("service", "body"):
        if key in request:
            yield {k: v for k, v in request.items() if k != key}
    if request.get("body") is not None:
        for body in _body_candidates(request["body"]):
            yield {**request, "body": body}
    meta = request.get("meta")
    if isinstance(meta, dict):
        for simpler in _shorter(meta):
            yield {**request, "meta": simpler}


def shrink(request: dict[str, Any], still_fails: Callable[[dict[str, Any]], bool],
           budget: int = MAX_SHRINK_CALLS) -> tuple[dict[str, Any], int]:
    """Greedy: take the first simpler request that still fails, until none does (or the budget is spent).

    Returns the smallest request found and the number of steps taken.
    """
    steps = 0
    calls = 0
    improved = True
    while improved and calls < budget:
        improved = False
        for candidate in shrink_candidates(request):
            if candidate == request:
                continue
            if request["op"] == "unpack" and not _well_formed_unpack(candidate):
                continue
            calls += 1
            if still_fails(candidate):
                request, steps, improved = candidate, steps + 1, True
                break
            if calls >= budget:
                break
    return request, steps


def _well_formed_unpack(request: dict[str, Any]) -> bool:
    return all(isinstance(expected_wire(frame), bytes) and not _throws_in_reference(frame)
               for frame in request["frames"])


def _throws_in_reference(frame: dict[str, Any]) -> bool:
    """An error body that JSON.parse makes a non-object makes the reference's addChunk throw."""
    wire = expected_wire(frame)
    if not isinstance(wire, bytes) or b",error," not in wire[:300]:
        return False
    body = body_bytes_sent(frame) if frame["op"] == "packHeader" else wire[2 + wire[1]:]
    try:
        value = jscompat.json_parse(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return not isinstance(value, dict)


# -- the run -------------------------------------------------------------------------------------

@dataclass
class Divergence:
    """One divergence, minimised."""

    behaviour: str
    detail: str
    case: str
    group: str
    original: dict[str, Any]
    request: dict[str, Any]
    expected: Any
    actual: Any
    stderr: str = ""
    steps: int = 0
    also: list[str] = field(default_factory=list)
    failure: str | None = None


@dataclass
class CaseResult:
    case: Case
    status: str  # pass, fail, skip, not run
    behaviour: str | None = None
    seconds: float = 0.0


@dataclass
class Report:
    command: str
    results: list[CaseResult] = field(default_factory=list)
    divergences: list[Divergence] = field(default_factory=list)
    examples: int = 0
    seed: int = 0
    random_run: int = 0
    unpack_supported: bool = True
    gave_up: str | None = None
    random_stopped: str | None = None
    starts: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.divergences) or self.gave_up is not None


def run(command: str, *, examples: int, seed: int, timeout: float, large: bool = True,
        progress: Callable[[str], None] | None = None) -> Report:
    report = Report(command, examples=examples, seed=seed)
    with PackerProcess(command, timeout=timeout) as packer:
        _named_phase(packer, report, named_cases(large=large), progress)
        if report.gave_up is None and examples > 0:
            _random_phase(packer, report, examples, seed, progress)
        report.starts = packer.starts
    return report


def _named_phase(packer: PackerProcess, report: Report, cases: list[Case],
                 progress: Callable[[str], None] | None) -> None:
    by_behaviour: dict[str, Divergence] = {}
    failures_in_a_row = 0
    for case in cases:
        if report.gave_up is not None or (case.request["op"] == "unpack" and not report.unpack_supported):
            report.results.append(CaseResult(case, "not run" if report.gave_up else "skip"))
            continue
        started = time.monotonic()
        outcome = run_case(packer, case.request)
        seconds = time.monotonic() - started
        if outcome.unsupported:
            report.unpack_supported = False
            report.results.append(CaseResult(case, "skip", seconds=seconds))
            continue
        failures_in_a_row = failures_in_a_row + 1 if outcome.failure else 0
        if outcome.behaviour is None:
            report.results.append(CaseResult(case, "pass", seconds=seconds))
            continue
        report.results.append(CaseResult(case, "fail", outcome.behaviour, seconds))
        known = by_behaviour.get(outcome.behaviour)
        if known is not None:
            known.also.append(case.name)
        else:
            if progress:
                progress(f"{case.name}: {outcome.behaviour}, shrinking")
            by_behaviour[outcome.behaviour] = _minimised(packer, case, outcome)
            report.divergences.append(by_behaviour[outcome.behaviour])
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            report.gave_up = f"{failures_in_a_row} cases in a row without a proper answer"


def _minimised(packer: PackerProcess, case: Case, outcome: Outcome) -> Divergence:
    request, steps = case.request, 0
    final = outcome
    if outcome.failure is None:  # a hanging or crashing packer is not asked again and again
        last: dict[str, Outcome] = {}

        def still_fails(candidate: dict[str, Any]) -> bool:
            result = run_case(packer, candidate)
            if result.behaviour == outcome.behaviour and result.failure is None:
                last["outcome"] = result
                return True
            return False

        request, steps = shrink(case.request, still_fails)
        final = last.get("outcome", outcome)
    return Divergence(final.behaviour or "", final.detail, case.name, case.group, case.request, request,
                      final.expected, final.actual, final.stderr or outcome.stderr, steps, failure=outcome.failure)


class _Found(Exception):
    pass


def _random_phase(packer: PackerProcess, report: Report, examples: int, seed: int,
                  progress: Callable[[str], None] | None) -> None:
    """Hypothesis draws ``examples`` cases from ``seed``; a divergence is shrunk by Hypothesis itself, then the
    search goes on for divergences that break other behaviours."""
    from .conform_strategies import requests

    found = {d.behaviour for d in report.divergences}
    strategy = requests(unpack=report.unpack_supported)
    for _ in range(MAX_RANDOM_DIVERGENCES):
        count, last = _random_search(packer, strategy, examples, seed, found)
        report.random_run += count
        if "outcome" not in last:
            if last.get("broken"):
                report.random_stopped = "the packer failed to answer again"
            return
        outcome: Outcome = last["outcome"]
        request = last["request"]
        if progress:
            progress(f"random case: {outcome.behaviour}")
        report.divergences.append(Divergence(outcome.behaviour or "", outcome.detail, "random", "random", request,
                                             request, outcome.expected, outcome.actual, outcome.stderr,
                                             failure=outcome.failure))
        found.add(outcome.behaviour or "")
        if last.get("broken"):
            return


def _random_search(packer: PackerProcess, strategy: Any, examples: int, seed: int,
                   found: set[str]) -> tuple[int, dict[str, Any]]:
    """One Hypothesis run: the number of cases tried, and the (shrunk) first divergence of a new behaviour.

    Hypothesis replays the minimal failing example last, so the last failing call holds the shrunk input.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Flaky
    from hypothesis.reporting import with_reporter

    last: dict[str, Any] = {}
    count = 0

    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=[Phase.generate, Phase.shrink], print_blob=False)
    @hypothesis_seed(seed)
    @given(strategy)
    def probe(request: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if last.get("broken"):
            return
        outcome = run_case(packer, request)
        if outcome.failure is not None:  # not shrunk: every try could cost a timeout
            last["broken"] = True
            if outcome.behaviour not in found:
                last.update(request=request, outcome=outcome)
            raise _Found
        if outcome.behaviour is not None and outcome.behaviour not in found:
            last.update(request=request, outcome=outcome)
            raise _Found

    try:
        with with_reporter(lambda *args: None):
            probe()
    except (_Found, Flaky):
        pass
    except Exception:  # Hypothesis wraps what it cannot replay: the last failing example still stands
        if "outcome" not in last:
            raise
    return count, last


# -- the named cases -----------------------------------------------------------------------------

BASE_META = {"family": "IPv4", "address": "127.0.1.1", "port": 4321, "service": "https", "serviceport": 443,
             "name": "pokemap.hellabit.com"}
IPV6_META = {"family": "IPv6", "address": "2001:db8::42", "port": 40443, "service": "https", "serviceport": 8443,
             "name": "ipv6.example.test"}


def _req(op: str, meta: Any, body: Any = ..., service: Any = ...) -> dict[str, Any]:
    out: dict[str, Any] = {"op": op, "meta": meta}
    if body is not ...:
        out["body"] = body
    if service is not ...:
        out["service"] = service
    return out


def _bin(data: bytes) -> dict[str, str]:
    return {"base64": b64(data)}


def _json(value: Any) -> dict[str, Any]:
    return {"json": value}


def reference_cases() -> list[Case]:
    """proxy-packer's own vectors (vectors.json) and test/pack.js's input.json / output.bin."""
    vectors = json.loads((REFERENCE_DATA / "vectors.json").read_text(encoding="utf-8"))
    cases = []
    for vector in vectors:
        data = vector["data"]
        body = None if data is None else (_bin(bytes.fromhex(data["hex"])) if "hex" in data else _json(data["json"]))
        request = _req(vector["call"], vector["meta"], body, vector["service_arg"])
        cases.append(Case(f"vector: {vector['name']}", "vectors", request))
    spec = json.loads((REFERENCE_DATA / "input.json").read_text(encoding="utf-8"))
    hello = (REFERENCE_DATA / "sni.hello.bin").read_bytes()
    from .sni import client_hello_sni

    meta = {**spec["address"], "name": client_hello_sni(hello)}
    cases.append(Case("vector: test/pack.js input.json -> output.bin", "vectors", _req("pack", meta, _bin(hello))))
    frames = [c.request for c in cases]
    cases.append(Case("vector: unpack the vectors' stream whole", "vectors", {"op": "unpack", "frames": frames}))
    return cases


def _name_for_header(length: int, meta: dict[str, Any], datalen: int) -> str:
    """A host name (labels of at most 63 letters) that makes the ``pack`` header of ``meta`` ``length`` bytes."""
    base = len(pack_header({**meta, "name": ""}, b"x" * datalen, None)) - 2
    name = ("a" * 63 + ".") * (length // 64 + 1)
    name = name[: length - base]
    return name[:-1] + "a" if name.endswith(".") else name


def edge_cases(*, large: bool = True) -> list[Case]:
    m, v6 = BASE_META, IPV6_META
    rng = random.Random(12)
    cases = [
        ("pack: body missing (padded to one space)", _req("pack", m)),
        ("pack: body null", _req("pack", m, None)),
        ("pack: empty Buffer body", _req("pack", m, _bin(b""))),
        ("pack: empty string body", _req("pack", m, _json(""))),
        ("pack: body 0 (a falsy number)", _req("pack", m, _json(0))),
        ("pack: body false", _req("pack", m, _json(False))),
        ("pack: one-space body", _req("pack", m, _bin(b" "))),
        ("packHeader: no body (datalen 0)", _req("packHeader", m)),
        ("packHeader: empty Buffer body (datalen 0)", _req("packHeader", m, _bin(b""))),
        ("packHeader: 100-byte body, header only", _req("packHeader", m, _bin(bytes(range(100))))),
        ("packHeader: end (datalen 0)", _req("packHeader", m, None, "end")),
        ("pack: connection (8 fields)", _req("pack", m, None, "connection")),
        ("pack: connection, meta without service", _req("pack", {k: m[k] for k in m if k != "service"}, None,
                                                         "connection")),
        ("pack: end", _req("pack", m, None, "end")),
        ("pack: error with {message, code}", _req("pack", m, _json({"message": "connect ECONNREFUSED",
                                                                      "code": "E_CONN"}), "error")),
        ("pack: error without body", _req("pack", m, None, "error")),
        ("pack: pause 1024", _req("pack", m, _json(1024), "pause")),
        ("pack: resume with a text count", _req("pack", m, _bin(b"2048"), "resume")),
        ("pack: IPv6 client", _req("pack", v6, _bin(b"GET / HTTP/1.1\r\n\r\n"))),
        ("pack: IPv4-mapped IPv6 client", _req("pack", {**v6, "address": "::ffff:192.0.2.7"}, _bin(b"x"))),
        ("pack: IPv6 connection", _req("pack", v6, None, "connection")),
        ("pack: non-ASCII name", _req("pack", {**m, "name": "bücher.例え.test"}, _bin(b"hi"))),
        ("pack: non-ASCII JSON string body", _req("pack", m, _json("ünïcødé ✓"))),
        ("pack: non-ASCII text as Buffer", _req("pack", m, _bin("日本語のテキスト".encode()))),
        ("pack: header of 255 bytes (no wrap)", _req("pack", {**m, "name": _name_for_header(255, m, 1)}, _bin(b"x"))),
        ("pack: name pushing the header to 256 bytes (hdrlen wraps to 0)",
         _req("pack", {**m, "name": _name_for_header(256, m, 1)}, _bin(b"x"))),
        ("pack: name pushing the header to 300 bytes", _req("pack", {**m, "name": _name_for_header(300, m, 1)},
                                                             _bin(b"x" * 300))),
        ("pack: non-ASCII name pushing the header past 255 bytes",
         _req("pack", {**m, "name": "ü" * 130}, _bin(b"x"))),
        ("pack: control hello", _req("pack", None, _json([1, "hello", 254, ["add_token", "delete_token"]]),
                                     "control")),
        ("pack: control reply [-1, null]", _req("pack", None, _json([-1, None]), "control")),
        ("pack: control error reply", _req("pack", None, _json([-2, {"message": "unknown command 'x'",
                                                                      "code": "E_UNKNOWN_COMMAND"}]), "control")),
        ("pack: control out-of-band [0, text]", _req("pack", None, _json([0, "[Error] out-of-band"]), "control")),
        ("pack: control with meta (ignored)", _req("pack", m, _json([3, "add_token", "eyJ.x.y"]), "control")),
        ("packHeader: control", _req("packHeader", None, _json([4, "auth", {"nested": [1, 2.5, None]}]),
                                     "control")),
        ("pack: JSON object body", _req("pack", m, _json({"a": 1, "b": [True, None, "x"], "c": {"d": -1.5}}))),
        ("pack: JSON array body", _req("pack", m, _json([1, "two", 3.25]))),
        ("pack: JSON string body (quoted)", _req("pack", m, _json("abc"))),
        ("pack: JSON number body", _req("pack", m, _json(12345.678))),
        ("pack: JSON true body", _req("pack", m, _json(True))),
        ("pack: 1-byte body", _req("pack", m, _bin(b"\x00"))),
        ("pack: 64 KiB body", _req("pack", m, _bin(rng.randbytes(64 * 1024)))),
        ("pack: meta {} (every field undefined)", _req("pack", {}, _bin(b"x"))),
        ("pack: port and serviceport as text", _req("pack", {**m, "port": "4321", "serviceport": "443"}, _bin(b"x"))),
        ("pack: serviceport 0 and name null (falsy: empty)", _req("pack", {**m, "serviceport": 0, "name": None},
                                                                   _bin(b"x"))),
        ("pack: null meta for a data frame (the reference throws)", _req("pack", None, _bin(b"x"))),
    ]
    if large:
        cases.append(("pack: 16 MiB body", _req("pack", m, _bin(rng.randbytes(16 * 1024 * 1024)))))
    out = [Case(name, "edge", request) for name, request in cases]
    return out + unpack_cases()


def unpack_cases() -> list[Case]:
    frames = [c.request for c in reference_cases()[:-2]]
    size = len(stream_of(frames))
    rng = random.Random(7)
    header_cuts: list[int] = []
    at = 0
    for frame in frames:
        wire = expected_wire(frame)
        assert isinstance(wire, bytes)
        header_cuts += [at + 2 + wire[1], at + len(wire) + len(body_bytes_sent(frame) if frame["op"] ==
                                                                  "packHeader" else b"")]
        at = header_cuts[-1]
    m = BASE_META
    specs = [
        ("unpack: the vectors one byte at a time", frames, list(range(1, size))),
        ("unpack: the vectors in 7-byte chunks", frames, list(range(7, size, 7))),
        ("unpack: the vectors in 100-byte chunks", frames, list(range(100, size, 100))),
        ("unpack: header and body as separate chunks (the relay's way)", frames, header_cuts),
        ("unpack: random chunkings of the vectors", frames, sorted(rng.sample(range(1, size), 40))),
        ("unpack: packHeader end (datalen 0) closing a chunk",
         [_req("pack", m, _bin(b"hello")), _req("packHeader", m, None, "end"), _req("pack", m, _bin(b"x"))],
         [len(stream_of([_req("pack", m, _bin(b"hello")), _req("packHeader", m, None, "end")]))]),
        ("unpack: error bodies (JSON object, none, not JSON)",
         [_req("pack", m, _json({"message": "m", "code": "E"}), "error"), _req("pack", m, None, "error"),
          _req("packHeader", m, None, "error"), _req("pack", m, _bin(b"\xffnot json"), "error")], [3, 50]),
        ("unpack: connection frames, IPv6 and non-ASCII names",
         [_req("pack", IPV6_META, None, "connection"), _req("pack", {**m, "name": "bücher.test"}, _bin(b"x"))], []),
        ("unpack: a 64 KiB body in 1000-byte chunks", [_req("pack", m, _bin(rng.randbytes(65536)))],
         list(range(1000, 66000, 1000))),
    ]
    return [Case(name, "unpack", {"op": "unpack", "frames": f, "cuts": cuts}) for name, f, cuts in specs]


def named_cases(*, large: bool = True) -> list[Case]:
    return reference_cases() + edge_cases(large=large)
