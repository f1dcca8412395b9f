"""The headwise TFX pipeline: one definition (`pipeline.pipeline.create_pipeline`), thin runners."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
