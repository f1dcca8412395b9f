"""Transform + export on a real tf.Transform run over synthetic rows: label encoding per task,
statistics learned in Transform, and the SavedModel's signatures after save -> load."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from headwise import contract
from headwise import examples as examples_lib
from tests import synthetic
from trainer import export as export_lib
from trainer import heads as heads_lib
from trainer import model as model_lib

N = synthetic.N
CFG = synthetic.CFG
SPEC = synthetic.SPEC
TAGS = synthetic.TAGS


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("transform"))
    return synthetic.transform(out)


def test_labels_are_encoded_per_task_with_missing_weighted_out(transformed):
    rows, _, data = transformed
    assert len(data) == N
    for raw, t in zip(rows, data, strict=True):
        present = bool(raw["y_r"])
        assert t[heads_lib.weight_key("r")] == float(present)
        assert t[heads_lib.label_key("r")] == pytest.approx(raw["y_r"][0] if present else 0.0,
                                                            rel=1e-6)
        assert t[heads_lib.label_key("k")] == float(raw["y_k"][0])
        assert t[heads_lib.label_key("m")] == {"p": 0, "q": 1, "w": 2}[raw["y_m"][0]]
        assert t[heads_lib.weight_key("m")] == 1.0
        expected_tags = [0.0, 0.0, 0.0]
        for tag in (raw["y_g"][0].split("|") if raw["y_g"] else []):
            expected_tags["uvt".index(tag.strip())] = 1.0
        assert t[heads_lib.label_key("g")] == expected_tags
        assert t[heads_lib.weight_key("g")] == float(bool(raw["y_g"]))
        assert 0 <= t["c"] <= 4  # 4 quantile buckets, id 4 would mean missing
        # `a` is numeric with the default encoding: its quantile position in [0, 1], the
        # median (0.5) when missing, and a missing indicator.
        assert t[contract.presence_key("a")] == float(bool(raw["a"]))
        assert 0.0 <= t["a"] <= 1.0
        if not raw["a"]:
            assert t["a"] == pytest.approx(0.5, abs=1e-6)


def test_regression_stats_are_learned_from_present_labels_only(transformed):
    """Head r has the `log` target: its statistics are those of log(1 + y)."""
    rows, tft_output, _ = transformed
    present = np.log1p(np.array([r["y_r"][0] for r in rows if r["y_r"]]))
    stats = model_lib.regression_stats(CFG, tft_output)
    assert stats["r"]["mean"] == pytest.approx(present.mean(), rel=1e-4)
    assert stats["r"]["std"] == pytest.approx(present.std(), rel=1e-3)


@pytest.fixture(scope="module")
def exported(transformed, tmp_path_factory):
    rows, tft_output, data = transformed
    export_dir = str(tmp_path_factory.mktemp("export") / "model")
    expected = synthetic.train_and_export(tft_output, data, export_dir)
    serving_rows = [{k: (v[0] if v else None) for k, v in r.items()} for r in rows]
    info = examples_lib.read_model_info(export_dir)
    serialized = tf.constant(examples_lib.to_examples(serving_rows, info["features"]))
    return export_dir, expected, serialized, info


def test_examples_signature_round_trips_names_and_values(exported):
    export_dir, expected, serialized, info = exported
    loaded = tf.saved_model.load(export_dir)
    assert set(loaded.signatures) == {"serving_default", "examples", "transform_features",
                                      "regress_r", "classify_k", "classify_m", "classify_g",
                                      "model_info"}
    described = json.loads(loaded.signatures["model_info"]()["json"].numpy())
    assert described == examples_lib.read_model_info(export_dir)
    assert (info["signature"], info["input"]) == ("examples", "examples")
    sig = loaded.signatures["examples"]
    assert list(sig.structured_input_signature[1]) == ["examples"]
    out = sig(examples=serialized)
    assert set(out) == {"r", "k", "m", "g"}  # exactly one output per head, named by the head
    assert out["g"].shape == (N, 3)
    for head in ("r", "k", "m", "g"):
        np.testing.assert_allclose(out[head].numpy(), expected[head], rtol=1e-4, atol=1e-5)
    # Regression comes back in label units (the labels are ~100 +- 10), not as a z-score.
    assert 50 < float(np.median(out["r"])) < 150


def test_classify_and_regress_signatures_match_tf_serving_contract(exported):
    export_dir, expected, serialized, info = exported
    loaded = tf.saved_model.load(export_dir)
    reg = loaded.signatures["regress_r"](inputs=serialized)
    assert set(reg) == {"outputs"} and reg["outputs"].shape == (N,)
    np.testing.assert_allclose(reg["outputs"].numpy(), expected["r"][:, 0], rtol=1e-4)
    cls = loaded.signatures["classify_m"](inputs=serialized)
    assert set(cls) == {"classes", "scores"}
    assert cls["classes"].numpy()[0].tolist() == [b"p", b"q", b"Z"]
    np.testing.assert_allclose(cls["scores"].numpy(), expected["m"], rtol=1e-4, atol=1e-6)
    binary = loaded.signatures["classify_k"](inputs=serialized)
    assert binary["classes"].numpy()[0].tolist() == [b"0", b"1"]
    np.testing.assert_allclose(binary["scores"].numpy()[:, 1], expected["k"][:, 0], rtol=1e-4)
    np.testing.assert_allclose(binary["scores"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    # TF Serving's Classify/Regress APIs dispatch on the signature's method name.
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as fh:
        sm.ParseFromString(fh.read())
    methods = {k: v.method_name for k, v in sm.meta_graphs[0].signature_def.items()}
    assert methods["classify_k"] == methods["classify_m"] == "tensorflow/serving/classify"
    assert methods["regress_r"] == "tensorflow/serving/regress"
    assert methods["serving_default"] == methods["examples"] == "tensorflow/serving/predict"
    multi = loaded.signatures["classify_g"](inputs=serialized)
    assert multi["classes"].numpy()[0].tolist() == [b"u", b"v", b"t"]
    np.testing.assert_allclose(multi["scores"].numpy(), expected["g"], rtol=1e-4, atol=1e-6)
    assert methods["classify_g"] == "tensorflow/serving/classify"
    # TF Serving's MultiInference needs every task's signature to read the same input tensor.
    inputs = {k: [t.name for t in v.inputs.values()]
              for k, v in sm.meta_graphs[0].signature_def.items()
              if v.inputs and k != "serving_default"}
    assert len({name for names in inputs.values() for name in names}) == 1, inputs
    assert [(h["name"], h["signature"]) for h in info["heads"]] == [
        ("r", "regress_r"), ("k", "classify_k"), ("m", "classify_m"), ("g", "classify_g")]
    assert info["features"] == {"a": "float32", "b": "string", "c": "float32"}


def plain_columns(rows: list[dict]) -> dict[str, list]:
    """The synthetic rows as the features signature's plain columns: NaN or "" where missing."""
    return {"a": [r["a"][0] if r["a"] else math.nan for r in rows],
            "b": [r["b"][0] if r["b"] else "" for r in rows],
            "c": [r["c"][0] if r["c"] else math.nan for r in rows]}


def test_serving_default_takes_plain_columns_and_answers_as_the_example_path(
        exported, transformed):
    """serving_default, the signature a request that names none reaches, takes the raw
    features as plain tensors: what a REST client sends as JSON."""
    export_dir, expected, serialized, info = exported
    rows = transformed[0]
    assert any(not r["a"] for r in rows)  # missing values go through the plain path too
    loaded = tf.saved_model.load(export_dir)
    sig = loaded.signatures["serving_default"]
    assert info["features_signature"] == {"name": "serving_default", "inputs": {
        "a": {"input": "a", "dtype": "float32"}, "b": {"input": "b", "dtype": "string"},
        "c": {"input": "c", "dtype": "float32"}}}
    columns = plain_columns(rows)
    out = sig(a=tf.constant(columns["a"], tf.float32), b=tf.constant(columns["b"]),
              c=tf.constant(columns["c"], tf.float32))
    by_example = loaded.signatures["examples"](examples=serialized)
    assert set(out) == {"r", "k", "m", "g"}
    for head in out:
        np.testing.assert_allclose(out[head].numpy(), by_example[head].numpy(), rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_allclose(out[head].numpy(), expected[head], rtol=1e-4, atol=1e-5)
    # The SignatureDef TF Serving reads: one float/string [batch] input per feature column.
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as fh:
        sm.ParseFromString(fh.read())
    sig_def = sm.meta_graphs[0].signature_def["serving_default"]
    assert sig_def.method_name == "tensorflow/serving/predict"
    assert {k: (tf.as_dtype(v.dtype).name, [d.size for d in v.tensor_shape.dim])
            for k, v in sig_def.inputs.items()} == {
        "a": ("float32", [-1]), "b": ("string", [-1]), "c": ("float32", [-1])}
    assert set(sig_def.outputs) == {"r", "k", "m", "g"}


@pytest.mark.parametrize("spec", [
    tf.io.VarLenFeature(tf.float32), tf.io.VarLenFeature(tf.int64),
    tf.io.VarLenFeature(tf.string), tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
    tf.io.FixedLenFeature([1], tf.int64, default_value=[7]),
    tf.io.FixedLenFeature([], tf.string, default_value="dflt")])
def test_plain_values_parse_as_tf_examples_of_the_same_rows_do(spec):
    if spec.dtype == tf.string:
        rows = ["x", "", " ?  ", " y ", "NA"]
        plain = tf.constant(rows)
    else:
        rows = [1.0, math.nan, 3.0, -2.0, 0.0]
        plain = tf.constant(rows, tf.float64 if spec.dtype == tf.int64 else tf.float32)

    def example(value):
        if spec.dtype == tf.string:
            stripped = value.strip()
            if stripped in ("", "?"):
                return tf.train.Example().SerializeToString()
            feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif math.isnan(value):
            return tf.train.Example().SerializeToString()
        elif spec.dtype == tf.int64:
            feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        else:
            feature = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        return tf.train.Example(features=tf.train.Features(
            feature={"x": feature})).SerializeToString()

    want = tf.io.parse_example(tf.constant([example(v) for v in rows]), {"x": spec})["x"]
    got = export_lib.plain_to_parsed("x", plain, spec, ["?"])
    if isinstance(spec, tf.io.VarLenFeature):
        assert isinstance(got, tf.SparseTensor)
        assert got.indices.numpy().tolist() == want.indices.numpy().tolist()
        assert got.values.numpy().tolist() == want.values.numpy().tolist()
        assert got.dense_shape.numpy().tolist() == want.dense_shape.numpy().tolist()
        assert got.values.dtype == want.values.dtype
    else:
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.numpy().tolist() == want.numpy().tolist()


def test_plain_values_are_refused_where_a_tf_example_could_not_hold_them():
    whole = tf.io.VarLenFeature(tf.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match="'n' takes whole numbers"):
        export_lib.plain_to_parsed("n", tf.constant([1.0, 2.5], tf.float64), whole, [])
    with pytest.raises(tf.errors.InvalidArgumentError, match="'n' takes whole numbers"):
        export_lib.plain_to_parsed("n", tf.constant([math.inf], tf.float64), whole, [])
    required = tf.io.FixedLenFeature([], tf.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="'r' is required"):
        export_lib.plain_to_parsed("r", tf.constant([1.0, math.nan]), required, [])
    empty = export_lib.plain_to_parsed("e", tf.constant([math.nan, math.nan]),
                                       tf.io.VarLenFeature(tf.float32), [])
    assert empty.dense_shape.numpy().tolist() == [2, 0]


def test_features_inputs_are_names_tensorflow_takes():
    assert contract.features_input("trip_miles") == "trip_miles"
    odd = contract.features_input("Body Mass (g)")
    assert odd.startswith("f_Body_Mass_g_") and odd != contract.features_input("Body Mass g")
    assert contract.features_input("2nd").startswith("f_2nd_")
    # `examples` is the serialized-examples input's name; a column of that name gets another
    assert contract.features_input("examples").startswith("f_examples_")


def _evaluate(export_dir: str, cfg, rows: list[dict], tmp_path):
    """TFMA with the EvalConfig generated from `cfg` on an exported model, over the synthetic
    rows as serialized examples: (metric values, changes, example counts, failed gates as
    (head, metric), the served `examples` signature's outputs, the rows as plain values)."""
    import tensorflow_model_analysis as tfma

    from components import gates
    from components.evaluator import _metric_values

    flat = [{k: (v[0] if v else None) for k, v in r.items()} for r in rows]
    serialized = examples_lib.to_examples(flat, {k: v.dtype.name for k, v in SPEC.items()})
    data = str(tmp_path / "eval.tfrecord")
    with tf.io.TFRecordWriter(data) as w:
        for ex in serialized:
            w.write(ex)
    out = str(tmp_path / "eval")
    config = gates.eval_config(cfg)
    tfma.run_model_analysis(
        eval_shared_model=tfma.default_eval_shared_model(export_dir, eval_config=config),
        eval_config=config, data_location=data, output_path=out)
    values, diffs, _, counts = _metric_values(out, cfg)
    failed = gates.failures(tfma.load_validation_result(out), gates.output_names(cfg))
    outputs = tf.saved_model.load(export_dir).signatures["examples"](
        examples=tf.constant(serialized))
    return values, diffs, counts, [(f.head, f.metric) for f in failed], outputs, flat


def _regression_errors(outputs, flat: list[dict]) -> np.ndarray:
    """Head r's served value minus its label per row (NaN where the label is missing)."""
    return outputs["r"].numpy()[:, 0] - np.array(
        [np.nan if r["y_r"] is None else r["y_r"] for r in flat], float)


def _macro_auc(outputs, flat: list[dict]) -> float:
    """sklearn's macro AUC of multilabel head g's served scores, over rows with a label."""
    from sklearn.metrics import roc_auc_score

    from headwise import tasks

    g = CFG.head("g")
    present = [i for i, r in enumerate(flat) if r["y_g"] is not None]
    y = np.array([tasks.of(g).encode(g, flat[i]["y_g"]) for i in present])
    return roc_auc_score(y, outputs["g"].numpy()[present], average="macro")


def test_evaluator_config_evaluates_every_head_of_the_exported_model(exported, transformed,
                                                                     tmp_path):
    """TFMA with the EvalConfig generated from the heads config, on the exported model."""
    from headwise import tasks

    rows = transformed[0]
    values, diffs, counts, _, outputs, flat = _evaluate(exported[0], CFG, rows, tmp_path)
    for h in CFG.heads:
        assert set(h.metrics) <= set(values[h.name]), (h.name, values[h.name])
        assert all(np.isfinite(values[h.name][m]) for m in h.metrics), values[h.name]
    assert diffs == {h.name: {} for h in CFG.heads}  # no baseline model: no changes
    # Masked labels are counted out, per head.
    assert counts["r"] == sum(1 for r in rows if r["y_r"])
    assert counts["g"] == sum(1 for r in rows if r["y_g"])
    assert counts["k"] == N
    # TFMA's numbers are the model's: the same metrics recomputed from the served signature's
    # outputs on the same examples (TFMA's AUC is a 10,000-threshold approximation).
    assert values["g"]["auc"] == pytest.approx(_macro_auc(outputs, flat), abs=2e-3)
    err = _regression_errors(outputs, flat)
    assert values["r"]["mae"] == pytest.approx(np.nanmean(np.abs(err)), rel=1e-4)
    assert values["r"]["mse"] == pytest.approx(np.nanmean(err ** 2), rel=1e-4)
    assert values["r"]["rmse"] == pytest.approx(np.sqrt(np.nanmean(err ** 2)), rel=1e-4)
    # Multiclass accuracy and top-2 accuracy (TFMA-native, as top-k recall) over the examples
    # whose label is present, against the argmax / the two highest scores.
    m = CFG.head("m")
    scores = outputs["m"].numpy()
    present = [i for i, r in enumerate(flat) if r["y_m"] is not None]
    y = np.array([tasks.of(m).encode(m, flat[i]["y_m"]) for i in present])
    top2 = np.argsort(-scores[present], axis=1)[:, :2]
    assert values["m"]["accuracy"] == pytest.approx(
        np.mean(scores[present].argmax(axis=1) == y), abs=1e-6)
    assert values["m"]["top2_accuracy"] == pytest.approx(
        np.mean((top2 == y[:, None]).any(axis=1)), abs=1e-6)


def _one_head_evaluation(transformed, tmp_path, head: dict):
    """`_evaluate` on a model with the synthetic features and this one head, trained on the
    synthetic rows."""
    from headwise import config as config_lib

    rows, tft_output, data = transformed
    cfg = config_lib.from_dict({
        "name": "one", "data": {"csv": "unused.csv"},
        "features": {"a": "numeric", "b": "categorical",
                     "c": {"type": "bucketized", "buckets": 4}},
        "heads": [head], "model": {"hidden_units": [8]}})
    export_dir = str(tmp_path / "model")
    synthetic.train_and_export(tft_output, data, export_dir, cfg=cfg)
    return _evaluate(export_dir, cfg, rows, tmp_path)


def test_the_evaluator_config_evaluates_and_gates_a_one_head_model(transformed, tmp_path):
    """A single-task config's model has one output, which TFMA takes out of its dict: with the
    multi-head config's output names and label dicts, TFMA failed on every example ("expected
    dict for 'r'"). The head's metrics are the served outputs', and its failed gate is named."""
    values, _, counts, failed, outputs, flat = _one_head_evaluation(transformed, tmp_path, {
        "name": "r", "label": "y_r", "task": "regression", "loss": "mse", "target": "log",
        "metrics": ["mae"], "thresholds": {"mae": {"max": 1e-3}}})
    err = _regression_errors(outputs, flat)
    assert values["r"]["mae"] == pytest.approx(np.nanmean(np.abs(err)), rel=1e-4)
    assert counts["r"] == sum(1 for r in flat if r["y_r"] is not None)
    assert failed == [("r", "mae")]


def test_a_one_head_multilabel_model_is_evaluated_per_class(transformed, tmp_path):
    """The per-class path (each class binarized, then their macro average) without an output
    name: the macro AUC is the served scores', the gate on it names the head."""
    head = {"name": "g", "label": "y_g", "task": "multilabel", "classes": ["u", "v", "t"],
            "metrics": ["auc"], "thresholds": {"auc": {"min": 0.9999}}}
    values, _, counts, failed, outputs, flat = _one_head_evaluation(transformed, tmp_path, head)
    assert values["g"]["auc"] == pytest.approx(_macro_auc(outputs, flat), abs=2e-3)
    assert counts["g"] == sum(1 for r in flat if r["y_g"] is not None)
    assert ("g", "auc") in failed and {h for h, _ in failed} == {"g"}


@pytest.mark.parametrize("model_cfg", [
    {"backbone": "ple", "experts": 2, "task_experts": 1, "extraction_layers": 2},
    {"backbone": "mmoe", "experts": 2, "loss_balancing": "gradnorm"},
])
def test_an_expert_backbone_exports_and_serves_unchanged(transformed, tmp_path, model_cfg):
    """PLE / MMoE (one gated mixture per head; the latter trained with GradNorm's own train
    step and state) behind the same signatures: the served outputs equal the model's own
    predictions."""
    import dataclasses

    rows, tft_output, data = transformed
    cfg = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, **model_cfg))
    export_dir = str(tmp_path / model_cfg["backbone"])
    expected = synthetic.train_and_export(tft_output, data, export_dir, epochs=1, cfg=cfg)
    info = examples_lib.read_model_info(export_dir)
    serving_rows = [{k: (v[0] if v else None) for k, v in r.items()} for r in rows]
    out = tf.saved_model.load(export_dir).signatures["examples"](
        examples=tf.constant(examples_lib.to_examples(serving_rows, info["features"])))
    for head in expected:
        np.testing.assert_allclose(out[head].numpy(), expected[head], rtol=1e-5, atol=1e-6)


def test_a_model_whose_head_stopped_shaping_the_backbone_exports_and_serves_unchanged(
        transformed, tmp_path):
    """trainer.head_stopping: a head whose switch closed after the first epoch (as
    HeadStopping closes it) is exported with the others; the served outputs equal the model's
    own predictions."""
    import dataclasses

    rows, tft_output, data = transformed
    cfg = dataclasses.replace(CFG, trainer=dataclasses.replace(CFG.trainer, head_stopping=True))
    closed = []

    class CloseK(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.get_layer("k").backbone_gradient.assign(0.0)
                closed.append(float(self.model.get_layer("k").backbone_gradient.numpy()))

    export_dir = str(tmp_path / "stopped")
    expected = synthetic.train_and_export(tft_output, data, export_dir, cfg=cfg,
                                          callbacks=[CloseK()])
    assert closed == [0.0]
    info = examples_lib.read_model_info(export_dir)
    serving_rows = [{k: (v[0] if v else None) for k, v in r.items()} for r in rows]
    out = tf.saved_model.load(export_dir).signatures["examples"](
        examples=tf.constant(examples_lib.to_examples(serving_rows, info["features"])))
    assert set(expected) == {h.name for h in cfg.heads}
    for head in expected:
        np.testing.assert_allclose(out[head].numpy(), expected[head], rtol=1e-5, atol=1e-6)


def test_the_benchmarks_count_the_exported_models_trainable_parameters(exported, transformed):
    """benchmarks/multihead.py reads the parameter count from the export (its root has no
    `trainable_variables`); the count is the Keras model's, not the optimizer's slots too."""
    from benchmarks import multihead as multihead_bench

    export_dir, _, serialized, _ = exported
    _, tft_output, _ = transformed
    model = model_lib.build_model(CFG, model_lib.feature_cardinalities(CFG, tft_output),
                                  model_lib.regression_stats(CFG, tft_output))
    expected = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    params, latency_ms = multihead_bench._served(export_dir, serialized[0].numpy(), calls=3)
    assert params == expected > 0
    assert latency_ms > 0
    # The export holds the model's variables and no optimizer state (Adam's slots tripled it).
    saved = tf.train.list_variables(os.path.join(export_dir, "variables", "variables"))
    assert not [n for n, _ in saved if "optimizer" in n.lower()]
    assert sum(int(np.prod(s)) for _, s in saved) < 2 * expected
