"""The one typed, validated boundary through which the config crosses into TFX.

TFX hands user code plain JSON-able values (Transform's and Trainer's `custom_config`, the
Evaluator's exec properties). The config travels under the key `HEADS_CONFIG_KEY` as
`to_json(cfg, scope)`:

    {"format": 1, "scope": "training" | "full", "source": <config file>,
     "config": <the YAML form, to_raw(cfg, scope)>}

and comes back with `from_json`, which runs the same validation as loading the YAML file, so a
corrupt or hand-edited payload fails with a ConfigError that names the field. The YAML form is
built from the dataclasses (not from a stored copy of the file), so configs made in code
(`single_task`, `dataclasses.replace`) cross the boundary too. See headwise.config.scope for what
each scope holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from headwise.config.data import DataConfig, raw_data
from headwise.config.features import raw_feature
from headwise.config.fields import ConfigError, Fields
from headwise.config.heads import raw_head
from headwise.config.model import raw_model, raw_trainer
from headwise.config.pipeline import PipelineConfig, from_dict
from headwise.config.scope import TRAINING_EXCLUDED, Scope
from headwise.config.validation import raw_validation

HEADS_CONFIG_KEY = "heads_config"
FORMAT = 1
PAYLOAD = f"{HEADS_CONFIG_KEY} payload"  # how messages name the JSON form
# The one mapping of the YAML form whose order means something: the model's input order. Every
# other mapping's keys are sorted in the JSON.
ORDERED = ("features",)


def _found(raw: Any, path: str) -> Iterator[tuple[dict, str, str]]:
    """(mapping, key, concrete path) for every place that `path` (`a.b`, `heads[*].x`) names
    in raw."""
    nodes: list[tuple[Any, str]] = [(raw, "")]
    *parents, last = path.split(".")
    for part in parents:
        key, each = (part[:-3], True) if part.endswith("[*]") else (part, False)
        found = []
        for node, where in nodes:
            if isinstance(node, Mapping) and key in node:
                value, where = node[key], f"{where}.{key}" if where else key
                if each:
                    if isinstance(value, list):
                        found.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
                else:
                    found.append((value, where))
        nodes = found
    for node, where in nodes:
        if isinstance(node, dict) and last in node:
            yield node, last, f"{where}.{last}" if where else last


def to_raw(cfg: PipelineConfig, scope: Scope = Scope.FULL) -> dict[str, Any]:
    """The YAML form of cfg (what `from_dict` reads), restricted to `scope`: a TRAINING raw form
    leaves out the keys in TRAINING_EXCLUDED. `from_dict(to_raw(cfg), cfg.source) == cfg`."""
    scope = Scope(scope)
    if not cfg.scope.covers(scope):
        raise ConfigError(f"{cfg.source}: this config was passed to TFX with {cfg.scope.value} "
                          f"scope; it has no {scope.value}-scope form (its gates are defaults)")
    raw: dict[str, Any] = {
        "name": cfg.name,
        "data": raw_data(DataConfig(cfg.data_format, cfg.data_path, cfg.split, cfg.split_on,
                                       cfg.missing_values, cfg.images_dir)),
        "features": {f.name: raw_feature(f) for f in cfg.features},
        "heads": [raw_head(h) for h in cfg.heads],
        "model": raw_model(cfg.model),
        "trainer": raw_trainer(cfg.trainer),
        "serving": {"model_name": cfg.model_name, "keep_versions": cfg.keep_versions,
                    "infra_check": {"examples": cfg.infra_check_examples,
                                    "timeout_seconds": cfg.infra_check_timeout_s}},
        "validation": raw_validation(cfg.validation),
        "evaluation": {"slices": list(cfg.evaluation_slices)},
        "beam_args": list(cfg.beam_args),
    }
    if cfg.scoring_data is not None:
        raw["scoring"] = {"data": cfg.scoring_data, "output": cfg.scoring_output,
                          "keys": list(cfg.scoring_keys)}
    if scope is Scope.TRAINING:
        for path in TRAINING_EXCLUDED:
            for node, key, _ in list(_found(raw, path)):
                del node[key]
    return raw


def _validated(raw: dict[str, Any], source: str) -> PipelineConfig:
    try:
        return from_dict(raw, source=source)
    except ConfigError as e:
        raise ConfigError(f"{PAYLOAD}: {e}") from None


def to_json(cfg: PipelineConfig, scope: Scope = Scope.FULL) -> str:
    """cfg as TFX carries it: JSON of format, scope, source and the YAML form, with sorted keys
    (but for the features, which keep their order: ORDERED). The form is validated here too,
    so an invalid config built in code fails when the pipeline is built rather than inside a
    component."""
    scope = Scope(scope)
    raw = to_raw(cfg, scope)
    _validated(raw, cfg.source)
    # TFX caches Transform and Trainer on this payload: in the training scope the source is the
    # config file's name only (what their messages name), so the same file reached by another
    # path (relative, absolute, ./) reuses them.
    source = os.path.basename(cfg.source) if scope is Scope.TRAINING else cfg.source
    return json.dumps({"config": _sorted(raw), "format": FORMAT, "scope": scope.value,
                       "source": source})


def _sorted(value: Any, path: tuple[str, ...] = ()) -> Any:
    """value with the keys of every mapping sorted, but for the ORDERED ones (JSON's sort_keys
    would reorder the features, and so the model's inputs)."""
    if isinstance(value, Mapping):
        items = value.items() if path == ORDERED else sorted(value.items(),
                                                              key=lambda kv: str(kv[0]))
        return {k: _sorted(v, (*path, str(k))) for k, v in items}
    if isinstance(value, list | tuple):
        return [_sorted(v, (*path, "[]")) for v in value]
    return value


def from_json(text: str, require: Scope | None = None) -> PipelineConfig:
    """The config of a `to_json` payload, validated as when loading the YAML file; its `scope`
    says what it holds. `require`: the scope the caller needs (FULL: refuse a TRAINING payload).
    A payload that is not JSON, of an unknown format or scope, or with an invalid config is a
    ConfigError that names the field."""
    try:
        payload = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{PAYLOAD}: not valid JSON: {e}") from None
    env = Fields(PAYLOAD, "", payload, ("format", "scope", "source", "config"))
    fmt = env.get("format", int)
    if fmt != FORMAT:
        env.fail(f"unknown format {fmt!r}; this code reads format {FORMAT}", "format")
    scope = Scope(env.choice("scope", [s.value for s in Scope], what="scope"))
    source = env.get("source", str)
    raw = env.get("config", dict)
    if scope is Scope.TRAINING:
        for path, reader in TRAINING_EXCLUDED.items():
            for _, _, where in _found(raw, path):
                env.fail(f"is not part of a training-scope config (read by {reader.split(':')[0]})",
                         f"config.{where}")
    if require is not None and not scope.covers(Scope(require)):
        env.fail(f"a {scope.value}-scope config was passed where a {Scope(require).value}-scope "
                 "one is needed", "scope")
    return dataclasses.replace(_validated(raw, source), scope=scope)


def fingerprint(cfg: PipelineConfig) -> str:
    """A short hash of the config as it crosses into TFX (`to_json` at the config's scope)."""
    return hashlib.sha256(to_json(cfg, cfg.scope).encode()).hexdigest()[:16]
