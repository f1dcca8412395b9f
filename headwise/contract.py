"""The serving contract: the names a headwise SavedModel is exported with and served and queried by.

The exporter (`trainer/export.py`) writes them, the data plane (`serving/dataplane.py`) checks
them as TF Serving does, the client (`serving/client.py`) and the Evaluator's eval config read
them. Changing a value here changes what served models look like: a model exported before the
change and a client or server after it no longer agree.

Signatures of an exported model (all but `serving_default` and `model_info` read serialized
tf.Examples, string[batch]):
  serving_default      Predict   the raw features as plain tensors, one input per feature column
                                 (`features_input(column)`, one value per row; a missing value
                                 is NaN for a number, an empty string for a string) ->
                                 {<head>: float32[batch, units]}: what REST clients send as plain
                                 JSON, no tf.Example, and TF Serving's signature when a request
                                 names none
  examples             Predict   input `examples` -> serving_default's outputs, for the same rows
                                 as tf.Examples (TFMA, batch scoring, gRPC clients that hold
                                 tf.Examples)
  classify_<head>      Classify  input `inputs` -> `classes`, `scores` (classifier heads)
  regress_<head>       Regress   input `inputs` -> `outputs` (regression heads)
  transform_features   Predict   input `examples` with labels -> every transformed column,
                                 among them `label_key(head)`, `weight_key(head)`
  model_info           Predict   no input -> `json`: the model's description for clients

Models exported before the plain features became the default signature have `serving_default`
on tf.Examples and the plain one as `features`; the description (`model_info`) names both
(`signature`, `features_signature.name`), so a client that reads it works with either.

Which of Classify and Regress a head gets is its task's `signature` kind in the task registry
(`headwise.tasks`); `METHODS` maps the kind to TF Serving's method name.

No TensorFlow here: the CLI, the client and the components read these names without it.
"""

from __future__ import annotations

import re
import zlib

from headwise import tasks

# Serving signatures and their inputs and outputs.
DEFAULT_SIGNATURE = "serving_default"  # TF Serving's signature when a request names none
# The plain-features signature is the default one: a REST client sends {"instances": [{feature:
# value}]} and names no signature.
FEATURES_SIGNATURE = DEFAULT_SIGNATURE
LEGACY_FEATURES_SIGNATURE = "features"  # its name in models exported before it was the default
EXAMPLES_SIGNATURE = "examples"  # the same outputs from serialized tf.Examples
SERVING_INPUT = "examples"  # the examples signature's and transform_features' input (shared)
TRANSFORM_FEATURES_SIGNATURE = "transform_features"
MODEL_INFO_SIGNATURE = "model_info"
MODEL_INFO_OUTPUT = "json"  # string scalar: the model's description, JSON
# The features signature's input dtype per raw dtype. Integers come as doubles: JSON has no missing
# integer, and TF Serving's JSON parser takes NaN only for floating types (json_tensor.cc);
# whole numbers are exact up to 2**53.
FEATURES_DTYPES = {"float32": "float32", "int64": "float64", "string": "string"}

# TF Serving's method names (tensorflow/cc/saved_model/signature_constants.h).
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
METHODS = {tasks.CLASSIFY: CLASSIFY_METHOD, tasks.REGRESS: REGRESS_METHOD}

# Classify and Regress signature keys, as TF Serving requires them (signature_constants.h).
CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"

# TF Serving replays the requests in this file of a SavedModel while it loads the version
# (saved_model_warmup_util.cc; serving/warmup.py writes it).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"

CLASSIFY_PREFIX = "classify_"
REGRESS_PREFIX = "regress_"


def classify_signature(head: str) -> str:
    """The Classify signature of a classifier head (binary, multiclass, multilabel)."""
    return f"{CLASSIFY_PREFIX}{head}"


def regress_signature(head: str) -> str:
    """The Regress signature of a regression head."""
    return f"{REGRESS_PREFIX}{head}"


def head_signature(head: str, kind: str) -> str:
    """A head's Classify or Regress signature, by its task's signature kind (tasks.CLASSIFY or
    tasks.REGRESS)."""
    return regress_signature(head) if kind == tasks.REGRESS else classify_signature(head)


def signature_method(signature: str) -> str | None:
    """The TF Serving method of a head signature by its name (None: not a head signature)."""
    if signature.startswith(CLASSIFY_PREFIX):
        return CLASSIFY_METHOD
    if signature.startswith(REGRESS_PREFIX):
        return REGRESS_METHOD
    return None


def examples_signature(info: dict) -> str:
    """The signature that takes serialized tf.Examples in a model with the description `info`
    (model_info): `examples`, or serving_default in models exported before the plain features
    became the default (their description names it too; the oldest name none)."""
    return info.get("signature", DEFAULT_SIGNATURE)


def features_input(column: str) -> str:
    """The features signature's input for a feature column: the column's name when it is a name
    TensorFlow takes for a function argument (ASCII letters, digits, `_`, starting with a letter),
    else those characters kept, the others `_`, `f_` in front and a hash of the name behind, so
    two columns never share one (`Body Mass (g)` -> `f_Body_Mass_g_<hash>`). A column named
    `examples` gets the second form too: a request's only input `examples` is serialized
    tf.Examples (headwise.request_logs reads logged requests by that rule)."""
    if _PLAIN_NAME.fullmatch(column) and column != SERVING_INPUT:
        return column
    stem = re.sub("_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", column)).strip("_")
    return f"f_{stem}_{zlib.crc32(column.encode('utf-8')):08x}"


_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


# Transformed columns (Transform's output, transform_features' outputs): derived from the head
# name, they key the Keras outputs, losses, and the Evaluator's labels and example weights.
def label_key(head: str) -> str:
    return f"label__{head}"


def weight_key(head: str) -> str:
    return f"weight__{head}"


def zscore_key(head: str) -> str:
    return f"zlabel__{head}"


def label_stats_key(head: str) -> str:
    """A normalised regression head's label mean and std as Transform computed them: the bits
    of two float64s in one int64 pair (Transform's outputs hold no float64)."""
    return f"labelstats__{head}"


def presence_key(feature: str) -> str:
    """A numeric feature's missing-value indicator (1.0: present), a transformed column and a
    model input next to the feature's own (`missing_indicator: true`)."""
    return f"present__{feature}"


def linear_key(feature: str) -> str:
    """A piecewise-encoded numeric feature's z-score, clipped (`linear: true`): a transformed
    column and a model input next to the feature's quantile position."""
    return f"linear__{feature}"


def classes_vocabulary(head: str) -> str:
    """Transform's vocabulary file of a multiclass head that learns its classes."""
    return f"classes__{head}"
