"""The Beam components on Beam's portable execution path: the pipeline's own ExampleGen,
StatisticsGen and Transform under the DirectRunner's `multi_processing` mode with 2 workers (each
DoFn pickled into separate worker processes, no shared memory: what Dataflow, Flink and Spark
do) write the same splits, statistics and transformed data as under `in_memory`, the mode a
local run uses. Penguins (344 rows, numbers, text, NA markers, three label types)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from headwise import config as config_lib
from headwise import contract
from tests import penguins_components

pytestmark = pytest.mark.e2e

PENGUINS = penguins_components.PENGUINS
MODES = {"in_memory": penguins_components.IN_MEMORY,
         "multi_processing": ["--direct_running_mode=multi_processing",
                              "--direct_num_workers=2"]}
SPLITS = ("train", "validation", "test")


def _records(root: str, component: str, output: str, split: str) -> list[bytes]:
    files = glob.glob(os.path.join(root, component, output, "*", f"Split-{split}", "*"))
    assert files, (component, output, split)
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _statistics(root: str, split: str):
    from tensorflow_data_validation import load_stats_binary

    [path] = glob.glob(os.path.join(root, "StatisticsGen", "statistics", "*", f"Split-{split}",
                                    "FeatureStats.pb"))
    stats = load_stats_binary(path).datasets[0]
    return stats.num_examples, {
        f.path.step[0]: (f.type, f.num_stats.common_stats.num_non_missing
                         if f.HasField("num_stats") else
                         f.string_stats.common_stats.num_non_missing,
                         round(f.num_stats.mean, 9), f.num_stats.min, f.num_stats.max,
                         f.string_stats.unique)
        for f in stats.features}


@pytest.fixture(scope="module")
def roots(penguins_in_memory, tmp_path_factory):
    return {"in_memory": penguins_in_memory,
            "multi_processing": penguins_components.run(
                str(tmp_path_factory.mktemp("multi_processing")), MODES["multi_processing"])}


@pytest.mark.parametrize("split", SPLITS)
def test_example_gen_writes_the_same_splits(roots, split):
    a, b = (_records(roots[m], "CsvExampleGen", "examples", split) for m in MODES)
    assert a and a == b


@pytest.mark.parametrize("split", SPLITS)
def test_statistics_gen_counts_the_same(roots, split):
    a, b = (_statistics(roots[m], split) for m in MODES)
    assert a[0] > 0 and a == b


def _parsed(records: list[bytes]) -> list[dict]:
    """Each example as {feature: values}, in a canonical order (Transform does not serialise
    its examples deterministically: the feature order varies)."""
    out = []
    for r in records:
        ex = tf.train.Example.FromString(r)
        row = {}
        for name, f in ex.features.feature.items():
            kind = f.WhichOneof("kind")
            row[name] = tuple(getattr(f, kind).value) if kind else ()
        out.append(row)
    return sorted(out, key=lambda row: repr(sorted(row.items())))


def test_transform_writes_only_the_trainers_splits(roots):
    """The test split is the Evaluator's, read raw through the model's own transform: Transform
    does not spend time writing it."""
    for mode in MODES:
        out = glob.glob(os.path.join(roots[mode], "Transform", "transformed_examples", "*", "*"))
        assert sorted(os.path.basename(p) for p in out) == ["Split-train", "Split-validation"]


@pytest.mark.parametrize("split", SPLITS[:2])
def test_transform_writes_the_same_features(roots, split):
    """Every analyzer (vocabularies, quantiles, means and label statistics) combined across two
    workers' partial results gives what one process gives, to float rounding: the transformed
    examples are equal."""
    a, b = (_parsed(_records(roots[m], "Transform", "transformed_examples", split))
            for m in MODES)
    assert a and len(a) == len(b)
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    bits = {contract.label_stats_key(h.name) for h in config_lib.load(PENGUINS).heads}
    for x, y in zip(a, b, strict=True):
        for name, values in x.items():
            if name in bits:  # a label's mean and std, float64 bits in int64s
                np.testing.assert_allclose(np.array(values).view(np.float64),
                                           np.array(y[name]).view(np.float64), rtol=1e-12,
                                           err_msg=name)
            elif values and isinstance(values[0], float):
                np.testing.assert_allclose(values, y[name], rtol=1e-5, atol=1e-6,
                                           err_msg=name)
            else:
                assert values == y[name], name
