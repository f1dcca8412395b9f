"""Per-head gates: trivial baselines by formula (the task registry), thresholds in the
EvalConfig (components.gates), verdicts read back from TFMA's ValidationResult, and the gate
registry (headwise.gates) as the one place a gate is written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow_model_analysis as tfma

from components import gates
from components import report as report_lib
from headwise import config as config_lib
from headwise import gates as gate_registry
from headwise import tasks


def head(**kw):
    base = {"name": "h", "label": "y", "task": "regression"}
    cfg = config_lib.from_dict({"name": "t", "data": {"csv": "x.csv"}, "features": {"x": "numeric"},
                                "heads": [{**base, **kw}]})
    return cfg.heads[0]


def baseline(h, train, evals):
    return {m: v for m, v in tasks.of(h).baseline(h, train, evals).items() if m in h.metrics}


def test_regression_baseline_predicts_the_training_mean():
    h = head(metrics=["mae", "rmse", "mse"])
    train = [1.0, 2.0, 3.0, None, 6.0]  # mean of present values: 3.0
    evals = [0.0, 3.0, 7.0, None]
    got = baseline(h, train, evals)
    err = np.array([0.0, 3.0, 7.0]) - 3.0
    assert got == pytest.approx({"mae": np.abs(err).mean(), "mse": (err ** 2).mean(),
                                 "rmse": math.sqrt((err ** 2).mean())})


def test_binary_baseline_is_the_majority_class():
    h = head(task="binary", metrics=["auc", "accuracy", "precision", "recall", "pr_auc"])
    train = [0, 0, 0, 1]  # prior 0.25: always "no"
    evals = [0, 1, 1, 0, 0]
    got = baseline(h, train, evals)
    # Precision and recall of flagging at random at the training rate (0.25): precision is the
    # test positive rate, recall that flagging rate.
    assert got == pytest.approx({"auc": 0.5, "accuracy": 3 / 5, "precision": 2 / 5,
                                 "recall": 0.25, "pr_auc": 2 / 5})


def test_multiclass_baseline_ranks_classes_by_training_frequency():
    h = head(task="multiclass", classes=["a", "b"], other_class="o",
             metrics=["accuracy", "top2_accuracy"])
    train = ["b", "b", "a", "z", "z", "z"]  # "z" -> other: o (3), b (2), a (1)
    evals = ["a", "b", "q", "o", None]  # indices 0, 1, 2, 2
    got = baseline(h, train, evals)
    assert got == pytest.approx({"accuracy": 2 / 4, "top2_accuracy": 3 / 4})


def test_multilabel_baseline_uses_class_priors():
    h = head(task="multilabel", classes=["u", "v"], metrics=["auc", "accuracy"])
    train = ["u", "u|v", "u", None]  # priors u=1.0, v=1/3 -> predict {u}
    evals = ["u", "v"]  # y = [[1,0],[0,1]], pred = [1,0] each
    got = baseline(h, train, evals)
    assert got == pytest.approx({"auc": 0.5, "accuracy": 2 / 4})


def test_baseline_bound_takes_the_margin_from_the_room_left():
    auc, mae = tasks.get("binary").metric("auc"), tasks.get("regression").metric("mae")
    assert gates.baseline_bound(0.5, 0.02, auc) == pytest.approx(0.51)  # 0.5 + 0.02 * 0.5
    assert gates.baseline_bound(0.9, 0.1, auc) == pytest.approx(0.91)  # 0.9 + 0.1 * 0.1
    assert gates.baseline_bound(10.0, 0.02, mae) == pytest.approx(9.8)  # errors: 2% less


@pytest.mark.parametrize("task, metric", [
    (t.name, m) for t in tasks.TASKS.values() for m in t.metrics])
@pytest.mark.parametrize("baseline", [0.0, 0.3, 0.5, 0.995, 1.0])
def test_every_metrics_baseline_bound_is_reachable_and_not_vacuous(task, metric, baseline):
    """For every metric of every task, any baseline value in its range, any margin: the bound
    is within the metric's range (reachable) and strictly better than the baseline unless the
    baseline is already the best value (not vacuous)."""
    m = tasks.get(task).metric(metric)
    if m.upper is None and m.higher_is_better is False:
        baseline *= 1000  # an error in label units
    for margin in (0.0, 0.01, 0.5, 0.99):
        bound = gates.baseline_bound(baseline, margin, m)
        assert (m.lower is None or bound >= m.lower) and (m.upper is None or bound <= m.upper)
        best = m.upper if m.higher_is_better else m.lower
        if margin > 0 and baseline != best:
            assert (bound > baseline) if m.higher_is_better else (bound < baseline)


def test_imbalanced_binary_labels_give_reachable_meaningful_bounds():
    """99.5% negatives: the majority class scores 0.995 accuracy; beating it by 1% of the room
    needs 0.99505, not the impossible 1.005 of a relative margin. Precision's baseline is the
    positive rate (0.005), not 0, so a model that flags nothing useful does not pass."""
    h = head(task="binary", metrics=["accuracy", "precision", "recall", "auc"])
    train = [1] * 5 + [0] * 995
    evals = [1] * 10 + [0] * 1990
    got = baseline(h, train, evals)
    assert got["accuracy"] == pytest.approx(0.995)
    assert got["precision"] == pytest.approx(0.005) and got["recall"] == pytest.approx(0.005)
    binary = tasks.get("binary")
    assert gates.baseline_bound(got["accuracy"], 0.01, binary.metric("accuracy")) == \
        pytest.approx(0.99505)
    assert 0.005 < gates.baseline_bound(got["precision"], 0.01, binary.metric("precision")) < 1


@pytest.fixture
def taxi():
    return config_lib.load("pipeline/configs/taxi.yaml")


def _threshold(spec, metric):
    mc = next(c for c in spec.metrics if json.loads(c.config or "{}").get("name") == metric)
    (t,) = mc.per_slice_thresholds
    assert list(t.slicing_specs) == [tfma.SlicingSpec()]  # gates judge the overall slice only
    return t.threshold


def test_compiled_eval_config_has_one_spec_per_head_with_its_thresholds(taxi):
    from pipeline import pipeline as pipeline_lib

    p = pipeline_lib.create_pipeline(taxi, pipeline_root="/tmp/r", data_root="/tmp/d",
                                     serving_dir="/tmp/s")
    evaluator = next(c for c in p.components if c.id == "Evaluator")
    compiled = evaluator.exec_properties["eval_config"]
    if isinstance(compiled, str):  # TFX stores proto parameters as JSON
        from tfx.utils import proto_utils

        compiled = proto_utils.json_to_proto(compiled, tfma.EvalConfig())
    specs = {tuple(s.output_names): s for s in compiled.metrics_specs if not s.HasField("binarize")}
    assert set(specs) == {(h.name,) for h in taxi.heads}
    assert dict(compiled.model_specs[0].label_keys) == {
        h.name: f"label__{h.name}" for h in taxi.heads}
    auc = _threshold(specs[("big_tipper",)], "auc")
    assert auc.value_threshold.lower_bound.value == pytest.approx(0.55)
    assert auc.change_threshold.absolute.value == pytest.approx(-0.02)
    assert auc.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    mae = _threshold(specs[("fare",)], "mae")
    assert mae.value_threshold.upper_bound.value == pytest.approx(4.0)
    # The auxiliary head is evaluated but carries no threshold.
    tips = specs[("tips",)]
    assert not any(c.per_slice_thresholds or c.HasField("threshold") for c in tips.metrics)
    assert [s.feature_keys for s in compiled.slicing_specs] == [[]]  # no slices configured
    import dataclasses

    sliced = gates.eval_config(dataclasses.replace(taxi, evaluation_slices=("trip_start_hour",)))
    assert [s.feature_keys for s in sliced.slicing_specs] == [[], ["trip_start_hour"]]


BASE = {"big_tipper": {"auc": 0.5}, "fare": {"mae": 3.0}, "trip_seconds": {"mae": 400.0},
        "payment_type": {"accuracy": 0.66}, "tips": {"mae": 1.5}}


def test_baseline_thresholds_tighten_but_never_loosen(taxi):
    config = gates.eval_config(taxi, BASE)
    specs = {tuple(s.output_names): s for s in config.metrics_specs if not s.HasField("binarize")}
    # big_tipper: the configured min 0.55 is stricter than the baseline bound 0.505: kept.
    assert _threshold(specs[("big_tipper",)], "auc").value_threshold.lower_bound.value == 0.55
    # fare: the baseline bound 3.0 * 0.99 is stricter than the configured max 4.0.
    assert _threshold(specs[("fare",)], "mae").value_threshold.upper_bound.value == \
        pytest.approx(2.97)
    assert _threshold(specs[("payment_type",)], "accuracy").value_threshold.lower_bound.value \
        == pytest.approx(0.66 + 0.01 * 0.34)
    assert not any(c.per_slice_thresholds for c in specs[("tips",)].metrics)  # not gating
    # Without baselines (what the pipeline compiles), only the configured bounds are there.
    plain = {tuple(s.output_names): s for s in gates.eval_config(taxi).metrics_specs
             if not s.HasField("binarize")}
    assert _threshold(plain[("fare",)], "mae").value_threshold.upper_bound.value == 4.0


def validation_result(*failures) -> tfma.ValidationResult:
    """A ValidationResult as TFMA writes it: failures on the overall slice."""
    result = tfma.ValidationResult(validation_ok=not failures)
    per_slice = result.metric_validations_per_slice.add()
    per_slice.slice_key.SetInParent()
    for head, metric, value, is_diff, class_id in failures:
        f = per_slice.failures.add()
        f.metric_key.name, f.metric_key.output_name, f.metric_key.is_diff = metric, head, is_diff
        if class_id is not None:
            f.metric_key.sub_key.class_id.value = class_id
        f.metric_value.double_value.value = value
    return result


def rows_for(cfg, head, values, diffs, validation):
    h = cfg.head(head)
    return gates.head_rows(h, gates.head_bounds(h, BASE[head]), values, diffs,
                           [f for f in gates.failures(validation) if f.head == head],
                           BASE[head], has_baseline_model=bool(diffs))


def test_verdicts_come_from_tfmas_failures_and_name_each_gate(taxi):
    # A change failure only: the no-regression gate alone fails.
    rows = rows_for(taxi, "big_tipper", {"auc": 0.60, "accuracy": 0.7}, {"auc": -0.05},
                    validation_result(("big_tipper", "auc", -0.05, True, None)))
    auc = next(r for r in rows if r.metric == "auc")
    assert auc.verdicts == {"absolute": "pass", "no_regression": "FAIL", "beats_baseline": "pass"}
    assert not gates.head_passed(rows)
    assert auc.failure_text() == "auc = 0.6 fails no regression (>= 0.55, change >= -0.02, " \
        ">= 0.505 (baseline))"
    # A value below both bounds: both value gates fail; no baseline model: no regression is NA.
    weak = rows_for(taxi, "big_tipper", {"auc": 0.502, "accuracy": 0.7}, {},
                    validation_result(("big_tipper", "auc", 0.502, False, None)))
    auc = next(r for r in weak if r.metric == "auc")
    assert auc.verdicts == {"absolute": "FAIL", "no_regression": "-", "beats_baseline": "FAIL"}
    # Between the baseline bound (0.505) and min (0.55): only the absolute gate fails.
    mid = rows_for(taxi, "big_tipper", {"auc": 0.52}, {},
                   validation_result(("big_tipper", "auc", 0.52, False, None)))
    assert (mid[0].verdicts["absolute"], mid[0].verdicts["beats_baseline"]) == ("FAIL", "pass")
    # accuracy is not the main metric: reported next to its baseline, not gated on it.
    acc = next(r for r in weak if r.metric == "accuracy")
    assert acc.verdicts["beats_baseline"] == "-"
    # No failure in TFMA's result: every gate that is set passes, whatever the value.
    ok = rows_for(taxi, "big_tipper", {"auc": 0.60}, {"auc": 0.01}, validation_result())
    assert gates.head_passed(ok)


def test_a_per_class_failure_fails_the_head_and_names_the_class():
    cfg = config_lib.from_dict({
        "name": "t", "data": {"csv": "x.csv"}, "features": {"x": "numeric"},
        "heads": [{"name": "tags", "label": "y", "task": "multilabel", "classes": ["u", "v"],
                   "thresholds": {"auc": {"min": 0.6}}}]})
    h = cfg.heads[0]
    validation = validation_result(("tags", "auc", 0.55, False, 1))
    rows = gates.head_rows(h, gates.head_bounds(h, {"auc": 0.5}), {"auc": 0.7}, {},
                           gates.failures(validation), {"auc": 0.5})
    assert not gates.head_passed(rows)
    (failing,) = [r for r in rows if r.failed_gates()]
    assert failing.class_name == "v" and failing.verdicts["absolute"] == "FAIL"
    assert failing.failure_text().startswith("auc (class v) = 0.55 fails absolute threshold")
    # The macro average itself passed.
    assert next(r for r in rows if r.class_name is None).verdicts["absolute"] == "pass"


class TooGood(gate_registry.Gate):
    """A made-up gate, registered by the test alone: a value above `suspect_above` is too good
    to be true (a label leaking into the inputs)."""

    name, title, column = "too_good", "not suspiciously good", "too good"
    keys = ("suspect_above",)

    def check(self, key, value):
        return "must be > 0" if value <= 0 else None

    def bound(self, target):
        above = target.settings.get("suspect_above")
        return None if above is None else gate_registry.Bound(
            upper=above, text=f"<= {above:g} (suspect)")


def test_a_new_gate_is_one_registry_entry(monkeypatch, tmp_path):
    """The seam: a gate registered here and nowhere else is parsed and validated from the
    config (and kept out of Transform's and Trainer's), sets its bound in TFMA's threshold, gets
    its verdict from TFMA's failures and its column in report.md and gates.json."""
    assert list(gate_registry.GATES) == ["absolute", "no_regression", "beats_baseline"]
    raw = {"name": "t", "data": {"csv": "x.csv"}, "features": {"x": "numeric"},
           "heads": [{"name": "k", "label": "y", "task": "binary", "metrics": ["auc"],
                      "thresholds": {"auc": {"min": 0.6, "suspect_above": 0.97}}}]}
    with monkeypatch.context() as registry:
        registry.setitem(gate_registry.GATES, TooGood.name, TooGood())
        # Config: the key is parsed, validated by its gate, round-trips, and stays out of the
        # training payload (editing it never retrains).
        cfg = config_lib.from_dict(raw)
        h = cfg.heads[0]
        assert h.thresholds["auc"] == config_lib.Threshold(min=0.6, suspect_above=0.97)
        assert h.thresholds["auc"].suspect_above == 0.97
        assert config_lib.from_json(config_lib.to_json(cfg)) == cfg
        training = json.loads(config_lib.to_json(cfg, config_lib.Scope.TRAINING))["config"]
        assert "thresholds" not in training["heads"][0]
        bad = json.loads(json.dumps(raw))
        bad["heads"][0]["thresholds"]["auc"]["suspect_above"] = 0
        with pytest.raises(config_lib.ConfigError,
                           match=r"heads\[0\] \(k\)\.thresholds\.auc\.suspect_above: must be > 0"):
            config_lib.from_dict(bad)
        # TFMA: its bound is the value threshold's upper bound, next to the other gates'.
        (spec,) = gates.eval_config(cfg, {"k": {"auc": 0.5}}).metrics_specs
        t = _threshold(spec, "auc")
        assert t.value_threshold.lower_bound.value == pytest.approx(0.6)  # min beats 0.505
        assert t.value_threshold.upper_bound.value == pytest.approx(0.97)
        # Verdicts: a value above it fails this gate alone; below, it passes.
        bounds = gates.head_bounds(h, {"auc": 0.5})
        (row,) = gates.head_rows(h, bounds, {"auc": 0.99}, {},
                                 gates.failures(validation_result(("k", "auc", 0.99, False, None))),
                                 {"auc": 0.5}, has_baseline_model=False)
        assert row.verdicts == {"absolute": "pass", "no_regression": "-",
                                "beats_baseline": "pass", "too_good": "FAIL"}
        assert row.failure_text() == ("auc = 0.99 fails not suspiciously good "
                                      "(>= 0.6, >= 0.505 (baseline), <= 0.97 (suspect))")
        (fine,) = gates.head_rows(h, bounds, {"auc": 0.8}, {}, [], {"auc": 0.5})
        assert fine.verdicts["too_good"] == "pass" and gates.head_passed([fine])
        # Report: a column of report.md and a key of each gates.json row.
        report_lib.write_report(cfg, str(tmp_path), {"k": [row]}, {"k": 100.0}, False, False,
                                {}, None)
        md = (tmp_path / "report" / "report.md").read_text()
        assert "| absolute | no regression | beats baseline | too good |" in md
        assert "| auc | 0.99 | 0.5 | >= 0.6, >= 0.505 (baseline), <= 0.97 (suspect) | - | " \
            "pass | - | pass | FAIL |" in md
        assert "- head `k`: auc = 0.99 fails not suspiciously good" in md
        written = json.loads((tmp_path / "report" / "gates.json").read_text())["heads"]["k"]
        assert written["rows"][0]["too_good"] == "FAIL" and not written["passed"]
    # The registry is as it was: the made-up key is unknown again.
    assert list(gate_registry.GATES) == ["absolute", "no_regression", "beats_baseline"]
    with pytest.raises(config_lib.ConfigError, match="unknown key.*'suspect_above'"):
        config_lib.from_dict(raw)


def test_gates_json_rows_keep_their_keys(taxi):
    """gates.json's rows, which the run summary and users read: the same keys, in the same
    order, each gate's verdict under its name."""
    rows = rows_for(taxi, "big_tipper", {"auc": 0.60, "accuracy": 0.7}, {"auc": -0.05},
                    validation_result(("big_tipper", "auc", -0.05, True, None)))
    assert list(rows[0].as_json()) == [
        "metric", "value", "baseline", "threshold", "change", "absolute", "no_regression",
        "beats_baseline", "class_name"]
    assert rows[0].as_json()["no_regression"] == "FAIL" and rows[0].as_json()["change"] == -0.05


def test_each_model_is_evaluated_through_its_own_examples_signature(tmp_path):
    """A blessed baseline exported before `examples` existed has its tf.Example signature as
    serving_default; the Evaluator reads each model's from its description, else TFMA would
    call a signature the baseline lacks."""
    from components.evaluator import with_model_signatures
    from headwise import examples as examples_lib

    def model(name: str, signature: str) -> str:
        info = tmp_path / name / "Format-Serving" / examples_lib.MODEL_INFO
        info.parent.mkdir(parents=True)
        info.write_text(json.dumps({"signature": signature}))
        return str(tmp_path / name)

    cfg = config_lib.from_dict({"name": "t", "data": {"csv": "x.csv"},
                                "features": {"x": "numeric"},
                                "heads": [{"name": "y", "label": "y", "task": "regression"}]})
    config = gates.eval_config(cfg)
    assert [s.signature_name for s in config.model_specs] == ["examples"]
    assert with_model_signatures(config, model("new", "examples"), None) == config
    both = with_model_signatures(config, model("cand", "examples"), model("old", "serving_default"))
    assert [(s.name, s.is_baseline, s.signature_name) for s in both.model_specs] == [
        ("candidate", False, "examples"), ("baseline", True, "serving_default")]
    assert both.model_specs[1].label_keys == config.model_specs[0].label_keys
    assert len(config.model_specs) == 1  # the given config is left as it was


def test_label_rows_read_what_label_values_reads_from_each_record():
    """The baselines' labels, parsed a batch at a time by TensorFlow, are each record's own
    reading (first value, None where missing or empty, text decoded), for every value type,
    a column missing from every record, and a column holding two value types."""
    from tensorflow.core.example import example_pb2

    from components.evaluator import label_rows, label_values

    def record(**values) -> bytes:
        ex = example_pb2.Example()
        for name, v in values.items():
            f = ex.features.feature[name]
            if v == "empty":
                f.int64_list.SetInParent()
            elif isinstance(v, list):
                f.bytes_list.value.extend(v)
            elif isinstance(v, bytes):
                f.bytes_list.value.append(v)
            elif isinstance(v, int):
                f.int64_list.value.append(v)
            else:
                f.float_list.value.append(v)
        return ex.SerializeToString()

    columns = ["n", "x", "s", "never"]
    records = [record(x=0.1), record(n=3, x=2.5, s="é".encode()), record(n="empty", s=b""),
               record(n=-2**62, s=[b"first", b"second"], x=float("nan")), record()]
    got = label_rows(records, columns)
    assert got == [label_values(r, columns) for r in records][:3] + got[3:]  # NaN != NaN
    assert got[1] == {"n": 3, "x": 2.5, "s": "é", "never": None}
    assert got[3]["n"] == -2**62 and got[3]["s"] == "first" and got[3]["x"] != got[3]["x"]
    assert got[2] == {"n": None, "x": None, "s": "", "never": None}
    assert got[4] == dict.fromkeys(columns)
    assert got[0]["x"] == label_values(records[0], columns)["x"]  # the float32 value
    mixed = [record(n=1), record(n=b"one")]  # one column, two value types
    assert label_rows(mixed, ["n"]) == [{"n": 1}, {"n": "one"}]
    assert label_rows([], columns) == []
