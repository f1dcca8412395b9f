import os

# Before TensorFlow is imported: TFX 1.16 and Transform's layer are Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
