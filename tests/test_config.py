"""Heads config loading: the shipped config is valid, and every bad input fails with a message
that names the file and the field."""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import os
import re
import shutil

import pytest
import yaml

from headwise import config as config_lib
from headwise.config import HEADS_CONFIG_KEY, Scope

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")


@pytest.fixture
def raw():
    with open(TAXI) as fh:
        return yaml.safe_load(fh)


def write(tmp_path, raw, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def load_error(tmp_path, raw) -> str:
    path = write(tmp_path, raw)
    with pytest.raises(config_lib.ConfigError) as exc:
        config_lib.load(path)
    message = str(exc.value)
    assert path in message, f"message does not name the file: {message}"
    return message


def test_taxi_config_is_valid_and_matches_the_data():
    cfg = config_lib.load(TAXI)
    assert [h.name for h in cfg.heads] == [
        "big_tipper", "fare", "trip_seconds", "payment_type", "tips"]
    tasks = {h.name: h.task for h in cfg.heads}
    assert tasks == {"big_tipper": "binary", "fare": "regression", "trip_seconds": "regression",
                     "payment_type": "multiclass", "tips": "regression"}
    tips = cfg.head("tips")
    assert tips.auxiliary and tips.loss_weight == 0.2
    assert cfg.head("payment_type").class_names == ("Cash", "Credit Card", "Other")
    # No label column is an input feature.
    assert not set(cfg.label_columns) & {f.name for f in cfg.features}
    assert os.path.exists(cfg.resolve_data())




def test_unknown_task_names_the_field(tmp_path, raw):
    raw["heads"][1]["task"] = "clasification"
    msg = load_error(tmp_path, raw)
    assert "heads[1] (fare).task" in msg and "clasification" in msg and "regression" in msg


def test_duplicate_head_name(tmp_path, raw):
    raw["heads"].append(copy.deepcopy(raw["heads"][0]))
    msg = load_error(tmp_path, raw)
    assert "heads[5].name" in msg and "duplicate head name 'big_tipper'" in msg
    assert "heads[0]" in msg


def test_label_leakage_is_rejected(tmp_path, raw):
    raw["features"]["fare"] = "numeric"
    msg = load_error(tmp_path, raw)
    assert "heads[1] (fare).label" in msg and "features.fare" in msg and "leakage" in msg


def test_feature_column_not_in_data(tmp_path, raw):
    raw["features"]["trip_kilometres"] = "numeric"
    msg = load_error(tmp_path, raw)
    assert "features.trip_kilometres" in msg and "not in the data" in msg


def test_label_column_not_in_data(tmp_path, raw):
    raw["heads"][2]["label"] = "trip_minutes"
    msg = load_error(tmp_path, raw)
    assert "heads[2] (trip_seconds).label" in msg and "'trip_minutes'" in msg
    assert "not in the data" in msg


@pytest.mark.parametrize("sep, words", [(";", "18 semicolons"), ("\t", "18 tabs")])
def test_a_file_separated_by_something_else_than_commas_is_named(tmp_path, raw, sep, words):
    """A European ';' export or a TSV reads as one column: the message says what to do."""
    with open(config_lib.load(TAXI).resolve_data()) as fh:
        head = [next(fh) for _ in range(3)]
    data = tmp_path / "semi.csv"
    data.write_text("".join(line.replace(",", sep) for line in head))
    raw["data"]["csv"] = str(data)
    msg = load_error(tmp_path, raw)
    assert "not in the data" in msg and f"The header is one column holding {words}" in msg, msg
    assert f"pandas.read_csv(path, sep={sep!r})" in msg


def test_no_separator_hint_for_a_comma_separated_file(tmp_path, raw):
    raw["features"]["trip_kilometres"] = "numeric"
    assert "The header is one column" not in load_error(tmp_path, raw)


@pytest.mark.parametrize("mutate, field, words", [
    (lambda r: r["heads"][0].update(loss="mse"), "heads[0] (big_tipper).loss", "binary"),
    (lambda r: r["heads"][0].update(metrics=["mae"]), "heads[0] (big_tipper).metrics", "'mae'"),
    (lambda r: r["heads"][1].update(loss_weight=-1), "heads[1] (fare).loss_weight", ">= 0"),
    (lambda r: r["heads"][1].update(colour="red"), "heads[1].colour", "unknown key"),
    (lambda r: r["heads"][3].update(classes=["Cash"], other_class=None),
     "heads[3] (payment_type).classes", "two distinct classes"),
    (lambda r: r["heads"][0]["thresholds"].update(rmse={"max": 1}),
     "heads[0] (big_tipper).thresholds.rmse", "unknown metric"),
    (lambda r: r["heads"][0]["thresholds"].update(accuracy={"above": 1}),
     "heads[0] (big_tipper).thresholds.accuracy.above", "unknown key"),
    (lambda r: r["heads"][0]["thresholds"].update(accuracy={}),
     "heads[0] (big_tipper).thresholds.accuracy", "['min', 'max', 'max_regression']"),
    (lambda r: r["heads"][0]["thresholds"].update(accuracy={"max_regression": -0.1}),
     "heads[0] (big_tipper).thresholds.accuracy.max_regression", ">= 0"),
    (lambda r: r["features"].update(company="text"), "features.company.type", "feature type"),
    (lambda r: r["heads"][0].update(name="big tipper"), "heads[0].name", "not a valid name"),
    (lambda r: [h.update(auxiliary=True) for h in r["heads"]], "heads", "main head"),
    (lambda r: r.update(trainer={"train_steps": 0}), "trainer.train_steps", ">= 1"),
    (lambda r: r.update(trainer={"early_stopping_on": "sum"}), "trainer.early_stopping_on",
     "unknown early stopping criterion 'sum'; choose one of ['weighted', 'relative', 'geomean']"),
    (lambda r: r.update(trainer={"head_stopping": "yes"}), "trainer.head_stopping",
     "expected bool, got 'yes'"),
    (lambda r: r.update(beam_args="--runner=x"), "beam_args", "expected list"),
    (lambda r: r.pop("heads"), "heads", "is required"),
    (lambda r: r["validation"].update(drift={"nope": 0.1}), "validation.drift", "'nope'"),
    (lambda r: r["validation"].update(drift={"fare": 2}), "validation.drift", "(0, 1]"),
    (lambda r: r["validation"].update(range_slack=-1), "validation.range_slack", ">= 0"),
    (lambda r: r["validation"].update(skew={"fare": 0.1}), "validation.skew",
     "labels are not sent to the server"),
    (lambda r: r["validation"].update(skew={"company": 0}), "validation.skew", "(0, 1]"),
    (lambda r: r["validation"].update(skew_min_examples=0), "validation.skew_min_examples",
     ">= 1"),
    (lambda r: r["data"].update(split={"train": 0.8, "test": 0.2}), "data.split", "validation"),
    (lambda r: r["data"].update(split={"train": 0.8, "validation": 0.15, "test": 0.15}),
     "data.split", "add up to 1"),
    (lambda r: r["data"].update(split={"train": 0.705, "validation": 0.145, "test": 0.15}),
     "data.split", "whole number of percent"),
    (lambda r: r["data"].update(split={"train": 1, "validation": 0, "test": 0}),
     "data.split", "(0, 1)"),
    (lambda r: r["data"].update(split_on="rider_id"), "data.split_on", "'rider_id'"),
])
def test_bad_fields_are_named(tmp_path, raw, mutate, field, words):
    mutate(raw)
    msg = load_error(tmp_path, raw)
    assert f"{field}:" in msg, msg
    assert words in msg, msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="config file not found: .*nope.yaml"):
        config_lib.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "broken.yaml"
    bad.write_text("heads: [\n")
    with pytest.raises(config_lib.ConfigError, match="broken.yaml: not valid YAML"):
        config_lib.load(str(bad))


def test_yaml_cannot_execute_code(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(config_lib.ConfigError, match="evil.yaml: not valid YAML"):
        config_lib.load(str(bad))


def test_data_file_errors_name_the_file(tmp_path, raw):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    raw["data"]["csv"] = str(empty)
    with pytest.raises(config_lib.ConfigError, match=f"data file {empty} is empty"):
        config_lib.load(write(tmp_path, raw))
    raw["data"]["csv"] = str(tmp_path / "missing.csv")
    with pytest.raises(config_lib.ConfigError, match="data file not found: .*missing.csv"):
        config_lib.load(write(tmp_path, raw))


def test_unreadable_data_file_names_the_file(tmp_path, raw):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("caf\xe9,fare\n1,2\n".encode("latin-1"))
    raw["data"]["csv"] = str(bad)
    with pytest.raises(config_lib.ConfigError,
                       match=f"{bad}, line 1 \\(the header\\): not UTF-8 text"):
        config_lib.load(write(tmp_path, raw))


# --- the boundary into TFX: to_json / from_json -----------------------------------------------

SHIPPED = sorted(glob.glob(os.path.join(ROOT, "pipeline", "configs", "*.yaml")))
# Every task and every optional key (tests/synthetic.py's config, with more set).
EVERY_TASK = {
    "name": "every_task", "data": {"csv": "unused.csv"},
    "features": {"a": "numeric", "b": {"type": "categorical", "top_k": 5, "oov_buckets": 3},
                 "c": {"type": "bucketized", "buckets": 4}},
    "heads": [
        {"name": "r", "label": "y_r", "task": "regression", "loss": "mae", "normalize": False,
         "tower": [4], "thresholds": {"mae": {"max": 3, "max_regression": 0.5}}},
        {"name": "k", "label": "y_k", "task": "binary", "baseline_margin": 0.05,
         "metrics": ["pr_auc", "auc"], "gate": False},
        {"name": "m", "label": "y_m", "task": "multiclass", "classes": ["p", "q"],
         "other_class": "Z", "auxiliary": True, "loss_weight": 0.5},
        {"name": "g", "label": "y_g", "task": "multilabel", "classes": ["u", "v", "t"],
         "delimiter": ";", "metrics": ["auc", "accuracy"], "thresholds": {"auc": {"min": 0.0}}},
    ],
    "model": {"hidden_units": [8], "activation": "gelu", "batch_norm": True,
              "loss_balancing": "uncertainty"},
    "trainer": {"seed": 7, "early_stopping_patience": 0, "early_stopping_on": "geomean",
                "cycles": 2, "head_stopping": True},
    "validation": {"drift": {"y_r": 0.2, "a": 0.1}, "skew": {"b": 0.3}, "skew_min_examples": 9},
    "evaluation": {"slices": ["b"]},
    "serving": {"model_name": "every", "keep_versions": 2,
                "infra_check": {"examples": 4, "timeout_seconds": 60}},
    "scoring": {"data": "new_rows.csv", "output": "scored/new_rows.parquet", "keys": ["b"]},
}


def configs():
    """(id, config) of every shipped config and the test fixtures."""
    out = [(os.path.basename(p), config_lib.load(p, check_data=False)) for p in SHIPPED]
    return out + [("every_task", config_lib.from_dict(EVERY_TASK, source="every_task.yaml")),
                  ("every_option", config_lib.from_dict(EVERY_OPTION, source="every_opt.yaml"))]


# The options of the data and model issues: markers, label encodings, learned classes, experts.
EVERY_OPTION = {
    **EVERY_TASK, "name": "every_option",
    "data": {"csv": "unused.csv", "missing_values": ["", "-999", "?"]},
    "heads": [
        {"name": "k", "label": "y_k", "task": "binary", "positive": "yes"},
        {"name": "k2", "label": "y_m", "task": "binary", "positive": ["a", "B", 3]},
        {"name": "k3", "label": "y_n", "task": "binary", "positive_if": {"less_or_equal": 2.5}},
        {"name": "m", "label": "y_m", "task": "multiclass", "top_k": 50, "other_class": "rest"},
        {"name": "n", "label": "y_n", "task": "multiclass", "classes": [1, 2.0, "3"]},
    ],
    "model": {"hidden_units": [8], "backbone": "ple", "experts": 2, "task_experts": 1,
              "extraction_layers": 2, "loss_normalization": "present",
              "loss_balancing": "gradnorm"},
    "validation": {"drift": {"y_n": 0.2, "a": 0.1}},
}


@pytest.mark.parametrize("model, words", [
    ({"backbone": "shared_bottom", "experts": 3}, "only the mmoe and ple backbones take experts"),
    ({"backbone": "mmoe", "extraction_layers": 2}, "only the ple backbone takes"),
    ({"backbone": "moe"}, "unknown backbone 'moe'"),
    ({"backbone": "mmoe", "experts": 0}, "must be >= 1"),
    ({"loss_normalization": "mean"}, "unknown loss normalization"),
])
def test_backbone_and_loss_options_are_checked(tmp_path, raw, model, words):
    raw.setdefault("model", {}).update(model)
    assert words in load_error(tmp_path, raw)


@pytest.mark.parametrize("name, cfg", configs())
def test_json_round_trips(name, cfg):
    text = config_lib.to_json(cfg)
    back = config_lib.from_json(text)
    assert back == cfg and back.scope is Scope.FULL
    assert [f.name for f in back.features] == [f.name for f in cfg.features]  # the input order
    assert config_lib.from_dict(config_lib.to_raw(cfg, Scope.FULL), source=cfg.source) == cfg
    assert config_lib.to_json(back) == text
    assert config_lib.fingerprint(back) == config_lib.fingerprint(cfg)
    payload = json.loads(text)
    assert (payload["format"], payload["scope"], payload["source"]) == (1, "full", cfg.source)
    # A training payload reads back to a training config whose training payload is the same.
    training = config_lib.from_json(config_lib.to_json(cfg, Scope.TRAINING))
    assert training.scope is Scope.TRAINING
    assert (training.features, training.model, training.trainer) == (
        cfg.features, cfg.model, cfg.trainer)
    assert config_lib.to_json(training, Scope.TRAINING) == config_lib.to_json(cfg, Scope.TRAINING)
    with pytest.raises(config_lib.ConfigError, match="training scope"):
        config_lib.to_json(training)  # its gates are defaults: it has no full form


def test_configs_built_in_code_round_trip():
    """Benchmarks build configs with single_task and dataclasses.replace: the payload comes
    from the dataclasses, not from the file."""
    cfg = config_lib.load(TAXI)
    variants = [cfg.single_task(h.name) for h in cfg.heads]
    variants.append(dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, loss_balancing="uncertainty"),
        trainer=dataclasses.replace(cfg.trainer, seed=3, early_stopping_patience=0),
        heads=tuple(dataclasses.replace(h, name=f"{h.name}_x") for h in cfg.heads)))
    for variant in variants:
        assert variant != cfg
        assert config_lib.from_json(config_lib.to_json(variant)) == variant
    single = config_lib.from_json(config_lib.to_json(cfg.single_task("fare")))
    assert [h.name for h in single.heads] == ["fare"] and single.model_name == "taxi_fare"
    bad = dataclasses.replace(cfg, heads=tuple(dataclasses.replace(h, task="clasify")
                                               for h in cfg.heads))
    with pytest.raises(config_lib.ConfigError, match=r"heads\[0\] \(big_tipper\)\.task"):
        config_lib.to_json(bad)  # an invalid config fails when the pipeline is built


def _replace_head(cfg, name, **changes):
    return dataclasses.replace(cfg, heads=tuple(
        dataclasses.replace(h, **changes) if h.name == name else h for h in cfg.heads))


def _validation(cfg, **changes):
    return dataclasses.replace(cfg, validation=dataclasses.replace(cfg.validation, **changes))


def test_a_threshold_holds_the_gate_registrys_keys():
    """A metric's `thresholds` entry takes the gate registry's keys (headwise.gates), read by key
    or as an attribute; it is immutable, equal by value and pickles whole (Beam ships the
    config to its workers)."""
    import pickle

    from headwise import gates

    assert gates.threshold_keys() == ("min", "max", "max_regression")
    t = config_lib.Threshold(min=0.5, max_regression=0.0)
    assert dict(t) == {"min": 0.5, "max_regression": 0.0}
    assert (t.min, t.max, t.max_regression) == (0.5, None, 0.0)
    assert t == config_lib.Threshold({"max_regression": 0.0, "min": 0.5, "max": None})
    assert t != config_lib.Threshold(min=0.5)
    assert pickle.loads(pickle.dumps(t)) == t and copy.deepcopy(t) == t
    assert hash(t) == hash(config_lib.Threshold(max_regression=0.0, min=0.5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.min = 1.0
    with pytest.raises(TypeError, match=r"unknown threshold key\(s\) \['above'\]"):
        config_lib.Threshold(above=1.0)
    with pytest.raises(AttributeError):
        _ = t.above


def test_gates_are_not_in_the_training_payload():
    """Editing a gate must not change Transform's or Trainer's inputs (TFX would retrain)."""
    cfg = config_lib.load(TAXI)
    training = config_lib.to_json(cfg, Scope.TRAINING)
    gate_edits = [
        _replace_head(cfg, "big_tipper", thresholds={
            "auc": config_lib.Threshold(min=0.9)}),
        _replace_head(cfg, "fare", thresholds={}),
        _replace_head(cfg, "fare", gate=False),
        _replace_head(cfg, "big_tipper", baseline_margin=0.2),
        _validation(cfg, drift={"fare": 0.5}),
        _validation(cfg, skew={}, skew_min_examples=10),
        _validation(cfg, missing_slack=0.5, range_slack=1.0, schema=None),
        dataclasses.replace(cfg, evaluation_slices=("trip_start_hour",)),
        dataclasses.replace(cfg, keep_versions=1, model_name="other"),
        dataclasses.replace(cfg, beam_args=("--direct_num_workers=2",)),
    ]
    for edited in gate_edits:
        assert edited != cfg
        assert config_lib.to_json(edited, Scope.TRAINING) == training
        assert config_lib.to_json(edited) != config_lib.to_json(cfg)  # the Evaluator sees it
    training_edits = [
        _replace_head(cfg, "tips", loss_weight=0.5),
        _replace_head(cfg, "fare", loss="mse"),
        _replace_head(cfg, "payment_type", classes=("Cash",)),
        _replace_head(cfg, "fare", tower=(8,)),
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, hidden_units=(16,))),
        dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, seed=1)),
        dataclasses.replace(cfg, features=cfg.features[:-1]),
        dataclasses.replace(cfg, features=tuple(reversed(cfg.features))),  # the input order
        dataclasses.replace(cfg, name="taxi2"),
    ]
    for edited in training_edits:
        assert config_lib.to_json(edited, Scope.TRAINING) != training


def test_every_training_excluded_key_is_left_out():
    """TRAINING_EXCLUDED names keys that exist, and the training form holds none of them."""
    cfg = config_lib.from_dict(EVERY_TASK, source="every_task.yaml")
    full = config_lib.to_raw(cfg, Scope.FULL)
    training = config_lib.to_raw(cfg, Scope.TRAINING)
    for path in config_lib.TRAINING_EXCLUDED:
        top, _, key = path.partition(".")
        if top == "heads[*]":
            assert all(key in h for h in full["heads"]), path
            assert not any(key in h for h in training["heads"]), path
        else:
            assert path in full and path not in training, path
    assert set(full) - set(training) == {p for p in config_lib.TRAINING_EXCLUDED if "." not in p}


# PipelineConfig/Head fields that only the keys in TRAINING_EXCLUDED set.
EXCLUDED_FIELDS = {"heads[*].thresholds": ("thresholds",), "heads[*].gate": ("gate",),
                   "heads[*].baseline_margin": ("baseline_margin",),
                   "validation": ("validation",), "evaluation": ("evaluation_slices",),
                   "serving": ("model_name", "keep_versions", "infra_check_examples",
                               "infra_check_timeout_s"), "beam_args": ("beam_args",),
                   "scoring": ("scoring_data", "scoring_output", "scoring_keys")}


def test_trainer_code_reads_no_training_excluded_field():
    """Transform and Trainer get a training-scope config, whose excluded fields are defaults."""
    assert set(EXCLUDED_FIELDS) == set(config_lib.TRAINING_EXCLUDED)
    fields = [f for names in EXCLUDED_FIELDS.values() for f in names]
    pattern = re.compile(r"\.(" + "|".join(fields) + r")\b")
    for path in sorted(glob.glob(os.path.join(ROOT, "trainer", "*.py"))):
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                assert not pattern.search(line), f"{path}:{n} reads {line.strip()}"


def _payload(cfg, scope=Scope.FULL, **changes):
    payload = json.loads(config_lib.to_json(cfg, scope))
    payload.update(changes)
    return payload


@pytest.mark.parametrize("edit, field, words", [
    (lambda p: p["config"]["heads"][1].update(task="clasify"), "heads[1] (fare).task",
     "unknown task 'clasify'"),
    (lambda p: p["config"]["heads"][1].update(loss_weight=-1), "heads[1] (fare).loss_weight",
     ">= 0"),
    (lambda p: p["config"]["features"]["company"].update(oov_buckets=0),
     "features.company.oov_buckets", ">= 1"),
    (lambda p: p["config"]["features"]["company"].update(top_k=250_000),
     "features.company.top_k", "between 1 and 200,000"),
    (lambda p: p["config"]["trainer"].update(batch_size="128"), "trainer.batch_size",
     "expected int"),
    (lambda p: p["config"].update(data_path="x.csv"), "data_path", "unknown key"),
    (lambda p: p["config"].pop("heads"), "heads", "is required"),
    (lambda p: p.update(format=2), "format", "unknown format 2"),
    (lambda p: p.update(scope="gates"), "scope", "unknown scope 'gates'"),
    (lambda p: p.pop("source"), "source", "is required"),
    (lambda p: p.update(extra=1), "extra", "unknown key"),
])
def test_a_bad_payload_names_the_field(edit, field, words):
    payload = _payload(config_lib.load(TAXI))
    edit(payload)
    with pytest.raises(config_lib.ConfigError) as exc:
        config_lib.from_json(json.dumps(payload))
    msg = str(exc.value)
    assert msg.startswith(f"{HEADS_CONFIG_KEY} payload: "), msg
    assert f"{field}:" in msg and words in msg, msg


def test_a_payload_must_be_json_of_the_declared_scope():
    cfg = config_lib.load(TAXI)
    old_form = {"name": "taxi", "data_path": cfg.data_path}  # not JSON text at all
    for text in ("{not json", json.dumps([1]), old_form):
        with pytest.raises(config_lib.ConfigError, match=f"{HEADS_CONFIG_KEY} payload: "):
            config_lib.from_json(text)
    # A training payload that carries a gate is refused (the gates would look set but be lost).
    training = _payload(cfg, Scope.TRAINING)
    training["config"]["heads"][0]["thresholds"] = {"auc": {"min": 0.5}}
    with pytest.raises(config_lib.ConfigError,
                       match=r"config\.heads\[0\]\.thresholds: is not part of a training"):
        config_lib.from_json(json.dumps(training))
    # Code that needs the gates can require the full scope.
    text = config_lib.to_json(cfg, Scope.TRAINING)
    assert config_lib.from_json(text, require=Scope.TRAINING).scope is Scope.TRAINING
    with pytest.raises(config_lib.ConfigError, match="scope: a training-scope config"):
        config_lib.from_json(text, require=Scope.FULL)
    assert config_lib.from_json(config_lib.to_json(cfg), require=Scope.TRAINING) == cfg


def test_from_dict_reads_only_the_yaml_form():
    raw = json.loads(config_lib.to_json(config_lib.load(TAXI)))["config"]
    for key in ("data_path", "model_name", "keep_versions", "source", "evaluation_slices"):
        with pytest.raises(config_lib.ConfigError, match=f"unknown key.*'{key}'"):
            config_lib.from_dict({**raw, key: "x"})


def test_code_version_covers_exactly_what_transform_and_trainer_import(tmp_path):
    """The fingerprint that keys TFX's cache for Transform and Trainer follows their imports:
    the command line, serving, a bottom-layer module they do not import and the README leave it
    as it is; their own modules, the config they import, and a new module once imported
    change it."""
    from pipeline import imports as imports_lib
    from pipeline import pipeline as pipeline_lib

    for package in imports_lib.PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    root = str(tmp_path)
    before = pipeline_lib.code_version(root)
    assert before == pipeline_lib.code_version()  # the project's own packages, copied
    for rel in ("cli/main.py", "serving/rest.py", "headwise/datasets.py", "headwise/parity.py",
                "components/report.py", "README.md"):
        path = tmp_path / rel
        path.write_text(path.read_text() + "\n# edited\n")
    (tmp_path / "trainer" / "unused.py").write_text("X = 1\n")
    assert pipeline_lib.code_version(root) == before
    versions = {before}
    for rel in ("trainer/heads.py", "trainer/run.py", "headwise/config/heads.py",
                "headwise/tasks.py", "headwise/config/__init__.py"):
        path = tmp_path / rel
        path.write_text(path.read_text() + "\n# edited\n")
        assert pipeline_lib.code_version(root) not in versions, rel
        versions.add(pipeline_lib.code_version(root))
    run = tmp_path / "trainer" / "run.py"
    run.write_text(run.read_text() + "\nfrom trainer import unused  # noqa\n")
    imported = pipeline_lib.code_version(root)
    assert imported not in versions
    (tmp_path / "trainer" / "unused.py").write_text("X = 2\n")
    assert pipeline_lib.code_version(root) != imported


def test_three_splits_by_default_and_as_configured(tmp_path, raw):
    cfg = config_lib.load(TAXI)
    assert cfg.hash_buckets() == {"train": 70, "validation": 15, "test": 15}
    assert cfg.split_on is None
    raw["data"].update(split={"train": 0.6, "validation": 0.2, "test": 0.2},
                       split_on="pickup_community_area")
    cfg = config_lib.load(write(tmp_path, raw, "split.yaml"))
    assert cfg.hash_buckets() == {"train": 60, "validation": 20, "test": 20}
    assert cfg.split_on == "pickup_community_area"
    assert config_lib.from_json(config_lib.to_json(cfg)) == cfg


def test_pipeline_splits_examples_three_ways_and_keeps_test_for_the_evaluator():
    import json as json_lib

    from pipeline import pipeline as pipeline_lib

    cfg = config_lib.load(TAXI)
    p = pipeline_lib.create_pipeline(cfg, pipeline_root="/tmp/r", data_root="/tmp/d",
                                     serving_dir="/tmp/s")
    by_id = {c.id: c for c in p.components}
    splits = by_id["CsvExampleGen"].exec_properties["output_config"]
    assert [s["name"] for s in json_lib.loads(splits)["split_config"]["splits"]] == [
        "train", "validation", "test"]
    trainer = by_id["Trainer"].exec_properties
    assert json_lib.loads(trainer["train_args"])["splits"] == ["train"]
    assert json_lib.loads(trainer["eval_args"])["splits"] == ["validation"]
    assert json_lib.loads(by_id["Evaluator"].exec_properties["example_splits"]) == ["test"]


def test_the_infra_check_settings_are_read_and_checked():
    raw = json.loads(config_lib.to_json(config_lib.load(TAXI)))["config"]
    cfg = config_lib.from_dict({**raw, "serving": {"infra_check": {"examples": 8}}})
    assert (cfg.infra_check_examples, cfg.infra_check_timeout_s) == (8, 300)
    with pytest.raises(config_lib.ConfigError,
                       match=r"serving\.infra_check\.timeout_seconds: must be >= 1, got 0"):
        config_lib.from_dict({**raw, "serving": {"infra_check": {"timeout_seconds": 0}}})
    with pytest.raises(config_lib.ConfigError, match=r"serving\.infra_check.*unknown key"):
        config_lib.from_dict({**raw, "serving": {"infra_check": {"example": 8}}})


def test_the_scoring_stage_needs_its_data_and_output(tmp_path):
    raw = json.loads(config_lib.to_json(config_lib.load(TAXI)))["config"]
    assert config_lib.from_dict(raw).scoring_data is None  # no section: no stage
    cfg = config_lib.from_dict({**raw, "scoring": {"data": "new.csv", "output": "s.parquet"}},
                               source=str(tmp_path / "c.yaml"))
    assert cfg.resolve_file(cfg.scoring_output) == str(tmp_path / "s.parquet")
    assert config_lib.from_json(config_lib.to_json(cfg)) == cfg
    with pytest.raises(config_lib.ConfigError, match=r"scoring\.output: needs both `data`"):
        config_lib.from_dict({**raw, "scoring": {"data": "new.csv"}})
    with pytest.raises(config_lib.ConfigError, match=r"scoring\.keys: expected a list"):
        config_lib.from_dict({**raw, "scoring": {"data": "a.csv", "output": "b.csv",
                                                 "keys": [1]}})


def test_the_same_config_file_by_another_path_keeps_transform_and_trainer_cached():
    """TFX caches Transform and Trainer on the training payload: the config file reached by a
    relative, an absolute or a ./ path gives the same payload (the file's name as its source);
    the full payload keeps the path as given."""
    relative = os.path.relpath(TAXI)
    spellings = [TAXI, os.path.abspath(TAXI), relative, os.path.join(".", relative)]
    payloads = {config_lib.to_json(config_lib.load(p), Scope.TRAINING) for p in spellings}
    assert len(payloads) == 1
    assert json.loads(payloads.pop())["source"] == os.path.basename(TAXI)
    assert json.loads(config_lib.to_json(config_lib.load(relative), Scope.FULL))[
        "source"] == relative
