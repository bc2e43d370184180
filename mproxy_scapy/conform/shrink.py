"""Greedy shrinking of a diverging request: fewer keys, frames and cuts, shorter values.

A candidate is kept when it still breaks the same reference behaviour, so the
minimal input shows one mistake, not whatever else the original case held.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from .. import jscompat
from .oracle import b64, body_bytes_sent, expected_wire

MAX_SHRINK_CALLS = 400
"""Packer calls one divergence may spend on shrinking."""


class ShrinkAborted(Exception):
    """Raised by a ``still_fails`` that gives up (the packer keeps failing): the smallest so far stands."""


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

    Returns the smallest request found and the number of steps taken (also when ``still_fails``
    raises ``ShrinkAborted``).
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
            try:
                fails = still_fails(candidate)
            except ShrinkAborted:
                return request, steps
            if fails:
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


