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
from pipeline import local_runner
from pipeline import pipeline as pipeline_lib

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(ROOT, "pipeline", "configs", "penguins.yaml")
MODES = {"in_memory": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
         "multi_processing": ["--direct_running_mode=multi_processing",
                              "--direct_num_workers=2"]}
SPLITS = ("train", "validation", "test")


def _run(cfg, work: str, beam_args: list[str]) -> str:
    from tfx import v1 as tfx

    data_root = os.path.join(work, "data")
    local_runner.stage_data(cfg, data_root)
    example_gen = pipeline_lib.example_gen_component(cfg, data_root)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=local_runner.stage_schema(cfg, os.path.join(work, "schema")))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  schema=schema_gen.outputs["schema"])
    transform = pipeline_lib.transform_component(cfg, example_gen.outputs["examples"],
                                                 schema_gen.outputs["schema"])
    root = os.path.join(work, "root")
    p = tfx.dsl.Pipeline(
        pipeline_name="beam_modes", pipeline_root=root, enable_cache=False,
        components=[example_gen, schema_gen, statistics_gen, transform],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(work, "metadata.db")),
        beam_pipeline_args=local_runner.local_beam_args(beam_args))
    with local_runner.neutral_argv():
        tfx.orchestration.LocalDagRunner().run(p)
    return root


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
def roots(tmp_path_factory):
    cfg = config_lib.load(PENGUINS)
    return {mode: _run(cfg, str(tmp_path_factory.mktemp(mode)), args)
            for mode, args in MODES.items()}


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


@pytest.mark.parametrize("split", SPLITS)
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
