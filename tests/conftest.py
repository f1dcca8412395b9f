import os
import shutil
import signal
import tempfile

# Before TensorFlow is imported: TFX 1.16 and Transform's layer are Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Beam, TensorFlow and the pipelines' child processes write temporaries into TMPDIR
# (beam-temp-*, tmp*, __autograph_generated_file*) and leave thousands behind in a full run. One
# directory per test process (xdist's workers put pytest's tmp_path under the controller's)
# keeps them out of /tmp, and goes when the process ends.
SESSION_TMP = tempfile.mkdtemp(prefix="headwise-tests-")
os.environ["TMPDIR"] = SESSION_TMP
tempfile.tempdir = SESSION_TMP

import pytest  # noqa: E402

# Ctrl-C as from a terminal, in every test process and the processes they start: a suite started
# in the background (`make test &` from a script) inherits SIGINT ignored, which Python keeps,
# and the Ctrl-C tests' SIGINT would reach nothing. A handled signal is reset to its default
# action in a child at exec, so the children get Ctrl-C's default too.
signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


@pytest.fixture
def without_tfma(monkeypatch):
    """Call it to make TFMA's pass (TFX's Evaluator executor, which runs it) fail from then on:
    a gate-only change is judged on the metrics kept from the last evaluation
    (components.evaluation_cache), never by computing them again."""
    def patch() -> None:
        from components import evaluator

        def must_not_run(*_):
            raise AssertionError("TFMA computed the metrics again for a gate-only change")

        monkeypatch.setattr(evaluator.stock.Executor, "Do", must_not_run)

    return patch


@pytest.fixture(scope="session")
def penguins_in_memory(tmp_path_factory) -> str:
    """The pipeline root of penguins through ExampleGen, StatisticsGen and Transform under the
    DirectRunner's in_memory mode (tests/penguins_components.py), shared by the modules that
    start from it."""
    from tests import penguins_components

    return penguins_components.run(str(tmp_path_factory.mktemp("penguins_in_memory")),
                                   penguins_components.IN_MEMORY)


# `make test` runs on two workers (pytest-xdist). The unit of work is a module, so a module-scoped
# pipeline run happens once; the modules that share a session fixture above are one unit with
# it. The end-to-end modules, the long ones, are handed out first, so that neither worker is
# left with one at the end. (xdist's own `loadgroup` cannot do this under pytest 9: it renames
# node ids, which pytest 9 no longer allows.)
SHARED_SESSION_UNITS = {"tests/test_beam_modes.py": "penguins_in_memory",
                        "tests/test_multi_worker.py": "penguins_in_memory"}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_SESSION_UNITS.get(module, module)

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker: the order in which units are handed out
        items.sort(key=lambda item: item.get_closest_marker("e2e") is None)  # stable
