"""The Evaluator's trivial baselines and report sample (components.evaluator): computed by a Beam
pipeline once per examples and heads, and read back when only a gate (or the model) changed."""

from __future__ import annotations

import copy
import os

import apache_beam as beam
import pytest
import tensorflow as tf
import yaml

from components import evaluator
from headwise import config as config_lib

CONFIG = os.path.join(os.path.dirname(__file__), "..", "pipeline", "configs", "penguins.yaml")


def _cfg(edit=None) -> config_lib.PipelineConfig:
    with open(CONFIG, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if edit:
        edit(raw)
    return config_lib.from_dict(copy.deepcopy(raw), source=CONFIG)


def _examples(root) -> str:
    """Split-train: 30 Adelie, 10 Gentoo; Split-test: 10 rows. Body mass 3,000 + 10 i."""
    for split, rows in (("train", 40), ("test", 10)):
        os.makedirs(root / f"Split-{split}")
        with tf.io.TFRecordWriter(str(root / f"Split-{split}" / "data.tfrecord")) as w:
            for i in range(rows):
                f = {"species": [b"Adelie" if i % 4 else b"Gentoo"],
                     "sex": [b"female" if i % 2 else b"male"]}
                ex = tf.train.Example(features=tf.train.Features(feature={
                    **{k: tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
                       for k, v in f.items()},
                    "body_mass_g": tf.train.Feature(
                        float_list=tf.train.FloatList(value=[3000.0 + 10 * i]))}))
                w.write(ex.SerializeToString())
    return str(root)


def _must_not_run(*_):
    raise AssertionError("the baselines were computed again")


def test_a_gate_change_reads_the_baselines_back(tmp_path, monkeypatch):
    examples, cache = _examples(tmp_path / "examples"), str(tmp_path / "cache")
    computed, sample = evaluator.baselines_and_sample(beam.Pipeline, examples, _cfg(), cache)
    # the majority class of the training split, scored on the test split; the training mean
    assert computed["species"]["accuracy"] == pytest.approx(0.7)
    assert computed["body_mass"]["mae"] == pytest.approx(abs(3195 - 3045))
    assert len(sample) == 10
    assert os.listdir(cache) == [evaluator.baselines_key(examples, _cfg())]  # no temporary left

    def gate(raw):
        raw["heads"][0]["thresholds"] = {"accuracy": {"min": 0.9}}

    monkeypatch.setattr(evaluator, "compute_baselines", _must_not_run)
    again = evaluator.baselines_and_sample(beam.Pipeline, examples, _cfg(gate), cache)
    assert again[0] == computed and sorted(again[1]) == sorted(sample)


def test_other_examples_or_labels_compute_them_again(tmp_path, monkeypatch):
    examples, cache = _examples(tmp_path / "examples"), str(tmp_path / "cache")
    evaluator.baselines_and_sample(beam.Pipeline, examples, _cfg(), cache)

    def label(raw):
        raw["heads"][1]["positive"] = "male"

    key = evaluator.baselines_key(examples, _cfg())
    assert evaluator.baselines_key(examples, _cfg(label)) != key
    assert evaluator.baselines_key(examples + "2", _cfg()) != key
    other = _examples(tmp_path / "other")  # the next ExampleGen run's output
    evaluator.baselines_and_sample(beam.Pipeline, other, _cfg(), cache)
    assert os.listdir(cache) == [evaluator.baselines_key(other, _cfg())]  # the old one is gone
    monkeypatch.setattr(evaluator, "compute_baselines", _must_not_run)
    with pytest.raises(AssertionError, match="computed again"):
        evaluator.baselines_and_sample(beam.Pipeline, examples, _cfg(label), cache)
