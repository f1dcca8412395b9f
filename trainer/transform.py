"""Transform's preprocessing_fn, generated from the heads config.

Input features (names kept):
  numeric     -> float32, by the feature's `encoding`: zscore (mean/std of present values,
                 clipped to [-clip, clip] when set; missing -> 0, the mean), or quantile and
                 piecewise (the value's position among the training values in [0, 1], linear
                 between `bins` quantile boundaries, clipped to [0, 1]; missing -> 0.5); with
                 `missing_indicator`, also `contract.presence_key(name)`: 1.0 where present;
                 piecewise with `linear`, also `contract.linear_key(name)`: the z-score
                 clipped to [-LINEAR_CLIP, LINEAR_CLIP];
  categorical -> int64 vocabulary index by descending frequency (ties: descending bytes); a
                 missing value (no entry in the vocabulary) and values unseen in training hash
                 into the `oov_buckets` extra ids; the vocabulary file is named after the
                 feature. The vocabulary is TFT's Misra-Gries one (`approximate_vocabulary`):
                 exact whenever the column has at most `top_k` (default features.MAX_TOP_K)
                 distinct values, and a combiner, so Transform packs all of a config's
                 vocabularies, means and quantiles into one pass over the data (an exact
                 `tft.vocabulary` is several Beam stages per feature: census' 33 categorical
                 columns cost about 50 s of per-stage overhead on 2 cores);
  bucketized  -> int64 quantile bucket in [0, buckets); missing -> `buckets`;
  image       -> the encoded image bytes, unchanged (a missing image: empty bytes); the model's
                 input function and serving signatures decode them (trainer.images.decode).
Labels: each head's `transform_label` (see trainer.heads), keyed by head name.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_transform as tft

from headwise import config as config_lib
from headwise import contract
from headwise.config import features as features_lib
from trainer import heads as heads_lib


def _as_float(x):
    if isinstance(x, tf.sparse.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    return tf.cast(x, tf.float32)


def quantile_position(x: tf.Tensor, edges: tf.Tensor) -> tf.Tensor:
    """x [batch] -> its position in [0, 1] on the piecewise-linear CDF through `edges` [bins+1]
    (the minimum, the bins-1 quantile boundaries, the maximum; sorted, repeats allowed): x in
    bin b, between edges[b] and edges[b+1], maps to (b + its share of that bin) / bins. A value
    equal to a repeated edge (a point mass) maps to the top of its run of bins; values outside
    the training range map to 0 or 1."""
    bins = tf.shape(edges)[0] - 1
    inner = edges[1:-1]
    b = tf.searchsorted(inner, x, side="right")  # boundaries <= x: the bin, 0 .. bins-1
    lo, hi = tf.gather(edges, b), tf.gather(edges, b + 1)
    share = tf.clip_by_value(tf.math.divide_no_nan(x - lo, hi - lo), 0.0, 1.0)
    u = (tf.cast(b, tf.float32) + share) / tf.cast(bins, tf.float32)
    return tf.clip_by_value(u, 0.0, 1.0)


def _zscore(x: Any, clip: float | None) -> tf.Tensor:
    present = heads_lib.values(x)
    mean, var = tft.mean(present), tft.var(present)
    std = tf.where(var > 0, tf.sqrt(var), tf.ones_like(var))
    z = (heads_lib.to_dense(x, mean) - mean) / std  # missing -> 0 (the mean)
    return z if clip is None else tf.clip_by_value(z, -clip, clip)


def _numeric(feature: config_lib.Feature, x: Any) -> tf.Tensor:
    present = heads_lib.values(x)
    if feature.encoding == "zscore":
        return _zscore(x, feature.clip)
    bins = feature.quantile_bins
    boundaries = tf.reshape(tft.quantiles(present, bins, epsilon=0.01 / bins), [-1])
    edges = tf.concat([tf.reshape(tft.min(present), [1]), boundaries,
                       tf.reshape(tft.max(present), [1])], axis=0)
    u = quantile_position(heads_lib.to_dense(x, 0.0), edges)
    return tf.where(heads_lib.presence(x) > 0, u, 0.5)  # missing -> the median


def transform_feature(feature: config_lib.Feature, raw: Any) -> tf.Tensor:
    """One raw input column -> its transformed tensor of shape [batch].

    Every analyzer reads only the present values of the raw column, so Transform needs a single
    analysis phase and imputed values never bias the statistics.
    """
    if feature.type == "image":
        return heads_lib.to_dense(raw, b"")
    if feature.type == "categorical":
        text = heads_lib.to_dense(heads_lib.as_text(raw), "")
        return tft.experimental.compute_and_apply_approximate_vocabulary(
            tf.strings.strip(text), top_k=feature.top_k or features_lib.MAX_TOP_K,
            num_oov_buckets=feature.oov_buckets,
            vocab_filename=features_lib.graph_name(feature.name))
    x = _as_float(raw)
    present = heads_lib.values(x)
    if feature.type == "numeric":
        return _numeric(feature, x)
    boundaries = tft.quantiles(present, feature.buckets, epsilon=0.01 / feature.buckets)
    buckets = tft.apply_buckets(heads_lib.to_dense(x, 0.0), boundaries)
    # A missing value gets its own id, `buckets`, one past the last quantile bucket.
    return tf.where(heads_lib.presence(x) > 0, buckets, tf.constant(feature.buckets, tf.int64))


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    """TFX Transform entry point; `custom_config[HEADS_CONFIG_KEY]` is the config's JSON
    (`headwise.config.to_json`, training scope)."""
    cfg = config_lib.from_json(custom_config[config_lib.HEADS_CONFIG_KEY])
    out = {}
    for feature in cfg.features:
        if feature.name not in inputs:
            raise ValueError(f"feature column {feature.name!r} (features.{feature.name} in "
                             f"{cfg.source}) is not in the examples; got {sorted(inputs)}")
        out[feature.name] = transform_feature(feature, inputs[feature.name])
        for key in feature.side_inputs():
            if key == contract.presence_key(feature.name):
                out[key] = heads_lib.presence(inputs[feature.name])
            else:  # contract.linear_key: piecewise's linear term
                out[key] = _zscore(_as_float(inputs[feature.name]), features_lib.LINEAR_CLIP)
    for head in cfg.heads:
        if head.label not in inputs:
            raise ValueError(f"label column {head.label!r} of head {head.name!r} "
                             f"({cfg.source}) is not in the examples; got {sorted(inputs)}")
        out.update(heads_lib.transform_label(head, inputs[head.label]))
    return out
