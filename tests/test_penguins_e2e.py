"""End to end on a second real dataset: the Palmer penguins CSV that the palmerpenguins package
ships, as pipeline/configs/penguins.yaml (a config and a schema, no code) declares it. Its
quirks are the ones a user's first file has: R's `NA` for what was not measured (numbers and
labels), a binary label stored as text (male/female), and missing labels in two heads."""

from __future__ import annotations

import csv
import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from headwise import config as config_lib
from headwise import examples as examples_lib
from pipeline import local_runner

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(ROOT, "pipeline", "configs", "penguins.yaml")


@pytest.fixture(scope="module")
def cfg():
    return config_lib.load(PENGUINS)


@pytest.fixture(scope="module")
def run(cfg, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("penguins"))
    return out, local_runner.run(cfg, out, train_steps=300)


def test_three_label_types_train_and_beat_their_baselines(run, cfg):
    _, summary = run
    assert summary.blessed is True and summary.pushed, summary.table()
    assert [h.task for h in cfg.heads] == ["multiclass", "binary", "regression"]
    for head in cfg.heads:
        r = summary.head(head.name)
        assert r.passed and all(math.isfinite(v) for v in r.metrics.values()), summary.table()
    assert summary.head("species").metrics["accuracy"] > 0.8  # the classes separate well
    assert summary.head("sex").metrics["auc"] > 0.7
    assert summary.head("body_mass").metrics["mae"] < 0.6 * summary.head("body_mass").baseline


def test_na_labels_are_missing_per_head(run, cfg):
    """11 birds have no recorded sex and 2 no body mass: each head counts only its present
    labels on the test split (species is always there)."""
    _, summary = run
    with open(cfg.resolve_data(), encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(r["sex"] == "NA" for r in rows) == 11  # the data's own markers
    n = {h: summary.head(h).example_count for h in ("species", "sex", "body_mass")}
    assert n["sex"] <= n["body_mass"] <= n["species"]
    assert 0.1 * len(rows) < n["species"] < 0.2 * len(rows)  # the 15% test split


def test_served_model_reads_raw_rows_with_na_cells(run, cfg):
    """The pushed model answers raw CSV rows, NA cells sent as missing values."""
    out, _ = run
    version = sorted(glob.glob(os.path.join(out, "serving", cfg.model_name, "[0-9]*")))[-1]
    info = examples_lib.read_model_info(version)
    with open(cfg.resolve_data(), encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:6]  # the 4th has NA in every measurement
    feats = [{k: (None if r[k] == "NA" else r[k]) for k in info["features"]} for r in rows]
    serve = tf.saved_model.load(version).signatures["examples"]
    outputs = serve(examples=tf.constant(examples_lib.to_examples(feats, info["features"])))
    species = outputs["species"].numpy()
    assert species.shape == (6, 3) and np.allclose(species.sum(axis=1), 1, atol=1e-5)
    assert np.all(np.isfinite(outputs["body_mass"].numpy()))
    sex = outputs["sex"].numpy()
    assert np.all((sex >= 0) & (sex <= 1))


def test_a_one_head_config_runs_end_to_end(cfg, tmp_path):
    """A config with one head (`headwise init --labels` with one column, the shipped randhie
    config, every single-task baseline): its model has one output, which TFMA takes out of its
    dict, so the Evaluator must name no output (it failed on every example before). Gated,
    reported, blessed and pushed like a multi-head model."""
    one = cfg.single_task("body_mass")
    summary = local_runner.run(one, str(tmp_path), train_steps=300)
    assert summary.blessed is True and summary.pushed, summary.table()
    r = summary.head("body_mass")
    assert r.passed and set(r.metrics) == {"mae", "rmse"}, summary.table()
    assert r.metrics["mae"] < 0.6 * r.baseline
    assert 0.1 * 344 < r.example_count < 0.2 * 344  # the test split's present labels
    version = sorted(glob.glob(os.path.join(str(tmp_path), "serving", one.model_name,
                                            "[0-9]*")))[-1]
    assert examples_lib.read_model_info(version)["heads"][0]["name"] == "body_mass"
