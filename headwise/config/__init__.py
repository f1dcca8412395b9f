"""The heads config: the one declarative source of truth for a headwise pipeline.

A YAML file declares the input features, the heads (one per label column) and the run
settings. Everything downstream -- Transform's preprocessing_fn, the Keras model, the
serving signatures, the Evaluator's EvalConfig and the run summary -- is derived from the
`PipelineConfig` loaded here, so nothing about a head is written twice.

Loading is strict: unknown keys, unknown tasks or metrics, duplicate heads, label leakage and
columns missing from the data all fail with a `ConfigError` whose message names the file and
the field (e.g. ``taxi.yaml: heads[2].task: unknown task 'clasify' ...``).

One module per section: `fields` (the strict reader), `features`, `heads`, `model` (model and
trainer), `validation`, `pipeline` (the whole config, `from_dict`, `load`); `scope` and
`boundary` are how the config crosses into TFX (`to_json` / `from_json`).
"""

from headwise.config.boundary import (
    FORMAT,
    HEADS_CONFIG_KEY,
    fingerprint,
    from_json,
    to_json,
    to_raw,
)
from headwise.config.data import DEFAULT_MISSING_VALUES
from headwise.config.features import FEATURE_TYPES, Feature
from headwise.config.fields import NAME_RE, ConfigError, Fields
from headwise.config.heads import TASKS, Head, Threshold
from headwise.config.model import (
    LOSS_BALANCING,
    FineTune,
    ImageBackbone,
    ModelConfig,
    TrainerConfig,
)
from headwise.config.pipeline import (
    PACKAGE_PREFIX,
    PipelineConfig,
    check_columns,
    from_dict,
    load,
    resolve_path,
)
from headwise.config.scope import TRAINING_EXCLUDED, Scope
from headwise.config.validation import ValidationConfig

_Fields = Fields  # the old name (kubeflow/compile.py)

__all__ = [
    "DEFAULT_MISSING_VALUES", "FEATURE_TYPES", "FORMAT", "FineTune",
    "ImageBackbone", "HEADS_CONFIG_KEY", "LOSS_BALANCING",
    "NAME_RE", "PACKAGE_PREFIX",
    "TASKS", "TRAINING_EXCLUDED", "ConfigError", "Feature", "Fields", "Head",
    "ModelConfig", "PipelineConfig", "Scope", "Threshold", "TrainerConfig", "ValidationConfig",
    "check_columns", "fingerprint", "from_dict", "from_json", "load",
    "resolve_path", "to_json", "to_raw",
]
