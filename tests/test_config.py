"""Heads config loading: the shipped config is valid, and every bad input fails with a message
that names the file and the field."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from headwise import config as config_lib

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
    assert os.path.exists(cfg.resolve_data_csv())


def test_serialised_form_round_trips():
    cfg = config_lib.load(TAXI)
    assert config_lib.from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() == config_lib.from_dict(cfg.to_dict()).fingerprint()


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
    (lambda r: r["features"].update(company="text"), "features.company.type", "feature type"),
    (lambda r: r["heads"][0].update(name="big tipper"), "heads[0].name", "not a valid name"),
    (lambda r: [h.update(auxiliary=True) for h in r["heads"]], "heads", "main head"),
    (lambda r: r["trainer"].update(train_steps=0), "trainer.train_steps", ">= 1"),
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
