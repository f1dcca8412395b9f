"""Export the multi-head model as a SavedModel that TF Serving serves through every API.

Signatures (all but `serving_default` and `model_info` take serialized tf.Examples,
string[batch]):
  serving_default     (Predict)   the raw features as plain tensors, one input per feature column
                                  ([batch]; `contract.features_input` names it, the description's
                                  "features_signature" lists them) -> {<head>: float32[batch,
                                  units]}, one output per head: the probability (binary), class
                                  probabilities (multiclass), the value in label units
                                  (regression). REST clients send plain JSON rows and name no
                                  signature (`{"instances": [{"trip_miles": 1.2, ...}]}`), images
                                  as {"b64": ...}; a missing value is NaN (TF Serving's JSON takes
                                  the token) or an empty string. The inputs become what
                                  tf.io.parse_example makes of the same row (`plain_to_parsed`),
                                  so both paths give the same outputs.
  examples            (Predict)   input `examples`, no label columns -> serving_default's outputs
                                  for the same rows as tf.Examples (TFMA, batch scoring).
  classify_<head>     (Classify)  binary/multiclass/multilabel heads: input `inputs` ->
                                  `classes` string[batch, n] (class names), `scores` [batch, n]
                                  (multilabel: an independent probability per class).
  regress_<head>      (Regress)   regression heads: input `inputs` -> `outputs` float32[batch].
  transform_features              input `examples` with labels -> every transformed column; the
                                  Evaluator reads labels and missing-label weights from it.
  model_info          (Predict)   no input -> `json` string scalar: the model's description
                                  (feature dtypes, heads, class names), so a client needs nothing
                                  but the server to build requests and label answers.

TF2's saver writes every signature with method_name `tensorflow/serving/predict` and gives each
signature its own input placeholder. TF Serving's Classify and Regress APIs refuse the former, and
its MultiInference API refuses signatures whose input tensors differ ("Input tensor must be the
same for all Signatures."). So `save` rewrites saved_model.pb afterwards: classify_*/regress_* get
their TF Serving method names, and every signature that takes serialized examples reads one shared
placeholder. All heads can then be fetched in one MultiInference request. (TF2's loader restores
signatures from the object graph, not from these SignatureDefs, so it is unaffected.)

The names (signatures, inputs, outputs, method names) are the serving contract,
`headwise/contract.py`; which signature a head gets and its class names come from its task in
the registry, `headwise/tasks.py`.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tensorflow.core.protobuf import saved_model_pb2

from headwise import config as config_lib
from headwise import contract, tasks
from headwise import examples as examples_lib
from trainer import images as images_lib


def model_features(cfg: config_lib.PipelineConfig, transformed: dict) -> dict[str, tf.Tensor]:
    """Transformed columns [batch] -> the model's inputs [batch, 1] (a numeric feature's missing
    indicator and piecewise linear term are inputs of their own, `Feature.side_inputs`); an
    image feature's bytes -> its decoded image [batch, height, width, channels]
    (trainer.images.decode), in the input function and in every serving signature alike."""
    out = {f.name: images_lib.decode(transformed[f.name], f) if f.type == "image"
           else tf.reshape(transformed[f.name], [-1, 1]) for f in cfg.features}
    for f in cfg.features:
        for key in f.side_inputs():
            out[key] = tf.reshape(transformed[key], [-1, 1])
    return out


def make_signatures(model: keras.Model, cfg: config_lib.PipelineConfig,
                    tft_output: tft.TFTransformOutput) -> dict:
    model.tft_layer = tft_output.transform_features_layer()  # tracked: its assets are saved
    raw_spec = tft_output.raw_feature_spec()
    feature_spec = {f.name: raw_spec[f.name] for f in cfg.features}
    eval_spec = {**feature_spec, **{c: raw_spec[c] for c in cfg.label_columns}}

    def forward(raw):
        return model(model_features(cfg, model.tft_layer(raw)), training=False)

    # One traced function for the whole forward pass; every signature calls it, so the graph is
    # traced and stored once, not once per head signature.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def predict(serialized):
        return forward(tf.io.parse_example(serialized, feature_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT)])
    def serve(examples):
        outputs = predict(examples)
        return {h.name: outputs[h.name] for h in cfg.heads}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.SERVING_INPUT)])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, eval_spec))

    info_json = json.dumps(model_info(cfg, tft_output), sort_keys=True)

    @tf.function(input_signature=[])
    def describe():
        return {contract.MODEL_INFO_OUTPUT: tf.constant(info_json)}

    plain = features_inputs(cfg, raw_spec)
    columns = [f.name for f in cfg.features]
    markers = [m.strip() for m in cfg.missing_values]
    images = {f.name for f in cfg.image_features}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.as_dtype(plain[c]["dtype"]),
                                                name=plain[c]["input"]) for c in columns])
    def serve_features(*values):
        raw = {c: plain_to_parsed(c, v, feature_spec[c], () if c in images else markers)
               for c, v in zip(columns, values, strict=True)}
        outputs = forward(raw)
        return {h.name: outputs[h.name] for h in cfg.heads}

    signatures = {contract.FEATURES_SIGNATURE: serve_features,
                  contract.EXAMPLES_SIGNATURE: serve,
                  contract.TRANSFORM_FEATURES_SIGNATURE: transform_features,
                  contract.MODEL_INFO_SIGNATURE: describe}
    for head in cfg.heads:
        signatures.update(_head_signature(head, predict))
    return signatures


def features_inputs(cfg: config_lib.PipelineConfig, raw_spec: dict) -> dict[str, dict]:
    """The features signature's inputs: {column: {"input": its input's name, "dtype": its
    dtype}}, by contract.features_input and contract.FEATURES_DTYPES."""
    out, seen = {}, {}
    for f in cfg.features:
        key = contract.features_input(f.name)
        if key in seen:
            raise ValueError(f"feature columns {seen[key]!r} and {f.name!r} would both be input "
                             f"{key!r} of the {contract.FEATURES_SIGNATURE} signature; rename one")
        seen[key] = f.name
        out[f.name] = {"input": key,
                       "dtype": contract.FEATURES_DTYPES[raw_spec[f.name].dtype.name]}
    return out


def plain_to_parsed(column: str, values: tf.Tensor, spec, missing: list[str]):
    """One features-signature input [batch] -> what tf.io.parse_example gives for the column
    under `spec` when each row holds the value, or nothing where it is missing (NaN; a string
    that is empty or one of `missing` once stripped, as the clients' examples treat it)."""
    if values.dtype == tf.string:
        stripped = tf.strings.strip(values)
        present = tf.not_equal(stripped, "")
        for marker in missing:
            present = tf.logical_and(present, tf.not_equal(stripped, marker))
    else:
        present = tf.logical_not(tf.math.is_nan(values))
    if spec.dtype == tf.int64:
        whole = tf.logical_or(tf.logical_not(present), tf.logical_and(
            tf.math.is_finite(values), tf.equal(tf.math.floor(values), values)))
        check = tf.debugging.assert_equal(
            whole, True, message=f"feature {column!r} takes whole numbers (it is an int64 "
                                 "column); got a fraction or an infinity")
        with tf.control_dependencies([check]):
            values = tf.cast(tf.where(present, values, tf.zeros_like(values)), tf.int64)
    values = tf.cast(values, spec.dtype)
    if isinstance(spec, tf.io.VarLenFeature):
        rows = tf.where(present)  # [n, 1]
        return tf.SparseTensor(
            indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
            values=tf.gather_nd(values, rows),
            dense_shape=tf.stack([tf.shape(values, out_type=tf.int64)[0],
                                  tf.cast(tf.reduce_any(present), tf.int64)]))
    if isinstance(spec, tf.io.FixedLenFeature) and spec.shape in ([], [1], (), (1,)):
        if spec.default_value is None:
            check = tf.debugging.assert_equal(
                present, True, message=f"feature {column!r} is required (the schema gives it "
                                       "no default); got a missing value")
            with tf.control_dependencies([check]):
                values = tf.identity(values)
        else:
            default = tf.reshape(tf.constant(spec.default_value, spec.dtype), [])
            values = tf.where(present, values, default)
        return tf.reshape(values, [-1, *spec.shape])
    raise ValueError(f"feature {column!r}: the {contract.FEATURES_SIGNATURE} signature takes "
                     f"one value per row, and the schema's {spec} is not that")


def _head_signature(head: config_lib.Head, predict) -> dict:
    task = tasks.of(head)
    name = head.name
    if task.signature == tasks.REGRESS:
        @tf.function(input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.REGRESS_INPUTS)])
        def regress(inputs):
            return {contract.REGRESS_OUTPUTS: tf.reshape(predict(inputs)[name], [-1])}
        return {contract.regress_signature(name): regress}
    class_names = task.class_names(head)
    classes = tf.constant(class_names)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.CLASSIFY_INPUTS)])
    def classify(inputs):
        scores = task.class_scores(predict(inputs)[name], lambda parts: tf.concat(parts, axis=1))
        batch_classes = tf.tile(tf.expand_dims(classes, 0), [tf.shape(scores)[0], 1])
        return {contract.CLASSIFY_OUTPUT_CLASSES: batch_classes,
                contract.CLASSIFY_OUTPUT_SCORES: scores}
    return {contract.classify_signature(name): classify}


def model_info(cfg: config_lib.PipelineConfig, tft_output: tft.TFTransformOutput) -> dict:
    """What a client needs to query the model: input dtypes and, per head, its outputs."""
    raw_spec = tft_output.raw_feature_spec()
    heads = []
    for h in cfg.heads:
        task = tasks.of(h)
        entry = {"name": h.name, "task": h.task, "auxiliary": h.auxiliary,
                 "signature": contract.head_signature(h.name, task.signature)}
        if task.signature == tasks.CLASSIFY:
            entry["classes"] = list(task.class_names(h))
        heads.append(entry)
    return {
        "pipeline": cfg.name,
        # serialized tf.Examples: {"inputs": {<input>: [...]}} to this signature
        "signature": contract.EXAMPLES_SIGNATURE,
        "input": contract.SERVING_INPUT,
        "features": {f.name: raw_spec[f.name].dtype.name for f in cfg.features},
        # image features: the encoded file's bytes, decoded and resized in the graph
        "images": {f.name: {"size": list(f.size), "channels": f.channels}
                   for f in cfg.image_features},
        "heads": heads,
        # cell texts that mean "missing" in the training data: batch scoring reads raw files
        # with the same markers (serving.scoring)
        "missing_values": list(cfg.missing_values),
        # plain JSON features: {"instances": [{<input>: value, ...}]} to this signature (the
        # default one)
        "features_signature": {"name": contract.FEATURES_SIGNATURE,
                               "inputs": features_inputs(cfg, raw_spec)},
    }


def finalize_signatures(export_dir: str) -> None:
    """Rewrite saved_model.pb for TF Serving: Classify/Regress method names on classify_* and
    regress_*, and one shared input placeholder for every serialized-examples signature."""
    path = os.path.join(export_dir, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as fh:
        sm.ParseFromString(fh.read())
    for meta_graph in sm.meta_graphs:
        for name, sig in meta_graph.signature_def.items():
            method = contract.signature_method(name)
            if method is not None:
                sig.method_name = method
        _share_examples_input(meta_graph)
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as fh:
        fh.write(sm.SerializeToString())
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _share_examples_input(meta_graph) -> None:
    """Point every signature input that is a string[batch] placeholder of serialized examples at
    the examples signature's, and drop the placeholders nothing reads any more."""
    if contract.EXAMPLES_SIGNATURE in meta_graph.signature_def:
        examples, plain = contract.EXAMPLES_SIGNATURE, contract.FEATURES_SIGNATURE
    else:  # the layout before serving_default took plain features
        examples, plain = contract.DEFAULT_SIGNATURE, contract.LEGACY_FEATURES_SIGNATURE
    shared = meta_graph.signature_def[examples].inputs[contract.SERVING_INPUT].name
    shared_node = shared.split(":")[0]
    replaced: set[str] = set()
    for name, sig in meta_graph.signature_def.items():
        if name == plain:  # plain tensors, not serialized examples
            continue
        for info in sig.inputs.values():
            node = info.name.split(":")[0]
            if info.dtype == tf.string.as_datatype_enum and node != shared_node:
                replaced.add(node)
                info.name = shared
    kept = [n for n in meta_graph.graph_def.node if n.name not in replaced]
    for node in kept:
        for i, ref in enumerate(node.input):
            control = ref.startswith("^")
            name, sep, port = ref.lstrip("^").partition(":")
            if name in replaced:
                node.input[i] = ("^" if control else "") + shared_node + sep + port
    del meta_graph.graph_def.node[:]
    meta_graph.graph_def.node.extend(kept)


def save(model: keras.Model, cfg: config_lib.PipelineConfig,
         tft_output: tft.TFTransformOutput, export_dir: str) -> None:
    """Write the SavedModel with all signatures and the model's description for clients."""
    # Without Keras's per-layer call traces: nothing reloads the export as a Keras model (TF
    # Serving, TFMA and batch scoring run its signatures), and tracing each layer's call for
    # Keras's own loader cost 3 s of a 13 s export (the census model, side by side).
    # Nor with the optimizer: nothing resumes training from an export, and Adam's two slots
    # per weight made the variables three times the model's size.
    model.save(export_dir, save_format="tf", signatures=make_signatures(model, cfg, tft_output),
               save_traces=False, include_optimizer=False)
    finalize_signatures(export_dir)
    info_path = os.path.join(export_dir, examples_lib.MODEL_INFO)
    tf.io.gfile.makedirs(os.path.dirname(info_path))
    with tf.io.gfile.GFile(info_path, "w") as fh:
        json.dump(model_info(cfg, tft_output), fh, indent=2)
