"""TimeBins: the interval follows the span, and merging never loses or moves a count across intervals."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mproxy_scapy.report.bins import STEPS, TimeBins


def test_each_step_divides_the_next():
    for small, large in itertools.pairwise(STEPS):
        assert abs(large / small - round(large / small)) < 1e-9


@given(st.lists(st.tuples(st.floats(0, 200000, allow_nan=False), st.sampled_from("ab"), st.integers(1, 5000)),
                min_size=1, max_size=200))
def test_sums_kept_and_interval_is_the_finest_that_fits(events):
    bins = TimeBins(0.0, max_bins=50)
    for ts, series, amount in events:
        bins.add(ts, series, amount)
    rows = list(bins.rows())
    for series in "ab":
        assert sum(a for _, s, a in rows if s == series) == sum(a for _, s, a in events if s == series)
    span = max(ts for ts, _, _ in events)
    assert span / bins.width < 50
    finer = [w for w in STEPS if w < bins.width]
    assert not finer or span / finer[-1] >= 50
    for ts, series, _ in events:  # each count sits in the interval holding its time
        start = int(ts / bins.width) * bins.width
        assert any(abs(t - start) < 1e-6 * max(1.0, start) and s == series for t, s, _ in rows)


def test_shared_axis():
    short, long = TimeBins(0.0, max_bins=10), TimeBins(0.0, max_bins=10)
    short.add(0.005, "x")
    long.add(50.0, "y")
    short.use_width_of(long)
    assert short.width == long.width == 10.0
    assert list(short.rows()) == [(0.0, "x", 1)]


def test_time_before_origin_counts_in_the_first_interval():
    bins = TimeBins(100.0)
    bins.add(99.0, "late packet")
    assert list(bins.rows()) == [(0.0, "late packet", 1)]
