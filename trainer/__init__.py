"""Trainer-side user code for TFX: the generic Transform preprocessing_fn and the multi-head
Keras model, both derived from the heads config."""

import os

# Transform's layer and TFX 1.16 are Keras 2; TF picks its Keras the first time tf.keras is used.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
