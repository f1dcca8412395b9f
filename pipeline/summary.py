"""What one pipeline run produced, per head, read back from ML Metadata and the Evaluator.

`summarize` finds the latest run of the pipeline in MLMD, the artifacts its executions output
(fresh or cached), each head's metrics and gate verdicts (the Evaluator's `gates.json`), the
blessing and the pushed model, and `RunSummary.table()` renders them for a person.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import batch_scoring, infra_check
from components.report import GATES_FILE, REPORT_DIR
from headwise.config import PipelineConfig
from headwise.config.data import TEST, TRAIN


@dataclasses.dataclass
class HeadResult:
    name: str
    task: str
    gating: bool  # False: reported only (auxiliary heads by default)
    metrics: dict[str, float]  # metric name -> value on the test split (overall slice)
    failures: list[str]  # gate failures of this head, one line each
    example_count: float | None = None
    baseline: float | None = None  # the trivial baseline's value of the head's main metric
    main_metric: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclasses.dataclass
class RunSummary:
    pipeline: str
    run_id: str
    executions: dict[str, str]  # component id -> COMPLETE / CACHED / FAILED ...
    heads: list[HeadResult]
    blessed: bool | None
    pushed: bool
    pushed_path: str | None
    already_served: bool  # the blessed model was already the latest version: nothing copied
    evaluation_uri: str | None
    wall_s: float | None = None
    log_path: str | None = None
    # The infra check (components/infra_check.py): None when it did not run (stopped before),
    # else whether every call passed; the failed calls, one line each; what it ran.
    infra_blessed: bool | None = None
    infra_failures: list[str] = dataclasses.field(default_factory=list)
    infra_note: str = ""
    # The scoring stage's record (components/batch_scoring.py); None: no such stage.
    scoring: dict | None = None

    @property
    def scoring_failed(self) -> bool:
        return bool(self.scoring and self.scoring.get("error"))

    def head(self, name: str) -> HeadResult:
        return next(h for h in self.heads if h.name == name)

    def table(self) -> str:
        metric_names = list(dict.fromkeys(m for h in self.heads for m in h.metrics))
        cols = ["head", "task", *metric_names, "baseline", "examples", "gate"]
        rows = []
        for h in self.heads:
            gate = "-" if not h.gating else ("pass" if h.passed else "FAIL")
            rows.append([h.name, h.task + ("" if h.gating else " (not gating)"),
                         *[_fmt(h.metrics.get(m)) for m in metric_names],
                         f"{h.main_metric} {_fmt(h.baseline)}" if h.baseline is not None else "-",
                         _fmt(h.example_count, 0), gate])
        widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=False)]
        line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
        out = [line(cols), line(["-" * w for w in widths]), *map(line, rows)]
        for h in self.heads:
            out += [f"  {h.name}: {f}" for f in h.failures]
        blessed = {True: "yes", False: "NO", None: "not evaluated"}[self.blessed]
        out.append(f"metrics: the {TEST} split, held out from training and early stopping; "
                   f"baseline: a feature-blind model fitted on the {TRAIN} split")
        out.append("")
        out.append(f"blessed: {blessed}")
        if self.infra_blessed is not None:
            verdict = "passed" if self.infra_blessed else "FAILED, the model is not pushed"
            out.append(f"serving: {verdict} ({self.infra_note})")
            out += [f"  {f}" for f in self.infra_failures]
        if not self.pushed:
            out.append("pushed:  nothing pushed")
        else:
            note = " (already the served version; not copied again)" if self.already_served else ""
            out.append(f"pushed:  {self.pushed_path}{note}")
        if self.scoring is not None:
            s = self.scoring
            if s.get("scored"):
                out.append(f"scored:  {s['output']} ({s['rows']:,} rows of {s['data']}, "
                           f"{s['seconds']:.1f} s)")
            elif s.get("error"):
                out.append(f"scored:  FAILED, {s['data']}: {s['error']}")
            else:
                out.append(f"scored:  not run ({s.get('skipped', 'see the log')})")
        if self.evaluation_uri:
            report = os.path.join(self.evaluation_uri, REPORT_DIR, "report.md")
            out.append(f"report:  {report if os.path.exists(report) else self.evaluation_uri}")
        if self.wall_s is not None:
            cached = sum(1 for s in self.executions.values() if s == "CACHED")
            out.append(f"wall time: {self.wall_s:.1f}s ({cached} of {len(self.executions)} "
                       "components cached)")
        return "\n".join(out)


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if digits else f"{v:.0f}"


def _latest_run_context(store, pipeline_name: str):
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        raise LookupError(f"no run of pipeline {pipeline_name!r} in ML Metadata")
    pipeline_execs = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = sorted(store.get_contexts_by_type("pipeline_run"),
                  key=lambda c: (c.create_time_since_epoch, c.id), reverse=True)
    for run in runs:
        execs = store.get_executions_by_context(run.id)
        if any(e.id in pipeline_execs for e in execs):
            return run, execs
    raise LookupError(f"no run of pipeline {pipeline_name!r} in ML Metadata")


def _component_id(store, execution, context_types: dict[int, str]) -> str:
    for ctx in store.get_contexts_by_execution(execution.id):
        if context_types.get(ctx.type_id) == "node":
            return ctx.name.split(".", 1)[-1]  # "<pipeline>.<component id>"
    return str(execution.id)


@dataclasses.dataclass
class ComponentRun:
    """One component's execution in the latest run: its state, its start and end (seconds since
    the epoch, as ML Metadata records them) and its output artifacts' URIs by type."""

    component: str
    execution_id: int
    state: str
    start_s: float
    end_s: float
    outputs: dict[str, list[str]]

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def _open_readonly(metadata_path: str):
    conn = metadata_store_pb2.ConnectionConfig()
    conn.sqlite.filename_uri = metadata_path
    conn.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(conn)


def component_runs(metadata_path: str, pipeline_name: str) -> dict[str, ComponentRun]:
    """Every component of the pipeline's latest run, by component id (benchmarks time them)."""
    store = _open_readonly(metadata_path)
    _, execs = _latest_run_context(store, pipeline_name)
    context_types = {t.id: t.name for t in store.get_context_types()}
    types = {t.id: t.name for t in store.get_artifact_types()}
    state_name = metadata_store_pb2.Execution.State.Name
    out = {}
    for e in execs:
        events = store.get_events_by_execution_ids([e.id])
        ids = [ev.artifact_id for ev in events if ev.type in (
            metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        outputs: dict[str, list[str]] = {}
        for a in store.get_artifacts_by_id(ids):
            outputs.setdefault(types[a.type_id], []).append(a.uri)
        cid = _component_id(store, e, context_types)
        out[cid] = ComponentRun(cid, e.id, state_name(e.last_known_state),
                                e.create_time_since_epoch / 1000,
                                e.last_update_time_since_epoch / 1000, outputs)
    return out


def summarize(cfg: PipelineConfig, metadata_path: str, wall_s: float | None = None,
              log_path: str | None = None) -> RunSummary:
    store = _open_readonly(metadata_path)
    run, execs = _latest_run_context(store, cfg.name)
    state_name = metadata_store_pb2.Execution.State.Name
    context_types = {t.id: t.name for t in store.get_context_types()}
    executions = {_component_id(store, e, context_types): state_name(e.last_known_state)
                  for e in execs}

    outputs = {}
    events = store.get_events_by_execution_ids([e.id for e in execs])
    out_ids = [ev.artifact_id for ev in events
               if ev.type in (metadata_store_pb2.Event.OUTPUT,
                              metadata_store_pb2.Event.DECLARED_OUTPUT)]
    types = {t.id: t.name for t in store.get_artifact_types()}
    for a in store.get_artifacts_by_id(out_ids):
        outputs.setdefault(types[a.type_id], []).append(a)

    def latest(type_name):
        arts = outputs.get(type_name, [])
        return max(arts, key=lambda a: a.id) if arts else None

    evaluation = latest("ModelEvaluation")
    blessing = latest("ModelBlessing")
    pushed = latest("PushedModel")

    heads = _head_results(cfg, evaluation.uri) if evaluation else [
        HeadResult(h.name, h.task, h.gate, {}, []) for h in cfg.heads]
    blessed = None
    if blessing is not None and "blessed" in blessing.custom_properties:
        blessed = bool(blessing.custom_properties["blessed"].int_value)
    props = pushed.custom_properties if pushed is not None else {}
    was_pushed = "pushed" in props and bool(props["pushed"].int_value)
    pushed_path = props["pushed_destination"].string_value if was_pushed else None
    already = was_pushed and "already_served" in props and bool(props["already_served"].int_value)
    infra_blessed, infra_failures, infra_note = _infra_result(latest("InfraBlessing"))
    scoring = _scoring_record(latest("InferenceResult"))
    return RunSummary(
        pipeline=cfg.name, run_id=run.name, executions=executions, heads=heads,
        blessed=blessed, pushed=was_pushed, pushed_path=pushed_path, already_served=already,
        evaluation_uri=evaluation.uri if evaluation else None, wall_s=wall_s,
        log_path=log_path, infra_blessed=infra_blessed, infra_failures=infra_failures,
        infra_note=infra_note, scoring=scoring)


def _scoring_record(result) -> dict | None:
    if result is None:
        return None
    try:
        with open(os.path.join(result.uri, batch_scoring.RESULT_FILE), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {"scored": False, "error": f"no readable record under {result.uri}"}


def _infra_result(blessing) -> tuple[bool | None, list[str], str]:
    """The infra check's verdict, failed calls and a note on what it ran; (None, [], "") when
    it did not run (the run stopped before it)."""
    if blessing is None or "blessed" not in blessing.custom_properties:
        return None, [], ""
    blessed = bool(blessing.custom_properties["blessed"].int_value)
    try:
        with open(os.path.join(blessing.uri, infra_check.RESULT_FILE), encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        return blessed, [], f"see {blessing.uri}"
    calls = result.get("calls", [])
    note = (f"{len(calls)} calls over gRPC and REST on {result.get('examples', 0)} test "
            f"examples, {result.get('server', 'no server')}, {result.get('seconds', 0.0):.1f} s; "
            f"{os.path.join(blessing.uri, infra_check.RESULT_FILE)}")
    return blessed, infra_check.failure_lines(result), note


def _head_results(cfg: PipelineConfig, eval_uri: str) -> list[HeadResult]:
    """Each head's metrics, baseline and gate failures, from the Evaluator's gates.json."""
    with open(os.path.join(eval_uri, REPORT_DIR, GATES_FILE)) as fh:
        gates = json.load(fh)["heads"]
    out = []
    for h in cfg.heads:
        g = gates.get(h.name, {"rows": []})
        rows = {r["metric"]: r for r in g["rows"] if r.get("class_name") is None}
        failures = list(g.get("failures", []))  # formatted once, by the Evaluator's report
        out.append(HeadResult(
            h.name, h.task, h.gate,
            {m: r["value"] for m, r in rows.items() if r["value"] is not None},
            failures, g.get("example_count"), rows.get(h.main_metric, {}).get("baseline"),
            h.main_metric))
    return out
