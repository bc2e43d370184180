"""Counts per time interval for a capture whose length is not known until it ends.

A report wants a few hundred intervals whatever the span (a second or a
week), but a streaming reader cannot choose the interval before the last
packet. So counting starts at the finest interval and, whenever the next
timestamp would need more than ``max_bins`` intervals, moves to the next
coarser one of ``STEPS``, each a whole multiple of the one before, merging
the counts already held. Memory is at most ``max_bins`` intervals times the
series seen, and the final interval is the finest that covers the span.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator

STEPS = (0.001, 0.002, 0.01, 0.02, 0.1, 0.2, 1.0, 2.0, 10.0, 20.0, 60.0, 120.0, 600.0, 1200.0, 3600.0, 7200.0,
         21600.0, 86400.0)
"""Interval lengths in seconds; each divides the next, so counts merge exactly."""

DEFAULT_MAX_BINS = 300


class TimeBins:
    """Sums per (interval, series) for timestamps at or after ``origin``; ``add`` then ``rows``."""

    def __init__(self, origin: float, max_bins: int = DEFAULT_MAX_BINS) -> None:
        self.origin = origin
        self.max_bins = max_bins
        self._step = 0
        self.width = STEPS[0]
        self._bins: dict[int, Counter[Hashable]] = {}

    def add(self, ts: float, series: Hashable, amount: int = 1) -> None:
        """Count ``amount`` for ``series`` at ``ts`` (a time before ``origin`` counts in the first interval)."""
        index = int((ts - self.origin) / self.width) if ts > self.origin else 0
        while index >= self.max_bins:
            self._coarser()
            index = int((ts - self.origin) / self.width)
        counts = self._bins.get(index)
        if counts is None:
            counts = self._bins[index] = Counter()
        counts[series] += amount

    def _coarser(self) -> None:
        """Move to the next interval length (past the last, twice the length), merging the counts held."""
        if self._step + 1 >= len(STEPS):
            self.width *= 2
            ratio = 2
        else:
            self._step += 1
            ratio = round(STEPS[self._step] / self.width)
            self.width = STEPS[self._step]
        merged: dict[int, Counter[Hashable]] = {}
        for index, counts in self._bins.items():
            target = merged.get(index // ratio)
            if target is None:
                merged[index // ratio] = counts
            else:
                target.update(counts)
        self._bins = merged

    def use_width_of(self, other: TimeBins) -> None:
        """Coarsen to ``other``'s interval (when it is coarser), so two series share one time axis."""
        while self.width < other.width - 1e-12:
            self._coarser()

    def rows(self) -> Iterator[tuple[float, Hashable, int]]:
        """``(interval start relative to origin, series, sum)`` in time order."""
        for index in sorted(self._bins):
            start = index * self.width
            for series, amount in self._bins[index].items():
                yield start, series, amount
