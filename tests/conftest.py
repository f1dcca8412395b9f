import os

# Before TensorFlow is imported: TFX 1.16 and Transform's layer are Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def penguins_in_memory(tmp_path_factory) -> str:
    """The pipeline root of penguins through ExampleGen, StatisticsGen and Transform under the
    DirectRunner's in_memory mode (tests/penguins_components.py), shared by the modules that
    start from it."""
    from tests import penguins_components

    return penguins_components.run(str(tmp_path_factory.mktemp("penguins_in_memory")),
                                   penguins_components.IN_MEMORY)
