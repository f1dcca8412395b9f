"""How far one column's distribution moved between two statistics sets (drift and skew).

Both distances are a share of examples, so one threshold reads the same for every column:
- categorical columns (strings, and integers the schema marks categorical): L-infinity distance
  between the category frequencies, by TFDV's own comparator (`infinity_norm`);
- numeric columns: the Kolmogorov-Smirnov distance (the largest gap between the two cumulative
  distributions), read from the 100-bucket quantile histograms in the statistics.

Why not TFDV's numeric comparator (approximate Jensen-Shannon divergence): it compares the
10-bucket equal-width histograms, whose edges move with each sample's extremes. Measured on the
taxi data (two disjoint random samples of the same CSV, 10,000 vs 5,000 rows), it reports 0.70
for trip_miles and 0.10 for pickup_latitude: no threshold separates healthy from damaged data.
The quantile-histogram KS distance on the same samples is 0.028 and 0.031, within 0.005 of the
exact two-sample KS statistic (scipy) at 2,000 rows and more.

Statistics must be computed with `stats_options(schema)`: with the schema, TFDV treats
categorical integers as categories (otherwise they get numeric statistics and no L-infinity);
100 quantile buckets make the KS distance accurate to about 0.01.

Skew also compares how often each configured feature has a value (training examples vs logged
requests, same threshold): a client that leaves a feature out gets it imputed by the model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

QUANTILE_BUCKETS = 100
NEVER_SENT = "the requests never carry a value for it"
_L_INFINITY = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH}


def stats_options(schema: schema_pb2.Schema | None = None):
    """The TFDV options every headwise statistics set is computed with (StatisticsGen's, and
    the serving statistics of the request logs)."""
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(schema=schema, num_quantiles_histogram_buckets=QUANTILE_BUCKETS)


@dataclasses.dataclass(frozen=True)
class Shift:
    """One column that moved further than its threshold."""

    column: str
    distance: float | None  # None: the column has no values in the other statistics
    threshold: float
    description: str  # how it was measured, in words


def is_categorical(feature: schema_pb2.Feature) -> bool:
    return feature.type == schema_pb2.BYTES or feature.HasField("bool_domain") or (
        feature.HasField("int_domain") and feature.int_domain.is_categorical)


def _features(stats: statistics_pb2.DatasetFeatureStatisticsList
              ) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {f.path.step[0] if f.path.step else f.name: f for f in stats.datasets[0].features}


def _with_value(feature: statistics_pb2.FeatureNameStatistics | None, examples: int) -> float:
    """The share of examples with a value in a single-valued column. (CsvExampleGen writes an
    empty cell as an empty list, which TFDV counts as present: values are what count.)"""
    stats = feature.WhichOneof("stats") if feature is not None else None
    if stats not in ("num_stats", "string_stats", "bytes_stats") or not examples:
        return 0.0
    return min(1.0, getattr(feature, stats).common_stats.tot_num_values / examples)


def _quantiles(feature: statistics_pb2.FeatureNameStatistics | None):
    if feature is None or not feature.HasField("num_stats"):
        return None
    for h in feature.num_stats.histograms:
        if h.type == statistics_pb2.Histogram.QUANTILES and h.buckets:
            return h
    return None


def _cdf_knots(hist: statistics_pb2.Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct bucket edges x, and the CDF just below (left) and at (right) each edge.

    Quantile buckets hold equal shares; a value repeated across buckets (a point mass, e.g.
    many zero tips) makes buckets with low == high, i.e. a jump of the CDF at that value.
    Within a bucket the CDF is taken as linear."""
    edges = [hist.buckets[0].low_value] + [b.high_value for b in hist.buckets]
    counts = np.array([b.sample_count for b in hist.buckets], dtype=float)
    cum = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    xs, left, right = [], [], []
    for x, p in zip(edges, cum, strict=True):
        if xs and x == xs[-1]:
            right[-1] = p
        else:
            xs.append(x)
            left.append(p)
            right.append(p)
    return np.array(xs), np.array(left), np.array(right)


def _cdf(knots, x: float, side: str) -> float:
    """The piecewise-linear CDF at x: its value at x (side "right") or just below x ("left")."""
    xs, left, right = knots
    k = int(np.searchsorted(xs, x))  # xs[k-1] < x <= xs[k]
    if k < len(xs) and xs[k] == x:
        return float((left if side == "left" else right)[k])
    if k == 0:
        return 0.0
    if k == len(xs):
        return 1.0
    frac = (x - xs[k - 1]) / (xs[k] - xs[k - 1])  # between knots: right[k-1] -> left[k]
    return float(right[k - 1] + frac * (left[k] - right[k - 1]))


def _presence(column, mine, theirs, current, other, threshold) -> Shift | None:
    """Skew in how often a feature has a value: training examples vs logged requests."""
    a = _with_value(mine, current.datasets[0].num_examples)
    b = _with_value(theirs, other.datasets[0].num_examples)
    if a > 0 and b == 0:
        return Shift(column, a, threshold, NEVER_SENT)
    if abs(a - b) > threshold:
        return Shift(column, abs(a - b), threshold, (
            f"{b:.1%} of the requests carry a value for it, {a:.1%} of the training examples "
            f"do: a gap of {abs(a - b):.3f}, above the threshold {threshold}"))
    return None


def ks_distance(a: statistics_pb2.Histogram, b: statistics_pb2.Histogram) -> float:
    """Kolmogorov-Smirnov distance between two quantile histograms: max over x of
    |F_a(x) - F_b(x)|, with the CDFs' jumps (point masses) taken into account."""
    ka, kb = _cdf_knots(a), _cdf_knots(b)
    return max(abs(_cdf(ka, x, side) - _cdf(kb, x, side))
               for x in np.union1d(ka[0], kb[0]) for side in ("left", "right"))


def shifts(current: statistics_pb2.DatasetFeatureStatisticsList,
           other: statistics_pb2.DatasetFeatureStatisticsList, contract: schema_pb2.Schema,
           thresholds: dict[str, float], skew: bool) -> list[Shift]:
    """The configured columns whose distribution in `other` is further than their threshold
    from `current` (drift: other = the served model's training data; skew: other = what the
    served model was asked, and `current` the training data)."""
    import tensorflow_data_validation as tfdv

    mine, theirs = _features(current), _features(other)
    found: list[Shift] = []
    compare = set(thresholds)
    if skew:  # a feature the clients leave out: the model imputes it in those requests
        found = [s for c in sorted(compare) if (s := _presence(
            c, mine.get(c), theirs.get(c), current, other, thresholds[c]))]
        compare -= {s.column for s in found if s.description == NEVER_SENT}
    schema = schema_pb2.Schema()
    schema.CopyFrom(contract)
    by_name = {f.name: f for f in schema.feature}
    categorical = {c for c in compare if c in by_name and is_categorical(by_name[c])}
    if categorical:
        for column in categorical:
            feature = by_name[column]
            comparator = feature.skew_comparator if skew else feature.drift_comparator
            comparator.infinity_norm.threshold = thresholds[column]
        kwargs = {"serving_statistics": other} if skew else {"previous_statistics": other}
        anomalies = tfdv.validate_statistics(current, schema, **kwargs)
        for column, info in anomalies.anomaly_info.items():
            for r in info.reason:
                if r.type in _L_INFINITY and column in categorical:
                    found.append(Shift(column, None, thresholds[column], r.description))
    for column in sorted(compare - categorical):
        a, b = _quantiles(mine.get(column)), _quantiles(theirs.get(column))
        if a is None or b is None:
            continue  # nothing to compare (a missing column is the schema checks' business)
        d = ks_distance(a, b)
        if d > thresholds[column]:
            found.append(Shift(column, d, thresholds[column], (
                f"the largest gap between the two cumulative distributions (Kolmogorov-"
                f"Smirnov distance) is {d:.3f}, above the threshold {thresholds[column]}")))
    return sorted(found, key=lambda s: s.column)
