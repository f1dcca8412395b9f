"""The per-head validation report: one table per head and one picture per head.

For every head and metric: value, trivial baseline, threshold, change against the last blessed
model, and the verdict of each gate -- absolute thresholds (`min`/`max`), no regression
(`max_regression`, judged by TFMA against the baseline model) and beating the trivial baseline
(the head's main metric). Written next to the evaluation as `report/report.md`,
`report/gates.json` (all the run summary reads of an evaluation) and `report/<head>.png`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from components.baselines import baseline_bound
from headwise.config import Head, PipelineConfig
from trainer.heads import higher_is_better

REPORT_DIR = "report"
GATES_FILE = "gates.json"
PASS, FAIL, NA = "pass", "FAIL", "-"


@dataclasses.dataclass
class MetricRow:
    metric: str
    value: float | None
    baseline: float | None
    threshold: str
    change: float | None  # candidate - last blessed model (None: no baseline model)
    absolute: str  # gate verdicts: pass / FAIL / - (not applicable)
    no_regression: str
    beats_baseline: str


def _verdict(ok: bool | None) -> str:
    return NA if ok is None else (PASS if ok else FAIL)


def head_rows(head: Head, values: dict[str, float], diffs: dict[str, float],
              change_failures: set[str], baselines: dict[str, float]) -> list[MetricRow]:
    rows = []
    for m in head.metrics:
        v = values.get(m)
        t = head.thresholds.get(m)
        gating = head.gate
        absolute = None
        texts = []
        if t is not None and (t.min is not None or t.max is not None):
            texts += [f">= {t.min:g}"] if t.min is not None else []
            texts += [f"<= {t.max:g}"] if t.max is not None else []
            if gating and v is not None:
                absolute = (t.min is None or v >= t.min) and (t.max is None or v <= t.max)
        no_regression = None
        if t is not None and t.max_regression is not None:
            texts.append(f"change {'>= -' if higher_is_better(head.task, m) else '<= +'}"
                         f"{t.max_regression:g}")
            if gating and m in diffs:
                no_regression = m not in change_failures
        beats = None
        b = baselines.get(m)
        if gating and m == head.main_metric and b is not None and v is not None:
            bound = baseline_bound(b, head.baseline_margin, higher_is_better(head.task, m))
            beats = v >= bound if higher_is_better(head.task, m) else v <= bound
            texts.append(f"{'>=' if higher_is_better(head.task, m) else '<='} {bound:.4g} "
                         "(baseline)")
        rows.append(MetricRow(m, v, b, ", ".join(texts) or "-", diffs.get(m),
                              _verdict(absolute), _verdict(no_regression), _verdict(beats)))
    return rows


def head_passed(rows: list[MetricRow]) -> bool:
    return all(FAIL not in (r.absolute, r.no_regression, r.beats_baseline) for r in rows)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def render_markdown(cfg: PipelineConfig, results: dict[str, list[MetricRow]], blessed: bool,
                    has_baseline_model: bool) -> str:
    lines = [f"# Validation report: {cfg.name}", "",
             f"**Blessed: {'yes' if blessed else 'NO'}** -- a model ships only if every gating "
             "head passes every gate.", ""]
    if not has_baseline_model:
        lines += ["No blessed model to compare with yet: the no-regression gate does not apply.",
                  ""]
    failing = [(h.name, r) for h in cfg.heads for r in results[h.name]
               if FAIL in (r.absolute, r.no_regression, r.beats_baseline)]
    if failing:
        lines += ["## Failures", ""]
        for name, r in failing:
            gates = [g for g, v in (("absolute threshold", r.absolute),
                                    ("no regression", r.no_regression),
                                    ("beats trivial baseline", r.beats_baseline)) if v == FAIL]
            lines.append(f"- head `{name}`, metric `{r.metric}` = {_fmt(r.value)}: fails "
                         f"{', '.join(gates)} ({r.threshold})")
        lines.append("")
    for h in cfg.heads:
        rows = results[h.name]
        role = "gating" if h.gate else "reported only (gate: false)"
        verdict = ("PASS" if head_passed(rows) else "FAIL") if h.gate else "not gating"
        lines += [f"## {h.name} ({h.task}, {role}): {verdict}", "",
                  "| metric | value | trivial baseline | threshold | change vs last blessed | "
                  "absolute | no regression | beats baseline |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.metric} | {_fmt(r.value)} | {_fmt(r.baseline)} | {r.threshold} "
                         f"| {_fmt(r.change)} | {r.absolute} | {r.no_regression} | "
                         f"{r.beats_baseline} |")
        lines += ["", f"![{h.name}]({h.name}.png)", ""]
    return "\n".join(lines)


def plot_head(head: Head, rows: list[MetricRow], labels: list[Any], predictions: np.ndarray,
              path: str) -> None:
    """Metric vs baseline/threshold bars, and the task's own picture of the predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from components.baselines import class_index, multi_hot

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r.metric for r in rows]
    x = np.arange(len(names))
    ax1.bar(x - 0.2, [r.value or 0 for r in rows], 0.4, label="model")
    ax1.bar(x + 0.2, [r.baseline or 0 for r in rows], 0.4, label="trivial baseline")
    for i, m in enumerate(names):
        t = head.thresholds.get(m)
        for bound in ((t.min, t.max) if t else ()):
            if bound is not None:
                ax1.hlines(bound, i - 0.4, i + 0.4, colors="red", linestyles="--")
    ax1.set_xticks(x, names)
    ax1.set_title(f"{head.name}: metrics (red: thresholds)")
    ax1.legend()

    present = [i for i, v in enumerate(labels) if v is not None and v == v]
    if head.task == "regression":
        y = np.asarray([float(labels[i]) for i in present])
        p = predictions[present, 0]
        ax2.hist(y - p, bins=50, color="gray")
        ax2.set_title("residuals (label - prediction)")
    elif head.task == "binary":
        y = np.asarray([float(labels[i]) for i in present])
        p = predictions[present, 0]
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(p, edges) - 1, 0, 9)
        mids = [(p[idx == b].mean(), y[idx == b].mean()) for b in range(10) if (idx == b).any()]
        ax2.plot([0, 1], [0, 1], "k--", label="perfect")
        ax2.plot(*zip(*mids, strict=True), "o-", label="model")
        ax2.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
        ax2.legend()
    elif head.task == "multiclass":
        n = len(head.class_names)
        cm = np.zeros((n, n), int)
        for i in present:
            c = class_index(head, labels[i])
            if c is not None:
                cm[c, int(np.argmax(predictions[i]))] += 1
        ax2.imshow(cm, cmap="Blues")
        for (r, c), v in np.ndenumerate(cm):
            ax2.text(c, r, str(v), ha="center", va="center")
        ax2.set_xticks(range(n), head.class_names, rotation=30)
        ax2.set_yticks(range(n), head.class_names)
        ax2.set(xlabel="predicted", ylabel="actual", title="confusion matrix")
    else:
        y = np.asarray([multi_hot(head, labels[i]) for i in present])
        p = predictions[present]
        k = np.arange(len(head.classes))
        ax2.bar(k - 0.2, y.mean(axis=0), 0.4, label="observed rate")
        ax2.bar(k + 0.2, p.mean(axis=0), 0.4, label="mean prediction")
        ax2.set_xticks(k, head.classes)
        ax2.set_title("per-class rate")
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(cfg: PipelineConfig, evaluation_uri: str, results: dict[str, list[MetricRow]],
                 example_counts: dict[str, float | None], blessed: bool,
                 has_baseline_model: bool, labels: dict[str, list[Any]],
                 predictions: dict[str, np.ndarray] | None) -> str:
    """Write report.md, gates.json and one PNG per head; returns the report's path."""
    out = os.path.join(evaluation_uri, REPORT_DIR)
    os.makedirs(out, exist_ok=True)
    if predictions is not None:
        for h in cfg.heads:
            plot_head(h, results[h.name], labels[h.label], predictions[h.name],
                      os.path.join(out, f"{h.name}.png"))
    with open(os.path.join(out, GATES_FILE), "w") as fh:
        json.dump({"blessed": blessed, "heads": {
            h: {"passed": head_passed(rows), "example_count": example_counts.get(h),
                "rows": [dataclasses.asdict(r) for r in rows]}
            for h, rows in results.items()}}, fh, indent=1)
    path = os.path.join(out, "report.md")
    with open(path, "w") as fh:
        fh.write(render_markdown(cfg, results, blessed, has_baseline_model))
    return path
