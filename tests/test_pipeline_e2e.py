"""End to end: the real TFX pipeline on the taxi data with LocalDagRunner (small step counts).

One module-scoped run feeds every test here; the last test reruns the pipeline and checks that
TFX's cache makes the rerun reuse every component.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from headwise import config as config_lib
from headwise import contract
from headwise import examples as examples_lib
from pipeline import local_runner

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
TRAIN_STEPS, EVAL_STEPS = 300, 20
COMPONENTS = {"CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "DataValidationGate", "Transform", "Trainer", "latest_blessed_model_resolver",
              "Evaluator", "InfraCheck", "Pusher"}


@pytest.fixture(scope="module")
def cfg():
    return config_lib.load(TAXI)


@pytest.fixture(scope="module")
def first_run(cfg, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("outputs"))
    summary = local_runner.run(cfg, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS)
    return out, summary


def test_every_component_executed(first_run):
    _, summary = first_run
    assert set(summary.executions) == COMPONENTS
    assert set(summary.executions.values()) == {"COMPLETE"}, summary.executions


def test_evaluator_reports_every_head(first_run, cfg):
    _, summary = first_run
    eval_rows = None
    for head in cfg.heads:
        result = summary.head(head.name)
        assert set(result.metrics) == set(head.metrics), (head.name, result.metrics)
        assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
        assert result.example_count and result.example_count > 1000
        if head.name == "big_tipper":
            eval_rows = result.example_count
    # trip_seconds has a few missing labels in the CSV: they are masked, not imputed.
    assert summary.head("trip_seconds").example_count < eval_rows
    assert summary.head("fare").example_count == eval_rows
    # Sanity of the numbers themselves: probabilities and errors in plausible ranges.
    assert 0.5 < summary.head("big_tipper").metrics["auc"] <= 1.0
    assert 0.0 < summary.head("fare").metrics["mae"] < 11.5  # fare's own std is ~11.5


def test_blessed_and_pushed_in_tf_serving_layout(first_run, cfg):
    out, summary = first_run
    assert summary.blessed is True, summary.table()
    assert summary.pushed, summary.table()
    versions = glob.glob(os.path.join(out, "serving", cfg.model_name, "*", "saved_model.pb"))
    assert len(versions) == 1, versions
    version_dir = os.path.dirname(versions[0])
    assert os.path.basename(version_dir).isdigit()  # TF Serving loads numeric versions only
    assert os.path.realpath(summary.pushed_path) == os.path.realpath(version_dir)
    table = summary.table()
    for head in cfg.heads:
        assert head.name in table
    assert "blessed: yes" in table and version_dir in table
    # The infra check served the candidate and every call passed before the push.
    assert summary.infra_blessed is True and summary.infra_failures == [], table
    assert "serving: passed (" in table and "calls over gRPC and REST on 32 test examples" in table
    # The version holds the warm-up requests the check's server replayed, where TF Serving
    # reads them: one per call a client makes (model_info, the examples signature, plain
    # features to serving_default, each head's signature, one MultiInference), on the test
    # split's first 32 rows.
    from tensorflow_serving.apis import prediction_log_pb2

    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in
               tf.data.TFRecordDataset(os.path.join(version_dir, contract.WARMUP_FILE))]
    assert len(records) == len(cfg.heads) + 4
    plain = records[2].predict_log.request
    assert plain.model_spec.signature_name == contract.FEATURES_SIGNATURE
    assert set(plain.inputs) == {f.name for f in cfg.features}  # taxi's names are plain
    multi = records[-1].multi_inference_log.request
    assert len(multi.tasks) == len(cfg.heads) and len(multi.input.example_list.examples) == 32


def _raw_rows(cfg, n: int) -> list[dict[str, str]]:
    with open(cfg.resolve_data(), newline="") as fh:
        rows = [r for _, r in zip(range(n), csv.DictReader(fh), strict=False)]
    for r in rows:  # what a serving client has: no label columns at all
        for label in cfg.label_columns:
            del r[label]
    return rows


def test_pushed_model_answers_raw_rows_without_labels(first_run, cfg):
    _, summary = first_run
    info = examples_lib.read_model_info(summary.pushed_path)
    assert [h["name"] for h in info["heads"]] == [h.name for h in cfg.heads]
    rows = _raw_rows(cfg, 8)
    serialized = examples_lib.to_examples(rows, info["features"])
    for s in serialized:  # the examples really carry no label column
        ex = tf.train.Example.FromString(s)
        assert not set(ex.features.feature) & set(cfg.label_columns)

    model = tf.saved_model.load(summary.pushed_path)
    assert {"serving_default", "examples", "transform_features"} <= set(model.signatures)
    outputs = model.signatures["examples"](examples=tf.constant(serialized))
    assert set(outputs) == {h.name for h in cfg.heads}  # exactly one output per head
    big = outputs["big_tipper"].numpy()
    assert big.shape == (8, 1) and np.all((big >= 0) & (big <= 1))
    probs = outputs["payment_type"].numpy()
    assert probs.shape == (8, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    fare = outputs["fare"].numpy()
    assert fare.shape == (8, 1) and np.all(np.isfinite(fare))
    # Regression outputs come back in label units (dollars), not z-scores.
    assert 1.0 < float(np.median(fare)) < 60.0


def test_pushed_model_is_served_over_tf_servings_grpc_api(first_run, cfg, tmp_path, capsys):
    """`headwise serve` on the pushed model directory, `headwise predict --csv` on raw taxi rows
    (labels included in the file: ignored): the same numbers as the in-process signature."""
    from cli import main as cli
    from serving import client as client_lib
    from serving import server as server_lib

    out, summary = first_run
    running = server_lib.start(os.path.join(out, "serving", cfg.model_name))
    try:
        with open(cfg.resolve_data(), newline="") as fh:
            lines = [line for _, line in zip(range(6), fh, strict=False)]
        csv_path = tmp_path / "rows.csv"
        csv_path.write_text("".join(lines))
        rc = cli.main(["predict", "--csv", str(csv_path), "--port", str(running.port),
                       "--model-name", cfg.model_name])
        table = capsys.readouterr().out
        assert rc == 0
        assert table.splitlines()[0].split() == ["row"] + [h.name for h in cfg.heads]
        with client_lib.HeadwiseClient("127.0.0.1", running.port, cfg.model_name) as client:
            served = list(client.predict_rows(client_lib.read_rows(str(csv_path))))
            assert client.model_info()["heads"] == examples_lib.read_model_info(
                summary.pushed_path)["heads"]
    finally:
        running.stop()
    rows = _raw_rows(cfg, 5)
    info = examples_lib.read_model_info(summary.pushed_path)
    local = tf.saved_model.load(summary.pushed_path).signatures["examples"](
        examples=tf.constant(examples_lib.to_examples(rows, info["features"])))
    for i, row in enumerate(served):
        by_head = {p.head: p for p in row}
        assert by_head["fare"].value == pytest.approx(float(local["fare"][i, 0]), rel=1e-4)
        assert by_head["big_tipper"].scores["1"] == pytest.approx(
            float(local["big_tipper"][i, 0]), rel=1e-4)
        classes = cfg.head("payment_type").class_names
        assert by_head["payment_type"].label == classes[int(np.argmax(local["payment_type"][i]))]
        assert by_head["payment_type"].label in table.splitlines()[2 + i]


def test_headwise_score_matches_the_grpc_server_row_for_row(first_run, cfg, tmp_path, capsys,
                                                          monkeypatch):
    """`headwise score` on raw taxi rows (labels in the file, ignored) in several blocks: every
    head's answer equals what the gRPC server answers for the same row."""
    from cli import main as cli
    from serving import client as client_lib
    from serving import scoring
    from serving import server as server_lib

    out, _ = first_run
    with open(cfg.resolve_data(), newline="") as fh:
        lines = [line for _, line in zip(range(1001), fh, strict=False)]
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("".join(lines))
    monkeypatch.setattr(scoring, "BLOCK_ROWS", 300)
    scored = tmp_path / "scored.csv"
    base = os.path.join(out, "serving", cfg.model_name)
    rc = cli.main(["score", "--model", base, "--data", str(csv_path), "--output", str(scored),
                   "--keys", "company"])
    assert rc == 0 and "scored 1,000 rows" in capsys.readouterr().out
    with open(scored, newline="") as fh:
        got = list(csv.DictReader(fh))
    rows = client_lib.read_rows(str(csv_path))
    assert [r["company"] for r in got] == [r["company"] for r in rows]
    running = server_lib.start(base)
    try:
        with client_lib.HeadwiseClient("127.0.0.1", running.port, cfg.model_name) as client:
            served = list(client.predict_rows(rows, batch_size=128))
    finally:
        running.stop()
    assert len(got) == len(served) == 1000
    for mine, theirs in zip(got, served, strict=True):
        for p in theirs:
            if p.value is not None:
                assert float(mine[p.head]) == pytest.approx(p.value, rel=1e-4, abs=1e-4)
                continue
            assert mine[p.head] == p.label
            for c, score in p.scores.items():
                assert float(mine[f"{p.head}_p_{c}"]) == pytest.approx(score, abs=1e-5)


def _repository_copy(tmp_path) -> str:
    """The repository's packages and README, copied: code_version reads them from here."""
    from pipeline import imports as imports_lib

    for package in imports_lib.PACKAGES:
        shutil.copytree(os.path.join(ROOT, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    return str(tmp_path)


def _edit(root: str, rel: str, old: str, new: str) -> None:
    path = os.path.join(root, rel)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    assert old in text, (rel, old)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text.replace(old, new, 1))


def test_rerun_reuses_the_cache_and_does_not_push_twice(first_run, cfg, tmp_path, monkeypatch):
    """Nothing that Transform and Trainer run changed: the command line's help text, the README
    and a serving module were edited (in a copy of the repository that keys the cache)."""
    from pipeline import imports as imports_lib

    out, first = first_run
    copy = _repository_copy(tmp_path)
    _edit(copy, "cli/main.py", "run the whole pipeline locally", "run every component locally")
    _edit(copy, "README.md", "# headwise", "# headwise (edited)")
    _edit(copy, "serving/server.py", '"""', '"""Edited. ')
    monkeypatch.setattr(imports_lib, "ROOT", copy)
    again = local_runner.run(cfg, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS, quiet=True)
    assert again.run_id != first.run_id
    cached = {c for c, state in again.executions.items() if state == "CACHED"}
    # Nothing changed: data, schema, Transform and Trainer are reused from ML Metadata.
    assert {"CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
            "Transform", "Trainer"} <= cached, again.executions
    # The gate's drift baseline did change: the first run had no served model to compare with.
    assert again.executions["DataValidationGate"] == "COMPLETE"
    # The Evaluator runs again because it now has a baseline: the first run's blessed model.
    # The infra check does not depend on its verdict (as TFX's InfraValidator): reused.
    assert again.executions["Evaluator"] == "COMPLETE"
    assert again.executions["InfraCheck"] == "CACHED"
    assert again.blessed is True and again.pushed and again.already_served, again.table()
    assert again.pushed_path == first.pushed_path
    versions = glob.glob(os.path.join(out, "serving", cfg.model_name, "*", "saved_model.pb"))
    assert len(versions) == 1, "the same model must not be pushed as a second version"


def test_editing_the_training_code_reruns_transform_and_trainer(first_run, cfg, tmp_path,
                                                                monkeypatch):
    """A change to a module that run_fn imports (trainer/heads.py) misses the cache. The gate is
    made impossible so that this run pushes nothing for the tests after it."""
    from pipeline import imports as imports_lib

    out, _ = first_run
    served = _served_files(out, cfg)
    copy = _repository_copy(tmp_path)
    _edit(copy, "trainer/heads.py", '"""', '"""Edited. ')
    monkeypatch.setattr(imports_lib, "ROOT", copy)
    strict = _with_threshold(cfg, "fare", "mae", max=0.01)
    summary = local_runner.run(strict, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                               quiet=True)
    assert summary.executions["Transform"] == "COMPLETE", summary.executions
    assert summary.executions["Trainer"] == "COMPLETE", summary.executions
    assert summary.executions["CsvExampleGen"] == "CACHED", summary.executions
    assert summary.blessed is False and not summary.pushed
    assert _served_files(out, cfg) == served


# --- Gating: one failing head blocks the push; a new model is compared with the last blessed --

def _with_threshold(cfg, head_name, metric, **bounds):
    import dataclasses

    heads = tuple(
        dataclasses.replace(h, thresholds={**h.thresholds, metric: config_lib.Threshold(**bounds)})
        if h.name == head_name else h for h in cfg.heads)
    return dataclasses.replace(cfg, heads=heads)


def test_one_impossible_threshold_blocks_the_push_and_names_head_metric_gate(first_run, cfg,
                                                                            without_tfma):
    out, first = first_run
    served = _served_files(out, cfg)
    strict = _with_threshold(cfg, "fare", "mae", max=0.01)
    without_tfma()
    summary = local_runner.run(strict, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                               quiet=True)
    # Only the gate changed: data, Transform, Trainer and the infra check come from the cache.
    assert summary.executions["Trainer"] == "CACHED"
    assert summary.executions["InfraCheck"] == "CACHED"
    assert summary.executions["Evaluator"] == "COMPLETE"
    assert summary.blessed is False and not summary.pushed
    assert summary.head("fare").failures and not summary.head("fare").passed
    assert "mae" in summary.head("fare").failures[0]
    assert "absolute threshold" in summary.head("fare").failures[0]
    assert all(summary.head(h).passed for h in ("big_tipper", "trip_seconds", "payment_type"))
    report = open(os.path.join(summary.evaluation_uri, "report", "report.md")).read()
    assert "- head `fare`: mae = " in report and "fails absolute threshold (<= 0.01" in report
    for head in cfg.heads:
        assert os.path.exists(os.path.join(summary.evaluation_uri, "report", f"{head.name}.png"))
    assert _served_files(out, cfg) == served  # the previous version is still the one served


def test_a_new_model_is_compared_with_the_last_blessed_and_pushed(first_run, cfg):
    import json

    out, first = first_run
    loose = _with_threshold(cfg, "big_tipper", "auc", min=0.5, max_regression=0.5)
    summary = local_runner.run(loose, out, train_steps=TRAIN_STEPS + 50, eval_steps=EVAL_STEPS,
                               quiet=True)
    assert summary.executions["Trainer"] == "COMPLETE"  # a new model
    with open(os.path.join(summary.evaluation_uri, "report", "gates.json")) as fh:
        gates = json.load(fh)["heads"]
    auc = next(r for r in gates["big_tipper"]["rows"] if r["metric"] == "auc")
    # The change gate had a baseline: the model pushed by the first run.
    assert auc["change"] is not None and auc["no_regression"] == "pass"
    assert summary.blessed is True and summary.pushed and not summary.already_served
    versions = sorted(glob.glob(os.path.join(out, "serving", cfg.model_name, "*",
                                             "saved_model.pb")))
    assert len(versions) == 2
    assert os.path.dirname(versions[-1]) == summary.pushed_path
    assert os.path.dirname(versions[0]) == first.pushed_path


def test_the_no_regression_gate_alone_blocks_a_worse_model(first_run, cfg, without_tfma):
    """A candidate made worse on purpose (fare without its best feature, trip_miles) against
    the blessed model: it still beats the trivial baseline by far, and no absolute bound is set,
    so only the no-regression gate can and does block it."""
    import dataclasses

    out, _ = first_run
    served = _served_files(out, cfg)
    heads = tuple(
        dataclasses.replace(h, thresholds={"mae": config_lib.Threshold(max_regression=0.2)})
        if h.name == "fare" else dataclasses.replace(h, gate=False) for h in cfg.heads)
    worse = dataclasses.replace(
        cfg, heads=heads, features=tuple(f for f in cfg.features if f.name != "trip_miles"),
        validation=dataclasses.replace(cfg.validation, skew={
            c: t for c, t in cfg.validation.skew.items() if c != "trip_miles"}))
    summary = local_runner.run(worse, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                               quiet=True)
    assert summary.executions["Trainer"] == "COMPLETE"
    assert summary.blessed is False and not summary.pushed, summary.table()
    (failure,) = summary.head("fare").failures
    assert "fails no regression (" in failure and "change <= +0.2" in failure, failure
    assert "absolute" not in failure and "beats trivial baseline" not in failure
    assert all(not summary.head(h.name).gating for h in cfg.heads if h.name != "fare")
    with open(os.path.join(summary.evaluation_uri, "report", "gates.json")) as fh:
        import json

        (mae,) = [r for r in json.load(fh)["heads"]["fare"]["rows"] if r["metric"] == "mae"]
    assert mae["change"] > 0.2 and mae["beats_baseline"] == "pass", mae
    assert _served_files(out, cfg) == served  # the blessed version is still the one served

    # A stricter no-regression gate alone: judged against the same baseline model on the
    # metrics (and changes) kept from the evaluation above, without a TFMA pass.
    without_tfma()
    strict = dataclasses.replace(worse, heads=tuple(
        dataclasses.replace(h, thresholds={"mae": config_lib.Threshold(max_regression=0.1)})
        if h.name == "fare" else h for h in worse.heads))
    again = local_runner.run(strict, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                             quiet=True)
    assert again.executions["Trainer"] == "CACHED"
    assert again.evaluation_uri != summary.evaluation_uri
    assert again.blessed is False and not again.pushed, again.table()
    (failure,) = again.head("fare").failures
    assert "fails no regression (" in failure and "change <= +0.1" in failure, failure
    with open(os.path.join(again.evaluation_uri, "report", "gates.json")) as fh:
        (kept,) = [r for r in json.load(fh)["heads"]["fare"]["rows"] if r["metric"] == "mae"]
    assert kept["change"] == mae["change"] and kept["value"] == mae["value"], (kept, mae)


# --- Data contract: damaged copies of the taxi CSV stop the run before Transform -------------

def _damaged_csv(cfg, tmp_path, damage) -> str:
    with open(cfg.resolve_data(), newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames), list(reader)
    fields = damage(rows, fields) or fields
    path = tmp_path / "damaged.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _wrong_type(rows, fields):
    # Text in an integer category: ExampleGen types the column as text, the contract says INT.
    # (Text in a numeric column stops earlier, at the pre-flight check: test_bad_inputs.)
    for i, r in enumerate(rows):
        if i % 20 == 0:
            r["trip_start_hour"] = "noon"


def _new_payment_type(rows, fields):
    for i, r in enumerate(rows):
        if i % 10 < 3:
            r["payment_type"] = "Crypto"


def _label_mostly_empty(rows, fields):
    for i, r in enumerate(rows):
        if i % 10:
            r["big_tipper"] = ""


def _payment_mostly_cash(rows, fields):
    for i, r in enumerate(rows):  # no unseen value: only the distribution moves
        if i % 10 < 6:
            r["payment_type"] = "Cash"


def _served_files(out, cfg):
    base = os.path.join(out, "serving", cfg.model_name)
    return sorted((os.path.relpath(os.path.join(d, f), base), os.path.getmtime(os.path.join(d, f)))
                  for d, _, files in os.walk(base) for f in files)


@pytest.mark.parametrize("damage, column, words", [
    (_wrong_type, "trip_start_hour", "INT"),
    (_new_payment_type, "payment_type", "Crypto"),
    (_label_mostly_empty, "big_tipper", "too many missing values"),
    (_payment_mostly_cash, "payment_type", "drift against the data that trained the served"),
])
def test_damaged_data_stops_before_training_and_keeps_the_served_model(
        first_run, cfg, tmp_path, damage, column, words):
    import dataclasses

    from pipeline import summary as summary_lib

    out, _ = first_run
    served = _served_files(out, cfg)
    damaged = dataclasses.replace(cfg, data_path=_damaged_csv(cfg, tmp_path, damage))
    with pytest.raises(local_runner.PipelineRunError) as exc:
        local_runner.run(damaged, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                         quiet=True)
    assert exc.value.component == "DataValidationGate"
    message = str(exc.value)
    assert f"column '{column}'" in message and words in message, message
    ran = summary_lib.summarize(cfg, os.path.join(out, "metadata.db")).executions
    assert "Transform" not in ran and "Trainer" not in ran and "Pusher" not in ran, ran
    assert _served_files(out, cfg) == served  # the pushed model is untouched


@pytest.mark.parametrize("name", ["inf_label.csv", "huge_feature.csv"])
def test_corpus_values_stop_the_real_pipeline_at_the_gate(first_run, cfg, tmp_path, name):
    """Two cases of tests/data/bad through the whole pipeline (the rest are checked against the
    contract in test_bad_inputs): the gate stops the run, the served model is untouched."""
    import dataclasses

    from tests.test_bad_inputs import CASES, corpus_csv

    case = next(c for c in CASES if c["file"] == name)
    out, _ = first_run
    served = _served_files(out, cfg)
    damaged = dataclasses.replace(cfg, data_path=corpus_csv(case, tmp_path))
    with pytest.raises(local_runner.PipelineRunError) as exc:
        local_runner.run(damaged, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                         quiet=True)
    assert exc.value.component == "DataValidationGate"
    assert f"column '{case['column']}'" in str(exc.value) and case["words"] in str(exc.value)
    assert _served_files(out, cfg) == served


def test_a_dropped_column_is_reported_before_any_beam_job(cfg, tmp_path, capsys):
    import yaml

    from cli import main as cli

    csv_path = _damaged_csv(cfg, tmp_path, lambda rows, fields: [c for c in fields if c != "fare"])
    with open(TAXI) as fh:
        raw = yaml.safe_load(fh)
    raw["data"]["csv"] = csv_path
    raw["validation"]["schema"] = cfg.schema_path()
    config_path = tmp_path / "damaged.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    code = cli.main(["run", "--config", str(config_path), "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "'fare'" in err and csv_path in err and "not in the data" in err, err
    assert not (tmp_path / "o").exists()  # nothing was started


# --- Skew: what `headwise serve` was asked, against the training data --------------------------

def _serve_rows(out, cfg, rows):
    """Send rows to the pushed model through the built-in server with request logging on."""
    from serving import client as client_lib
    from serving import server as server_lib

    paths = local_runner.paths_for(cfg, out)
    running = server_lib.start(paths.serving_dir, request_log_dir=paths.request_log_dir)
    try:
        with client_lib.HeadwiseClient("127.0.0.1", running.port, cfg.model_name) as client:
            assert len(list(client.predict_rows(rows))) == len(rows)
    finally:
        running.stop()


def test_requests_unlike_the_training_data_stop_the_next_run(first_run, cfg):
    """Healthy requests: the gate runs again (new request logs) and passes. Then requests from
    another distribution: the next run stops at the gate, naming the skewed columns."""
    out, _ = first_run
    rows = _raw_rows(cfg, 15_002)
    healthy, skewed = rows[1::20], [dict(r, company="Zoom Cabs", trip_start_hour="3")
                                    for r in rows[2::20]]
    _serve_rows(out, cfg, healthy)  # 751 rows as clients send them: no labels
    summary = local_runner.run(cfg, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS,
                               quiet=True)
    assert summary.executions["DataValidationGate"] == "COMPLETE"  # the logs are new
    assert summary.executions["Transform"] == "CACHED"

    served = _served_files(out, cfg)
    _serve_rows(out, cfg, skewed)
    with pytest.raises(local_runner.PipelineRunError) as exc:
        local_runner.run(cfg, out, train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS, quiet=True)
    assert exc.value.component == "DataValidationGate"
    message = str(exc.value)
    for column in ("company", "trip_start_hour"):
        assert (f"column '{column}': skew against the {len(healthy) + len(skewed):,} examples "
                "the served model was asked") in message, message
    assert "column 'trip_miles'" not in message  # unchanged in the requests
    assert _served_files(out, cfg) == served
