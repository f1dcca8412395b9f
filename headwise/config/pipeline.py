"""The whole config: `PipelineConfig`, `from_dict` (the YAML form -> a validated config),
`load` (a file) and the checks against the data's header."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from headwise import sources
from headwise.config.data import BUCKETS, DEFAULT_MISSING_VALUES, DEFAULT_SPLIT, parse_data
from headwise.config.features import Feature, parse_features
from headwise.config.fields import NAME_RE, ConfigError, Fields, check_name
from headwise.config.heads import Head, parse_heads
from headwise.config.model import ModelConfig, TrainerConfig, parse_model, parse_trainer
from headwise.config.scope import Scope
from headwise.config.validation import ValidationConfig, parse_validation

PACKAGE_PREFIX = "package://"
TOP_KEYS = ("name", "data", "features", "heads", "model", "trainer", "serving", "beam_args",
            "validation", "evaluation", "scoring")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    name: str
    data_path: str  # as written in the config (see resolve_data)
    features: tuple[Feature, ...]
    heads: tuple[Head, ...]
    model: ModelConfig = ModelConfig()
    trainer: TrainerConfig = TrainerConfig()
    validation: ValidationConfig = ValidationConfig()
    evaluation_slices: tuple[str, ...] = ()  # columns the Evaluator also slices metrics by
    model_name: str = ""
    keep_versions: int = 5
    # The infra check before a push (components/infra_check.py): examples per request, and the
    # time limit of the whole check, the model's loading included.
    infra_check_examples: int = 32
    infra_check_timeout_s: int = 300
    # The scoring stage after a push (components/batch_scoring.py): every head's answers for
    # the rows of `scoring_data` (CSV or Parquet: a file, folder or glob) written to
    # `scoring_output` (.csv/.parquet: one file; else a folder), next to `scoring_keys`. Both
    # paths relative to the config file. None: no scoring stage.
    scoring_data: str | None = None
    scoring_output: str | None = None
    scoring_keys: tuple[str, ...] = ()
    beam_args: tuple[str, ...] = ()
    # train/validation/test shares (headwise.config.data), and the column rows are grouped by
    split: tuple[tuple[str, float], ...] = DEFAULT_SPLIT
    split_on: str | None = None
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES  # cell texts that mean "missing"
    images_dir: str | None = None  # data.images: where image columns' file names point
    data_format: str = "csv"  # the data source (headwise.sources): data.<format> in the config
    source: str = "<dict>"  # the file this was loaded from, for messages
    # What this config holds (headwise.config.scope): a TRAINING config, as Transform and Trainer
    # receive it, has defaults in place of the keys in TRAINING_EXCLUDED (gates among them).
    scope: Scope = Scope.FULL

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.label for h in self.heads))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features) + self.label_columns

    def hash_buckets(self) -> dict[str, int]:
        """ExampleGen's hash buckets per split (BUCKETS in all: whole percent)."""
        return {name: round(share * BUCKETS) for name, share in self.split}

    def head(self, name: str) -> Head:
        for h in self.heads:
            if h.name == name:
                return h
        raise KeyError(name)

    def single_task(self, head_name: str) -> PipelineConfig:
        """The same pipeline with one head only (as a main head): the single-task baseline that
        benchmarks compare the multi-head model against. Drift checks of the other heads'
        label columns go with them (drift may only name feature and label columns)."""
        head = dataclasses.replace(self.head(head_name), auxiliary=False, loss_weight=1.0)
        columns = {f.name for f in self.features} | {head.label}
        validation = dataclasses.replace(self.validation, drift={
            c: t for c, t in self.validation.drift.items() if c in columns})
        return dataclasses.replace(self, name=f"{self.name}_{head_name}", heads=(head,),
                                   validation=validation,
                                   model_name=f"{self.model_name}_{head_name}")

    def with_learned_classes(self, learned: Mapping[str, Sequence[str]]) -> PipelineConfig:
        """The config with the classes Transform learned (head -> classes, in output order)
        filled into the heads that learn them; downstream of Transform, a head's outputs are
        then named like listed classes."""
        heads = tuple(dataclasses.replace(h, classes=tuple(learned[h.name]))
                      if h.learns_classes and h.name in learned else h for h in self.heads)
        return dataclasses.replace(self, heads=heads)

    def schema_path(self) -> str | None:
        """The curated schema's path (relative paths are relative to the config file)."""
        if not self.validation.schema:
            return None
        if os.path.isabs(self.validation.schema):
            return self.validation.schema
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.source)),
                                             self.validation.schema))

    def read_schema(self) -> bytes | None:
        """The curated schema file's bytes (None: the config names none). A file that cannot be
        read is a ConfigError that says how to write it: checked before any data is read."""
        src = self.schema_path()
        if src is None:
            return None
        try:
            with open(src, "rb") as fh:
                return fh.read()
        except OSError as e:
            raise ConfigError(f"{self.source}: validation.schema: cannot read {src}: "
                              f"{e.strerror}. Generate it with: headwise schema --config "
                              f"{self.source}") from None

    def resolve_data(self) -> str:
        """The data's path (a file; for Parquet also a folder or a glob); `package://pkg/path`
        points inside an installed package."""
        return resolve_path(self.data_path, os.path.dirname(self.source))

    @property
    def image_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.type == "image")

    def resolve_images_dir(self) -> str:
        """The folder image columns name files in (data.images, relative to the config file;
        default: the CSV's folder)."""
        if self.images_dir is None:
            return os.path.dirname(os.path.abspath(self.resolve_data()))
        return self.resolve_file(self.images_dir)

    def resolve_file(self, path: str) -> str:
        """A path from the config: absolute, a URL (gs://...), package://..., or relative to the
        config file."""
        if "://" in path and not path.startswith(PACKAGE_PREFIX):
            return path
        if path.startswith(PACKAGE_PREFIX) or os.path.isabs(path):
            return resolve_path(path)
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(self.source)),
                                             path))


def resolve_path(path: str, base_dir: str = "") -> str:
    if path.startswith(PACKAGE_PREFIX):
        package, _, rel = path[len(PACKAGE_PREFIX) :].partition("/")
        import importlib.util

        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"data: package '{package}' is not installed ({path})")
        return os.path.join(list(spec.submodule_search_locations)[0], rel)
    if base_dir and not os.path.isabs(path) and not os.path.exists(path):
        return os.path.join(base_dir, path)
    return path


def from_dict(raw: Any, source: str = "<dict>", columns: Iterable[str] | None = None
              ) -> PipelineConfig:
    """Validate a parsed config in its YAML form. `columns`, when given, are the data's column
    names. (`headwise.config.boundary.to_raw` is the inverse.)"""
    top = Fields(source, "", raw, TOP_KEYS)
    name = check_name(top, "name")
    data = parse_data(top)
    features = parse_features(top)
    heads = parse_heads(top, (f.name for f in features))
    model = parse_model(top)
    trainer = parse_trainer(top)
    images = [f.name for f in features if f.type == "image"]
    if images and model.image is None:
        top.fail(f"{images[0]!r} is an image feature, which a pretrained image model reads: "
                 "set model.backbone: {application: MobileNetV2, weights: <file>|imagenet|none}",
                 f"features.{images[0]}")
    if model.image is not None and not images:
        top.fail(f"an image application ({model.image.application}) needs at least one feature "
                 "of type image", "model.backbone.application")

    s = Fields(source, "serving", top.get("serving", dict, {}),
               ("model_name", "keep_versions", "infra_check"))
    model_name = s.get("model_name", str, name)
    keep_versions = s.get("keep_versions", int, 5)
    if keep_versions < 1:
        s.fail("must be >= 1", "keep_versions")
    ic = Fields(source, "serving.infra_check", s.get("infra_check", dict, {}),
                ("examples", "timeout_seconds"))
    infra_check_examples = ic.get("examples", int, 32)
    infra_check_timeout_s = ic.get("timeout_seconds", int, 300)
    for key, value in (("examples", infra_check_examples),
                       ("timeout_seconds", infra_check_timeout_s)):
        if value < 1:
            ic.fail(f"must be >= 1, got {value}", key)
    if not NAME_RE.match(model_name):
        s.fail(f"{model_name!r} is not a valid model name", "model_name")
    sc = Fields(source, "scoring", top.get("scoring", dict, {}), ("data", "output", "keys"))
    scoring_data = sc.get("data", str, None)
    scoring_output = sc.get("output", str, None)
    scoring_keys = sc.get("keys", list, [])
    if (scoring_data is None) != (scoring_output is None):
        sc.fail("needs both `data` (the rows to score) and `output` (where their answers go)",
                "output" if scoring_output is None else "data")
    if not all(isinstance(k, str) and k for k in scoring_keys):
        sc.fail(f"expected a list of column names, got {scoring_keys!r}", "keys")
    validation = parse_validation(top, features, heads)
    ev = Fields(source, "evaluation", top.get("evaluation", dict, {}), ("slices",))
    slices = tuple(ev.get("slices", list, []))
    for c in slices:
        if not isinstance(c, str) or c in (h.label for h in heads):
            ev.fail(f"{c!r} is not a feature column to slice by", "slices")
    beam_args = top.get("beam_args", list, [])
    if not all(isinstance(a, str) and a.startswith("--") for a in beam_args):
        top.fail(f"expected a list of '--flag=value' strings, got {beam_args!r}", "beam_args")

    cfg = PipelineConfig(name=name, data_path=data.path, data_format=data.format,
                         split=data.split, split_on=data.split_on,
                         missing_values=data.missing_values, images_dir=data.images,
                         features=features, heads=heads,
                         model=model, trainer=trainer, validation=validation,
                         evaluation_slices=slices,
                         model_name=model_name,
                         keep_versions=keep_versions,
                         infra_check_examples=infra_check_examples,
                         infra_check_timeout_s=infra_check_timeout_s,
                         scoring_data=scoring_data, scoring_output=scoring_output,
                         scoring_keys=tuple(scoring_keys),
                         beam_args=tuple(beam_args), source=source)
    if columns is not None:
        check_columns(cfg, columns, data_name=data.path)
    return cfg


def check_columns(cfg: PipelineConfig, columns: Iterable[str], data_name: str) -> None:
    """Every configured feature and label column must exist in the data."""
    columns = set(columns)
    listed = f"columns: {sorted(columns)}{sources.separator_hint(columns)}"
    for f in cfg.features:
        if f.name not in columns:
            raise ConfigError(f"{cfg.source}: features.{f.name}: column {f.name!r} is not in the "
                              f"data ({data_name}); {listed}")
    if cfg.split_on is not None and cfg.split_on not in columns:
        raise ConfigError(f"{cfg.source}: data.split_on: column {cfg.split_on!r} is not in the "
                          f"data ({data_name}); {listed}")
    for c in cfg.evaluation_slices:
        if c not in columns:
            raise ConfigError(f"{cfg.source}: evaluation.slices: column {c!r} is not in the "
                              f"data ({data_name})")
    for i, h in enumerate(cfg.heads):
        if h.label not in columns:
            raise ConfigError(f"{cfg.source}: heads[{i}] ({h.name}).label: column {h.label!r} is "
                              f"not in the data ({data_name}); {listed}")


def load(path: str, check_data: bool = True) -> PipelineConfig:
    """Load and validate a heads config file; with check_data, also against the data's columns
    (headwise.sources)."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)  # safe_load: a config can never execute code
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    cfg = from_dict(raw, source=path)
    if check_data:
        data = cfg.resolve_data()
        check_columns(cfg, sources.of(cfg).columns(data), data_name=data)
        check_files(cfg)
    return cfg


def check_files(cfg: PipelineConfig) -> None:
    """The image folder and a weights file that the config names must exist."""
    if cfg.image_features:
        folder = cfg.resolve_images_dir()
        if "://" not in folder and not os.path.isdir(folder):
            where = "data.images" if cfg.images_dir is not None else \
                "data.images (not set: the CSV's folder)"
            raise ConfigError(f"{cfg.source}: {where}: no such folder: {folder}")
    image = cfg.model.image
    if image is not None and image.weights not in ("imagenet", "none"):
        path = cfg.resolve_file(image.weights)
        if "://" not in path and not os.path.isfile(path):
            raise ConfigError(f"{cfg.source}: model.backbone.weights: no such file: {path} (a "
                              f"weights file of {image.application} without its top, relative "
                              "to the config file; or 'imagenet' / 'none')")
