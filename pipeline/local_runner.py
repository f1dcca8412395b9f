"""Run the pipeline on this machine with LocalDagRunner and report per head. The runner is
pipeline.dag_runner's ParallelLocalDagRunner, a LocalDagRunner that launches independent
components (the Evaluator and InfraCheck) side by side on Beam's direct runner.

Layout under `output_dir` (default `outputs/`):
  data/<pipeline>/               the input data (data.csv, or part-NNNNN.parquet), copied from
                                 the configured source
  pipelines/<pipeline>/          TFX pipeline root (every component's artifacts)
  metadata.db                    ML Metadata (SQLite): lineage and the cache
  serving/<model_name>/<version>/saved_model.pb   pushed models, TF Serving's layout
  request_logs/<model_name>/     requests logged by `headwise serve` (the skew baseline)
  logs/<pipeline>-<time>.log     the full TFX/Beam log of each run
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import time
from collections.abc import Sequence

import absl.logging
from tfx.orchestration import metadata as tfx_metadata

from components import data_gate
from headwise import quiet, sources
from headwise import request_logs as request_log  # the reading side: no serving code
from headwise.config import PipelineConfig
from pipeline import dag_runner
from pipeline import pipeline as pipeline_lib
from pipeline import summary as summary_lib


class PipelineRunError(RuntimeError):
    """A component failed; says which, why, and where the full log is."""

    def __init__(self, component: str | None, cause: BaseException, log_path: str):
        self.component, self.cause, self.log_path = component, cause, log_path
        super().__init__(f"{component or 'the pipeline'} failed: {cause}\n(full log: {log_path})")


@dataclasses.dataclass(frozen=True)
class Paths:
    output_dir: str
    name: str
    model_name: str

    @property
    def data_root(self) -> str:
        return os.path.join(self.output_dir, "data", self.name)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipelines", self.name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.db")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_dir, "serving", self.model_name)

    @property
    def request_log_dir(self) -> str:
        return os.path.join(self.output_dir, "request_logs", self.model_name)

    @property
    def schema_root(self) -> str:
        return os.path.join(self.output_dir, "schemas", self.name)

    @property
    def log_dir(self) -> str:
        return os.path.join(self.output_dir, "logs")


def paths_for(cfg: PipelineConfig, output_dir: str) -> Paths:
    return Paths(os.path.abspath(output_dir), cfg.name, cfg.model_name)


def stage_data(cfg: PipelineConfig, data_root: str) -> list[str]:
    """Copy the configured data into the data root, only what changed (headwise.sources: an
    unchanged file keeps ExampleGen's input fingerprint, so the cache stays valid)."""
    return sources.of(cfg).stage(cfg.resolve_data(), data_root)


def stage_schema(cfg: PipelineConfig, schema_root: str) -> str | None:
    """Copy the curated schema to a content-addressed path for ImportSchemaGen.

    TFX caches ImportSchemaGen on its schema_file *path*; naming the copy by its content makes an
    edited schema invalidate the cache, and an unchanged one keep it.
    """
    content = cfg.read_schema()
    if content is None:
        return None
    dst = os.path.join(schema_root, hashlib.sha256(content).hexdigest()[:16], "schema.pbtxt")
    if not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst + ".tmp", "wb") as fh:
            fh.write(content)
        os.replace(dst + ".tmp", dst)
    return dst


class Progress(logging.Handler):
    """Turns the runner's log lines into one line per component on the console. Two components
    may run at once: a line is attributed to the component its thread launches."""

    def __init__(self, components: Sequence[str], stream=sys.stdout):
        super().__init__(logging.INFO)
        self.total, self.stream = len(components), stream
        self.index = 0
        self.started: dict[str, tuple[int, float]] = {}  # component: (its number, start time)
        self.cached: set[str] = set()
        self.current: str | None = None  # the component started last

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = record.msg, record.args or ()
        if msg == "Component %s is running.":
            self.index += 1
            self.current = args[0]
            self.started[args[0]] = (self.index, time.monotonic())
            self._print(f"[{self.index}/{self.total}] {args[0]:<32} running ...")
        elif msg == "A cached execution %d is used.":
            component = dag_runner.current_node() or self.current
            if component:
                self.cached.add(component)
        elif msg == "Component %s is finished.":
            index, started = self.started.get(args[0], (self.index, time.monotonic()))
            how = "cached" if args[0] in self.cached else "done"
            took = time.monotonic() - started
            self._print(f"[{index}/{self.total}] {args[0]:<32} {how} in {took:.1f}s")

    def number(self, component: str | None) -> int:
        return self.started.get(component, (self.index, 0.0))[0]

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


@contextlib.contextmanager
def neutral_argv():
    """TFX's Beam executors parse the host's sys.argv as absl flags (TFX b/174174381): under
    `pytest -v` or `headwise run -v ...`, absl reads `-v` as --verbosity and the run fails."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


@contextlib.contextmanager
def _console_progress(progress: Progress, log_path: str):
    """Console: one progress line per component, and errors. Log file: everything (INFO)."""
    absl_logger, root = logging.getLogger("absl"), logging.getLogger()
    consoles = [h for lg in (root, logging.getLogger("tensorflow")) for h in lg.handlers
                if type(h) is logging.StreamHandler]
    consoles.append(absl.logging.get_absl_handler())
    saved = [(h, h.level) for h in consoles]
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if quiet.import_log():
        file_handler.stream.write("What importing TensorFlow printed (kept off the console):\n"
                                  + quiet.import_log() + "\n")
    old_level, tf_logger = absl_logger.level, logging.getLogger("tensorflow")
    old_tf_level = tf_logger.level
    for h in consoles:
        h.setLevel(logging.ERROR)
    tf_logger.setLevel(logging.NOTSET)  # quiet.setup() holds it at ERROR outside a run
    absl_logger.setLevel(logging.INFO)
    # tensorboard.main_lib.global_init(), imported mid-run, lowers absl's verbosity to WARNING,
    # which would silence both the progress lines and the log file: hold INFO for this run.
    absl_logger.setLevel = lambda level: None
    absl_logger.addHandler(progress)
    root.addHandler(file_handler)
    try:
        yield
    finally:
        absl_logger.removeHandler(progress)
        root.removeHandler(file_handler)
        file_handler.close()
        del absl_logger.setLevel
        absl_logger.setLevel(old_level)
        tf_logger.setLevel(old_tf_level)
        for h, level in saved:
            h.setLevel(level)


# TFX packages its own source into an sdist for the Beam workers of every Beam component (about
# 1.3 s each) unless the args already say what the workers run in. The direct runner's workers
# run in this very environment, so for it the package is never read: say so.
DIRECT_RUNNER_WORKERS = "--sdk_container_image=none-direct-runner-uses-this-python-environment"
_WORKER_FLAGS = ("--extra_package", "--extra_packages", "--setup_file", "--requirements_file",
                 "--worker_harness_container_image", "--sdk_container_image")


def direct_runner(args: Sequence[str]) -> bool:
    """Whether Beam args run on the direct runner (the default when they name none)."""
    runners = [a.split("=", 1)[1] for a in args if a.startswith("--runner=")]
    return not runners or runners[-1] in ("DirectRunner", "direct", "BundleBasedDirectRunner")


def local_beam_args(args: Sequence[str]) -> list[str]:
    """The Beam args of a local run: the config's, plus DIRECT_RUNNER_WORKERS when the runner
    is the direct runner (the default) and no worker environment is named."""
    args = list(args)
    if direct_runner(args) and args and not any(a.split("=", 1)[0] in _WORKER_FLAGS
                                                  for a in args):
        args.append(DIRECT_RUNNER_WORKERS)
    return args


def dag_runner_for(beam_args: Sequence[str]) -> dag_runner.ParallelLocalDagRunner:
    """Independent components side by side on the direct runner; one at a time on another
    Beam runner: a Flink or Spark job server that Beam starts sets a SIGINT handler, which
    Python allows only in the main thread, so a Beam component must not run on a worker."""
    return dag_runner.ParallelLocalDagRunner(
        dag_runner.DEFAULT_MAX_PARALLEL if direct_runner(beam_args) else 1)


def run(cfg: PipelineConfig, output_dir: str = "outputs", *, train_steps: int | None = None,
        eval_steps: int | None = None, beam_args: Sequence[str] | None = None,
        enable_cache: bool = True, quiet: bool = False,
        preflight: bool = True) -> summary_lib.RunSummary:
    """Run the whole pipeline locally; returns the per-head summary of this run.

    Raises DataError (a ConfigError) before anything runs if the data is structurally broken or
    its values do not fit the config (headwise.data_check), and PipelineRunError naming the
    component if the pipeline stops."""
    if preflight:  # False: the caller has just run it (headwise run, before importing TF)
        cfg.read_schema()  # a missing schema file: said before the data is read
        sources.of(cfg).check(cfg.resolve_data(), cfg)
    paths = paths_for(cfg, output_dir)
    stage_data(cfg, paths.data_root)
    os.makedirs(paths.serving_dir, exist_ok=True)
    os.makedirs(paths.log_dir, exist_ok=True)
    log_path = os.path.join(paths.log_dir, f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}.log")

    beam_args = local_beam_args(cfg.beam_args if beam_args is None else beam_args)
    p = pipeline_lib.create_pipeline(
        cfg, pipeline_root=paths.pipeline_root, data_root=paths.data_root,
        serving_dir=paths.serving_dir, schema_file=stage_schema(cfg, paths.schema_root),
        metadata_connection_config=tfx_metadata.sqlite_metadata_connection_config(
            paths.metadata_path),
        beam_pipeline_args=beam_args,
        train_steps=train_steps, eval_steps=eval_steps, enable_cache=enable_cache,
        request_log_dir=paths.request_log_dir,
        baselines_key=data_gate.baselines_key(paths.serving_dir, paths.request_log_dir))

    started = time.monotonic()
    stream = open(os.devnull, "w") if quiet else sys.stdout  # noqa: SIM115
    heads = f"{len(cfg.heads)} head" + ("s" if len(cfg.heads) != 1 else "")
    print(f"headwise: running pipeline '{cfg.name}' ({heads}); full log: {log_path}",
          file=stream, flush=True)
    if cfg.validation.skew:
        logs = request_log.log_files(paths.request_log_dir)
        print(f"headwise: skew check against {len(logs)} request log file(s) in "
              f"{paths.request_log_dir}" + ("" if logs else
              " (none yet: `headwise serve --request-log-dir` writes them)"),
              file=stream, flush=True)
    progress = Progress([c.id for c in p.components], stream)
    try:
        with _console_progress(progress, log_path), neutral_argv():
            dag_runner_for(beam_args).run(p)
    except Exception as e:
        component, cause = ((e.node_id, e.cause) if isinstance(e, dag_runner.NodeFailed)
                            else (progress.current, e))
        print(f"[{progress.number(component)}/{progress.total}] {component or '?':<32} FAILED",
              file=stream, flush=True)
        raise PipelineRunError(component, cause, log_path) from cause
    return summary_lib.summarize(cfg, paths.metadata_path, wall_s=time.monotonic() - started,
                                 log_path=log_path)
