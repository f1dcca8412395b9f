"""The `features` section: the input columns and how Transform encodes each."""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Any

from headwise import contract
from headwise.config.fields import Fields

FEATURE_TYPES = ("numeric", "categorical", "bucketized", "image")
_GRAPH_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def graph_name(name: str) -> str:
    """A column name as TensorFlow may name a layer, an input, a scope or an asset file after
    it: the name itself when it is one already (letters, digits, `_ . -`, starting with a
    letter or digit), else those characters kept, the others `_`, and a hash of the name, so
    that two columns never share one (`Body Mass (g)` -> `Body_Mass_g_<hash>`). Data columns
    keep their names everywhere else (configs, examples, requests)."""
    if name[:1].isalnum() and not _GRAPH_UNSAFE.search(name):
        return name
    stem = re.sub("_+", "_", _GRAPH_UNSAFE.sub("_", name)).strip("_.-") or "column"
    return f"{stem}_{zlib.crc32(name.encode('utf-8')):08x}"
# How Transform encodes a numeric feature (trainer.transform) and the backbone reads it
# (trainer.backbones):
#   zscore:    (x - mean) / std, optionally clipped to [-clip, clip];
#   quantile:  x's position among the training values, in [0, 1]: `bins` quantile boundaries,
#              linear between them (heavy tails and outliers land in [0, 1]);
#   piecewise: the quantile position expanded into `bins` piecewise-linear components, each
#              in [0, 1] (Gorishniy et al. 2022, PLE with quantile bins), then a dense layer
#              of model.embedding_dim units with ReLU per feature; with `linear` (default),
#              the z-score clipped to [-LINEAR_CLIP, LINEAR_CLIP] is an input next to them, so
#              a relation linear in the value needs no bins (and small data no bins at all).
NUMERIC_ENCODINGS = ("zscore", "quantile", "piecewise")
DEFAULT_NUMERIC_ENCODING = "piecewise"
NUMERIC_KEYS = ("encoding", "bins", "missing_indicator", "clip", "linear")
LINEAR_CLIP = 5.0  # piecewise's linear term: the z-score, clipped to +-5 standard deviations
# A categorical feature's largest vocabulary, its default when `top_k` is not set: the most
# that TFT's approximate (Misra-Gries) vocabulary keeps (tft.analyzers.LARGE_VOCAB_TOP_K).
MAX_TOP_K = 200_000
DEFAULT_BINS = 32  # quantile boundaries Transform computes when `bins` is not set
# piecewise without `bins`: the model makes one component per ROWS_PER_COMPONENT training rows,
# between 2 and DEFAULT_BINS: 32 components fit on 256 rows overfit (chosen on the validation
# split of the quality benchmark's only dataset under 1,024 training rows, docs/benchmarks.md).
ROWS_PER_COMPONENT = 32
IMAGE_CHANNELS = (1, 3)
DEFAULT_IMAGE_SIZE = (224, 224)  # Keras Applications' default input size


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    type: str
    buckets: int = 10  # bucketized only
    oov_buckets: int = 1  # categorical only
    top_k: int | None = None  # categorical only: keep the top_k most frequent values (MAX_TOP_K)
    # image only: encoded PNG/JPEG/GIF/BMP bytes, decoded and resized to size (height, width)
    # with `channels` (3: RGB, what pretrained models take; 1: grey) inside the serving graph
    size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    channels: int = 3
    # numeric only (NUMERIC_ENCODINGS)
    encoding: str = DEFAULT_NUMERIC_ENCODING
    # quantile and piecewise: quantile boundaries from Transform (None: DEFAULT_BINS, and
    # piecewise components by the training rows, piecewise_components)
    bins: int | None = None
    missing_indicator: bool = True  # a 0/1 input: was the value present?
    clip: float | None = None  # zscore: clip the z-score to [-clip, clip]
    linear: bool = True  # piecewise: the clipped z-score as an input next to the components

    @property
    def quantile_bins(self) -> int:
        """The quantile boundaries Transform computes for the quantile and piecewise encodings."""
        return self.bins or DEFAULT_BINS

    def side_inputs(self) -> tuple[str, ...]:
        """The transformed columns, each one model input, that a numeric feature adds next to
        its own: its missing indicator and piecewise's linear term (trainer.transform writes
        them, trainer.backbones reads them, trainer.export passes them on)."""
        if self.type != "numeric":
            return ()
        out = [contract.presence_key(self.name)] if self.missing_indicator else []
        if self.encoding == "piecewise" and self.linear:
            out.append(contract.linear_key(self.name))
        return tuple(out)


def piecewise_components(feature: Feature, train_rows: int | None) -> int:
    """How many piecewise-linear components the model makes of a feature's quantile position:
    its `bins` where set; otherwise DEFAULT_BINS, fewer on small data (one per
    ROWS_PER_COMPONENT training rows, at least 2). Fewer components of the same position are
    coarser quantile bins."""
    if feature.bins:
        return feature.bins
    if not train_rows:
        return DEFAULT_BINS
    return max(2, min(DEFAULT_BINS, train_rows // ROWS_PER_COMPONENT))


def parse_feature(source: str, name: str, spec: Any) -> Feature:
    path = f"features.{name}"
    if isinstance(spec, str):
        spec = {"type": spec}
    f = Fields(source, path, spec, ("type", "buckets", "oov_buckets", "top_k", "size",
                                    "channels", *NUMERIC_KEYS))
    ftype = f.choice("type", FEATURE_TYPES, what="feature type")
    buckets = f.get("buckets", int, 10)
    oov = f.get("oov_buckets", int, 1)
    top_k = f.get("top_k", int, None) if spec.get("top_k") is not None else None
    if ftype != "bucketized" and "buckets" in spec:
        f.fail("only bucketized features take 'buckets'", "buckets")
    if ftype != "categorical" and ({"oov_buckets", "top_k"} & set(spec)):
        f.fail("only categorical features take 'oov_buckets'/'top_k'", "oov_buckets")
    if ftype != "image" and ({"size", "channels"} & set(spec)):
        f.fail("only image features take 'size'/'channels'", "size")
    if ftype != "numeric" and set(NUMERIC_KEYS) & set(spec):
        key = sorted(set(NUMERIC_KEYS) & set(spec))[0]
        f.fail(f"only numeric features take {'/'.join(NUMERIC_KEYS)}", key)
    encoding = f.choice("encoding", NUMERIC_ENCODINGS, DEFAULT_NUMERIC_ENCODING,
                        what="numeric encoding")
    bins = f.get("bins", int, None) if spec.get("bins") is not None else None
    if bins is not None and bins < 2:
        f.fail("must be >= 2", "bins")
    if "bins" in spec and encoding == "zscore":
        f.fail("only the quantile and piecewise encodings take bins", "bins")
    clip = f.get("clip", float, None) if spec.get("clip") is not None else None
    if clip is not None and encoding != "zscore":
        f.fail(f"only the zscore encoding takes clip (the {encoding} encoding is bounded "
               "already)", "clip")
    if clip is not None and clip <= 0:
        f.fail(f"must be > 0 (z-scores are clipped to [-clip, clip]), got {clip}", "clip")
    linear = f.get("linear", bool, True)
    if "linear" in spec and encoding != "piecewise":
        f.fail("only the piecewise encoding takes linear (its z-score input next to the "
               "piecewise components)", "linear")
    if buckets < 2:
        f.fail("must be >= 2", "buckets")
    if oov < 1:
        f.fail("must be >= 1", "oov_buckets")
    if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
        f.fail(f"must be between 1 and {MAX_TOP_K:,} (Transform's approximate vocabulary "
               f"keeps at most that many values; rarer ones share the oov_buckets ids)", "top_k")
    size = f.int_list("size", DEFAULT_IMAGE_SIZE)
    if len(size) != 2:
        f.fail(f"expected [height, width], got {list(size)}", "size")
    if min(size) < 32:
        # Keras Applications refuse inputs smaller than 32 x 32 without their top.
        f.fail(f"images are resized to at least 32 x 32 for a pretrained backbone, got "
               f"{list(size)}; smaller images (e.g. 8 x 8) are upsampled: size: [32, 32]", "size")
    channels = f.get("channels", int, 3)
    if channels not in IMAGE_CHANNELS:
        f.fail(f"expected 3 (RGB) or 1 (grey), got {channels}", "channels")
    return Feature(name=name, type=ftype, buckets=buckets, oov_buckets=oov, top_k=top_k,
                   size=(size[0], size[1]), channels=channels, encoding=encoding, bins=bins,
                   missing_indicator=f.get("missing_indicator", bool, True), clip=clip,
                   linear=linear)


def parse_features(top: Fields) -> tuple[Feature, ...]:
    features_raw = top.get("features", dict)
    if not features_raw:
        top.fail("needs at least one feature", "features")
    return tuple(parse_feature(top.source, n, s) for n, s in features_raw.items())


def raw_feature(feature: Feature) -> dict[str, Any]:
    """The YAML form of one feature (the inverse of parse_feature). A key that the feature's
    type does not take is written only when it differs from its default, so that parsing fails
    instead of silently dropping it."""
    default = Feature(name=feature.name, type=feature.type)
    out: dict[str, Any] = {"type": feature.type}
    if feature.type == "bucketized" or feature.buckets != default.buckets:
        out["buckets"] = feature.buckets
    if feature.type == "categorical" or feature.oov_buckets != default.oov_buckets:
        out["oov_buckets"] = feature.oov_buckets
    if feature.top_k is not None:
        out["top_k"] = feature.top_k
    if feature.type == "image" or feature.size != default.size:
        out["size"] = list(feature.size)
    if feature.type == "image" or feature.channels != default.channels:
        out["channels"] = feature.channels
    if feature.type == "numeric":
        out["encoding"] = feature.encoding
        if feature.bins is not None:
            out["bins"] = feature.bins
        out["missing_indicator"] = feature.missing_indicator
        if feature.encoding == "piecewise":
            out["linear"] = feature.linear
        if feature.clip is not None:
            out["clip"] = feature.clip
    return out
