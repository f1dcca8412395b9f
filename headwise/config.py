"""The heads config: the one declarative source of truth for a headwise pipeline.

A YAML file declares the input features, the heads (one per label column) and the run
settings. Everything downstream -- Transform's preprocessing_fn, the Keras model, the
serving signatures, the Evaluator's EvalConfig and the run summary -- is derived from the
`PipelineConfig` loaded here, so nothing about a head is written twice.

Loading is strict: unknown keys, unknown tasks or metrics, duplicate heads, label leakage and
columns missing from the data all fail with a `ConfigError` whose message names the file and
the field (e.g. ``taxi.yaml: heads[2].task: unknown task 'clasify' ...``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

TASKS = ("regression", "binary", "multiclass", "multilabel")
FEATURE_TYPES = ("numeric", "categorical", "bucketized")

# Loss names a head accepts, by task; the first is the default.
LOSSES = {
    "regression": ("mse", "mae", "huber"),
    "binary": ("binary_crossentropy",),
    "multiclass": ("sparse_categorical_crossentropy",),
    "multilabel": ("binary_crossentropy",),
}
# Metric names a head accepts, by task; the defaults are used when a head lists none.
METRICS = {
    "regression": ("mae", "rmse", "mse"),
    "binary": ("auc", "accuracy", "precision", "recall", "pr_auc"),
    "multiclass": ("accuracy", "top2_accuracy"),
    "multilabel": ("auc", "accuracy", "precision", "recall"),
}
DEFAULT_METRICS = {
    "regression": ("mae", "rmse"),
    "binary": ("auc", "accuracy"),
    "multiclass": ("accuracy",),
    "multilabel": ("auc",),
}
THRESHOLD_KEYS = ("min", "max", "max_regression")
LOSS_BALANCING = ("static", "uncertainty")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
PACKAGE_PREFIX = "package://"


class ConfigError(ValueError):
    """A heads config is invalid. The message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Threshold:
    """Gate for one metric of one head.

    min / max: absolute bounds on the metric's value.
    max_regression: the largest allowed worsening against the last blessed model (absolute units).
    """

    min: float | None = None
    max: float | None = None
    max_regression: float | None = None


@dataclasses.dataclass(frozen=True)
class Feature:
    name: str
    type: str
    buckets: int = 10  # bucketized only
    oov_buckets: int = 1  # categorical only
    top_k: int | None = None  # categorical only: keep the top_k most frequent values


@dataclasses.dataclass(frozen=True)
class Head:
    name: str
    label: str
    task: str
    loss: str
    loss_weight: float = 1.0
    metrics: tuple[str, ...] = ()
    thresholds: Mapping[str, Threshold] = dataclasses.field(default_factory=dict)
    auxiliary: bool = False
    gate: bool = True  # its gates block the push (default: every head that is not auxiliary)
    baseline_margin: float = 0.01  # main metric must beat the trivial baseline by this (relative)
    classes: tuple[str, ...] = ()  # multiclass/multilabel: named classes, in output order
    other_class: str | None = None  # multiclass: name for every value not in `classes`
    delimiter: str = "|"  # multilabel: separates the labels of one example in the column
    normalize: bool = True  # regression: scale the loss by the label's spread
    tower: tuple[int, ...] = ()  # hidden units of this head's own layers

    @property
    def main_metric(self) -> str:
        """The head's first metric: the one that must beat the trivial baseline."""
        return self.metrics[0]

    @property
    def class_names(self) -> tuple[str, ...]:
        """Output classes in order (multiclass); the catch-all class comes last."""
        return self.classes + ((self.other_class,) if self.other_class else ())


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    hidden_units: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    embedding_dim: int = 8
    learning_rate: float = 0.003
    loss_balancing: str = "static"  # static: loss_weight; uncertainty: Kendall et al. 2018


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    train_steps: int = 2000
    eval_steps: int = 200
    batch_size: int = 128
    seed: int = 42  # model initialisation and shuffling
    early_stopping_patience: int = 2  # epochs without val_loss improvement; 0: train all steps


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """The data contract. `schema`: the curated schema file, relative to the config file (none:
    the pipeline infers one with SchemaGen). The two fractions are used when it is generated."""

    schema: str | None = None
    missing_slack: float = 0.05  # a column may be missing this much more often than observed
    max_unseen_fraction: float = 0.05  # share of values outside a categorical column's domain
    # Numeric columns may range over [min - k*span, max + k*span] of the observed values (span =
    # max - min): a value far outside (1e30, a unit change) is an anomaly. NaN/inf always are.
    range_slack: float = 10.0
    # Drift against the data that trained the model being served: {column: threshold}. The
    # distance is a share of examples: L-infinity between category frequencies for string and
    # categorical columns, Kolmogorov-Smirnov for numeric ones (components/distributions.py).
    drift: dict[str, float] = dataclasses.field(default_factory=dict)
    # Skew against what the served model is asked (the request log of `headwise serve`):
    # {feature column: threshold}, the same distances; checked once skew_min_examples examples
    # were logged (fewer say little: two healthy samples of 500 differ by up to ~0.06).
    skew: dict[str, float] = dataclasses.field(default_factory=dict)
    skew_min_examples: int = 500


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    name: str
    data_csv: str
    features: tuple[Feature, ...]
    heads: tuple[Head, ...]
    model: ModelConfig = ModelConfig()
    trainer: TrainerConfig = TrainerConfig()
    validation: ValidationConfig = ValidationConfig()
    evaluation_slices: tuple[str, ...] = ()  # columns the Evaluator also slices metrics by
    model_name: str = ""
    keep_versions: int = 5
    beam_args: tuple[str, ...] = ()
    source: str = "<dict>"  # the file this was loaded from, for messages

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.label for h in self.heads))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features) + self.label_columns

    def head(self, name: str) -> Head:
        for h in self.heads:
            if h.name == name:
                return h
        raise KeyError(name)

    def single_task(self, head_name: str) -> PipelineConfig:
        """The same pipeline with one head only (as a main head): the single-task baseline that
        benchmarks compare the multi-head model against."""
        head = dataclasses.replace(self.head(head_name), auxiliary=False, loss_weight=1.0)
        return dataclasses.replace(self, name=f"{self.name}_{head_name}", heads=(head,),
                                   model_name=f"{self.model_name}_{head_name}")

    def training_dict(self) -> dict[str, Any]:
        """to_dict() without what only gating reads (thresholds, gate, baseline margin): what
        Transform and Trainer receive, so that editing a gate does not retrain."""
        d = self.to_dict()
        for h in d["heads"]:
            h.update(thresholds={}, gate=True, baseline_margin=0.0)
        d["validation"].update(drift={}, skew={}, skew_min_examples=0)
        return d

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form that `from_dict` reads back (TFX passes it to user code)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def schema_path(self) -> str | None:
        """The curated schema's path (relative paths are relative to the config file)."""
        if not self.validation.schema:
            return None
        if os.path.isabs(self.validation.schema):
            return self.validation.schema
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.source)),
                                             self.validation.schema))

    def resolve_data_csv(self) -> str:
        """The data file's path; `package://pkg/rel/path` points inside an installed package."""
        return resolve_path(self.data_csv, os.path.dirname(self.source))


def resolve_path(path: str, base_dir: str = "") -> str:
    if path.startswith(PACKAGE_PREFIX):
        package, _, rel = path[len(PACKAGE_PREFIX) :].partition("/")
        import importlib.util

        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"data.csv: package '{package}' is not installed ({path})")
        return os.path.join(list(spec.submodule_search_locations)[0], rel)
    if base_dir and not os.path.isabs(path) and not os.path.exists(path):
        return os.path.join(base_dir, path)
    return path


class _Fields:
    """Reads a mapping strictly and builds messages that name the file and the field."""

    def __init__(self, source: str, path: str, value: Any, allowed: Iterable[str]):
        self.source, self.path = source, path
        if not isinstance(value, Mapping):
            self.fail(f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            self.fail(f"unknown key(s) {unknown}; allowed: {sorted(allowed)}", field=unknown[0])
        self.value = value

    def fail(self, message: str, field: str | None = None):
        where = f"{self.path}.{field}" if field and self.path else (field or self.path)
        raise ConfigError(f"{self.source}: {where}: {message}")

    def get(self, key: str, kind, default=dataclasses.MISSING):
        if key not in self.value:
            if default is dataclasses.MISSING:
                self.fail("is required", field=key)
            return default
        value = self.value[key]
        if value is None and default is not dataclasses.MISSING:
            return default  # an explicit `null` means "not set"
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is int and isinstance(value, bool):
            self.fail(f"expected int, got {value!r}", field=key)
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(f"expected {names}, got {value!r}", field=key)
        return value

    def choice(self, key: str, options: Iterable[str], default=dataclasses.MISSING, what="value"):
        value = self.get(key, str, default)
        if value not in options:
            self.fail(f"unknown {what} {value!r}; choose one of {list(options)}", field=key)
        return value

    def int_list(self, key: str, default=()):
        values = self.get(key, list, list(default))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            self.fail(f"expected a list of positive ints, got {values!r}", field=key)
        return tuple(values)


def _name(fields: _Fields, key: str) -> str:
    value = fields.get(key, str)
    if not NAME_RE.match(value):
        fields.fail(f"{value!r} is not a valid name "
                    "(letters, digits, '_'; starts with a letter)", key)
    return value


def _parse_feature(source: str, name: str, spec: Any) -> Feature:
    path = f"features.{name}"
    if isinstance(spec, str):
        spec = {"type": spec}
    f = _Fields(source, path, spec, ("type", "buckets", "oov_buckets", "top_k"))
    ftype = f.choice("type", FEATURE_TYPES, what="feature type")
    buckets = f.get("buckets", int, 10)
    oov = f.get("oov_buckets", int, 1)
    top_k = f.get("top_k", int, None) if spec.get("top_k") is not None else None
    if ftype != "bucketized" and "buckets" in spec:
        f.fail("only bucketized features take 'buckets'", "buckets")
    if ftype != "categorical" and ({"oov_buckets", "top_k"} & set(spec)):
        f.fail("only categorical features take 'oov_buckets'/'top_k'", "oov_buckets")
    if buckets < 2:
        f.fail("must be >= 2", "buckets")
    if oov < 1:
        f.fail("must be >= 1", "oov_buckets")
    return Feature(name=name, type=ftype, buckets=buckets, oov_buckets=oov, top_k=top_k)


def _parse_thresholds(f: _Fields, task: str, metrics: tuple[str, ...]) -> dict[str, Threshold]:
    raw = f.get("thresholds", dict, {})
    out = {}
    for metric, bounds in raw.items():
        if metric not in METRICS[task]:
            f.fail(f"unknown metric {metric!r} for a {task} head; "
                   f"choose from {list(METRICS[task])}", f"thresholds.{metric}")
        if metric not in metrics:
            f.fail(f"metric {metric!r} has a threshold but is not in this head's metrics "
                   f"{list(metrics)}", f"thresholds.{metric}")
        t = _Fields(f.source, f"{f.path}.thresholds.{metric}", bounds, THRESHOLD_KEYS)
        vals = {k: t.get(k, float, None) for k in THRESHOLD_KEYS}
        if not any(v is not None for v in vals.values()):
            t.fail(f"give at least one of {list(THRESHOLD_KEYS)}")
        if vals["max_regression"] is not None and vals["max_regression"] < 0:
            t.fail("must be >= 0", "max_regression")
        out[metric] = Threshold(**vals)
    return out


def _parse_head(source: str, index: int, spec: Any) -> Head:
    f = _Fields(source, f"heads[{index}]", spec, (
        "name", "label", "task", "loss", "loss_weight", "metrics", "thresholds", "auxiliary",
        "classes", "other_class", "delimiter", "normalize", "tower", "gate", "baseline_margin"))
    name = _name(f, "name")
    f.path = f"heads[{index}] ({name})"
    label = f.get("label", str)
    task = f.choice("task", TASKS, what="task")
    loss = f.choice("loss", LOSSES[task], LOSSES[task][0], what=f"loss for a {task} head")
    weight = f.get("loss_weight", float, 1.0)
    if weight < 0:
        f.fail(f"must be >= 0, got {weight}", "loss_weight")
    metrics = f.get("metrics", list, list(DEFAULT_METRICS[task]))
    for m in metrics:
        if m not in METRICS[task]:
            f.fail(f"unknown metric {m!r} for a {task} head; choose from {list(METRICS[task])}",
                   "metrics")
    if len(set(metrics)) != len(metrics) or not metrics:
        f.fail(f"needs at least one metric, each once; got {metrics}", "metrics")
    metrics = tuple(metrics)
    classes: tuple[str, ...] = ()
    other = None
    if task == "multiclass":
        classes = tuple(str(c) for c in f.get("classes", list))
        other = f.get("other_class", str, None)
        if len(classes) + (other is not None) < 2 or len(set(classes)) != len(classes):
            f.fail("a multiclass head needs at least two distinct classes "
                   "(counting other_class)", "classes")
        if other in classes:
            f.fail(f"{other!r} is also listed in classes", "other_class")
    elif task == "multilabel":
        classes = tuple(str(c) for c in f.get("classes", list))
        if not classes or len(set(classes)) != len(classes):
            f.fail("a multilabel head needs at least one class, each once", "classes")
        if "other_class" in spec:
            f.fail("only multiclass heads take other_class", "other_class")
    elif "classes" in spec or "other_class" in spec:
        f.fail(f"only multiclass/multilabel heads take classes, this head is {task}", "classes")
    delimiter = f.get("delimiter", str, "|")
    if "delimiter" in spec and task != "multilabel":
        f.fail("only multilabel heads take 'delimiter'", "delimiter")
    if not delimiter:
        f.fail("must not be empty", "delimiter")
    auxiliary = f.get("auxiliary", bool, False)
    margin = f.get("baseline_margin", float, 0.01)
    if not 0 <= margin < 1:
        f.fail(f"must be in [0, 1), got {margin}", "baseline_margin")
    if task != "regression" and "normalize" in spec:
        f.fail("only regression heads take 'normalize'", "normalize")
    return Head(
        name=name, label=label, task=task, loss=loss, loss_weight=weight, metrics=metrics,
        thresholds=_parse_thresholds(f, task, metrics),
        auxiliary=auxiliary, gate=f.get("gate", bool, not auxiliary),
        baseline_margin=margin, classes=classes, other_class=other,
        delimiter=delimiter,
        normalize=f.get("normalize", bool, True), tower=f.int_list("tower"))


def from_dict(raw: Any, source: str = "<dict>", columns: Iterable[str] | None = None
              ) -> PipelineConfig:
    """Validate a parsed config. `columns`, when given, are the data's column names."""
    top = _Fields(source, "", raw, (
        "name", "data", "features", "heads", "model", "trainer", "serving", "beam_args",
        "validation", "evaluation", "evaluation_slices",
        # keys produced by to_dict(), so that a serialised config round-trips
        "data_csv", "model_name", "keep_versions", "source"))
    if "data_csv" in raw:  # the to_dict() form (what TFX hands to user code)
        return _from_serialised(raw)
    name = _name(top, "name")
    data = _Fields(source, "data", top.get("data", dict), ("csv",))
    data_csv = data.get("csv", str)

    features_raw = top.get("features", dict)
    if not features_raw:
        top.fail("needs at least one feature", "features")
    features = tuple(_parse_feature(source, n, s) for n, s in features_raw.items())

    heads_raw = top.get("heads", list)
    if not heads_raw:
        top.fail("needs at least one head", "heads")
    heads = tuple(_parse_head(source, i, h) for i, h in enumerate(heads_raw))
    seen: dict[str, int] = {}
    for i, h in enumerate(heads):
        if h.name in seen:
            raise ConfigError(f"{source}: heads[{i}].name: duplicate head name {h.name!r} "
                              f"(also heads[{seen[h.name]}])")
        seen[h.name] = i
    feature_names = {f.name for f in features}
    for i, h in enumerate(heads):
        if h.label in feature_names:
            raise ConfigError(
                f"{source}: heads[{i}] ({h.name}).label: label column {h.label!r} is also an "
                f"input feature (features.{h.label}); a label must never be an input "
                "(label leakage)")
    if all(h.auxiliary for h in heads):
        top.fail("every head is auxiliary; at least one head must be a main head", "heads")

    m = _Fields(source, "model", top.get("model", dict, {}), (
        "hidden_units", "activation", "dropout", "batch_norm", "embedding_dim", "learning_rate",
        "loss_balancing"))
    model = ModelConfig(
        hidden_units=m.int_list("hidden_units", ModelConfig.hidden_units),
        activation=m.choice("activation", ("relu", "gelu", "selu", "tanh", "swish"), "relu",
                            what="activation"),
        dropout=m.get("dropout", float, 0.0), batch_norm=m.get("batch_norm", bool, False),
        embedding_dim=m.get("embedding_dim", int, 8),
        learning_rate=m.get("learning_rate", float, 0.003),
        loss_balancing=m.choice("loss_balancing", LOSS_BALANCING, "static", what="loss balancing"))
    if not 0 <= model.dropout < 1:
        m.fail(f"must be in [0, 1), got {model.dropout}", "dropout")
    t = _Fields(source, "trainer", top.get("trainer", dict, {}),
                ("train_steps", "eval_steps", "batch_size", "seed", "early_stopping_patience"))
    trainer = TrainerConfig(*(t.get(k, int, getattr(TrainerConfig, k))
                              for k in ("train_steps", "eval_steps", "batch_size", "seed",
                                        "early_stopping_patience")))
    for k in ("train_steps", "eval_steps", "batch_size"):
        if getattr(trainer, k) < 1:
            t.fail("must be >= 1", k)
    s = _Fields(source, "serving", top.get("serving", dict, {}), ("model_name", "keep_versions"))
    model_name = s.get("model_name", str, name)
    keep_versions = s.get("keep_versions", int, 5)
    if keep_versions < 1:
        s.fail("must be >= 1", "keep_versions")
    if not NAME_RE.match(model_name):
        s.fail(f"{model_name!r} is not a valid model name", "model_name")
    val = _Fields(source, "validation", top.get("validation", dict, {}),
                  ("schema", "missing_slack", "max_unseen_fraction", "range_slack", "drift",
                   "skew", "skew_min_examples"))
    validation = ValidationConfig(
        schema=val.get("schema", str, None), missing_slack=val.get("missing_slack", float, 0.05),
        max_unseen_fraction=val.get("max_unseen_fraction", float, 0.05),
        range_slack=val.get("range_slack", float, 10.0),
        drift=val.get("drift", dict, {}), skew=val.get("skew", dict, {}),
        skew_min_examples=val.get("skew_min_examples", int, 500))
    if validation.range_slack < 0:
        val.fail(f"must be >= 0, got {validation.range_slack}", "range_slack")
    if validation.skew_min_examples < 1:
        val.fail(f"must be >= 1, got {validation.skew_min_examples}", "skew_min_examples")
    feature_columns = {f.name for f in features}
    for key, allowed, what in (
            ("drift", feature_columns | {h.label for h in heads}, "a feature or label column"),
            ("skew", feature_columns, "a feature column (labels are not sent to the server)")):
        for column, threshold in getattr(validation, key).items():
            if column not in allowed:
                val.fail(f"{column!r} is not {what}", key)
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
                    0 < threshold <= 1):
                val.fail(f"{column}: threshold must be a number in (0, 1], got {threshold!r}",
                         key)
    for k in ("missing_slack", "max_unseen_fraction"):
        if not 0 <= getattr(validation, k) < 1:
            val.fail(f"must be in [0, 1), got {getattr(validation, k)}", k)
    ev = _Fields(source, "evaluation", top.get("evaluation", dict, {}), ("slices",))
    slices = tuple(ev.get("slices", list, []))
    for c in slices:
        if not isinstance(c, str) or c in (h.label for h in heads):
            ev.fail(f"{c!r} is not a feature column to slice by", "slices")
    beam_args = top.get("beam_args", list, [])
    if not all(isinstance(a, str) and a.startswith("--") for a in beam_args):
        top.fail(f"expected a list of '--flag=value' strings, got {beam_args!r}", "beam_args")

    cfg = PipelineConfig(name=name, data_csv=data_csv, features=features, heads=heads,
                         model=model, trainer=trainer, validation=validation,
                         evaluation_slices=slices,
                         model_name=model_name,
                         keep_versions=keep_versions, beam_args=tuple(beam_args), source=source)
    if columns is not None:
        check_columns(cfg, columns, data_name=data_csv)
    return cfg


def check_columns(cfg: PipelineConfig, columns: Iterable[str], data_name: str) -> None:
    """Every configured feature and label column must exist in the data."""
    columns = set(columns)
    for f in cfg.features:
        if f.name not in columns:
            raise ConfigError(f"{cfg.source}: features.{f.name}: column {f.name!r} is not in the "
                              f"data ({data_name}); columns: {sorted(columns)}")
    for c in cfg.evaluation_slices:
        if c not in columns:
            raise ConfigError(f"{cfg.source}: evaluation.slices: column {c!r} is not in the "
                              f"data ({data_name})")
    for i, h in enumerate(cfg.heads):
        if h.label not in columns:
            raise ConfigError(f"{cfg.source}: heads[{i}] ({h.name}).label: column {h.label!r} is "
                              f"not in the data ({data_name}); columns: {sorted(columns)}")


def read_csv_header(path: str) -> list[str]:
    """The column names of a CSV file, with errors that name the file."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline()  # only the header: the rows are checked before a run
        header = next(csv.reader([first.decode("utf-8")]), None)
    except FileNotFoundError:
        raise ConfigError(f"data file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}, line 1 (the header): not UTF-8 text ({e.reason} at byte "
                          f"{e.start + 1})") from None
    except (OSError, csv.Error) as e:
        raise ConfigError(f"cannot read data file {path}: {e}") from None
    if not header:
        raise ConfigError(f"data file {path} is empty (no header row)")
    return [c.strip() for c in header]


def load(path: str, check_data: bool = True) -> PipelineConfig:
    """Load and validate a heads config file; with check_data, also against the CSV header."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)  # safe_load: a config can never execute code
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    cfg = from_dict(raw, source=path)
    if check_data:
        csv_path = cfg.resolve_data_csv()
        check_columns(cfg, read_csv_header(csv_path), data_name=csv_path)
    return cfg


def _from_serialised(d: Mapping[str, Any]) -> PipelineConfig:
    heads = tuple(
        Head(**{**h, "metrics": tuple(h["metrics"]), "classes": tuple(h["classes"]),
                "tower": tuple(h["tower"]),
                "thresholds": {k: Threshold(**v) for k, v in h["thresholds"].items()}})
        for h in d["heads"])
    return PipelineConfig(
        name=d["name"], data_csv=d["data_csv"],
        features=tuple(Feature(**f) for f in d["features"]), heads=heads,
        model=ModelConfig(**{**d["model"], "hidden_units": tuple(d["model"]["hidden_units"])}),
        trainer=TrainerConfig(**d["trainer"]), validation=ValidationConfig(**d["validation"]),
        evaluation_slices=tuple(d["evaluation_slices"]),
        model_name=d["model_name"],
        keep_versions=d["keep_versions"],
        beam_args=tuple(d["beam_args"]), source=d["source"])
