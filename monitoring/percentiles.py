"""Percentiles that merge across hourly buckets: histograms with fixed log-spaced bins (DDSketch's mapping).

A value x falls in bin i = ceil(ln x / ln γ), with γ = (1 + α) / (1 − α): the bin holds (γ^(i−1), γ^i] and
is reported as 2·γ^i / (γ + 1), which lies within a relative error α of every value in the bin. The bins
are fixed, so two histograms merge by adding their counts: an hour's merges exactly into a day's or a week's.

The q-quantile is the bin of the sample of rank ⌈q·n⌉ (the nearest rank, 1-based, among n samples), so it
is reported within α = 1 % of that sample's exact value, whatever the window and however many hours were
merged; rounding to 0.01 adds at most 0.005. Values below ``MIN_VALUE`` are counted as ``MIN_VALUE``.

The bin of a value is computed by the database (``bin_of``): an hour's samples are binned and counted
there, and only (bin, count) pairs come back. The histograms are stored as JSON ``{"<bin>": count}``.
DDSketch's own Python package stores its bins in protobuf; these few lines keep them in plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from django.db.models import F, FloatField, Func, IntegerField, Value
from django.db.models.functions import Cast, Ceil, Greatest, Ln

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LN_GAMMA = math.log(GAMMA)
MIN_VALUE = 0.001
QUANTILES: dict[str, float] = {"p50": 0.5, "p95": 0.95, "p99": 0.99}

Histogram = dict[str, int]


def bin_of(field: str) -> Func:
    """The database expression of the bin of ``field``'s value (an integer)."""
    value = Greatest(F(field), Value(MIN_VALUE), output_field=FloatField())
    return Cast(Ceil(Ln(value) / Value(LN_GAMMA)), output_field=IntegerField())


def bin_value(index: int) -> float:
    """What a bin reports: within a relative ``ALPHA`` of every value it holds."""
    return 2 * GAMMA**index / (GAMMA + 1)


def merge(histograms: Iterable[Mapping[str, int]]) -> Histogram:
    merged: Histogram = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[index] = merged.get(index, 0) + count
    return merged


def quantile(histogram: Mapping[str, int], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q ≤ 1); None for an empty histogram."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram, key=int):
        seen += histogram[index]
        if seen >= rank:
            return round(bin_value(int(index)), 2)
    raise AssertionError("unreachable: the ranks add up to the total")


def quantiles(histogram: Mapping[str, int]) -> dict[str, float | None]:
    """``{"p50", "p95", "p99"}`` of a histogram."""
    return {name: quantile(histogram, q) for name, q in QUANTILES.items()}
