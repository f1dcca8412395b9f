"""The per-head validation report: one table per head and one picture per head.

For every head and metric: value, trivial baseline, threshold, change against the last blessed
model, and the verdict of each gate, as TFMA's ValidationResult gave it (`components.gates`
reads it; nothing here judges a gate again). Written next to the evaluation as
`report/report.md`, `report/gates.json` (all the run summary reads of an evaluation: per head,
whether it passed and each failure as one line) and `report/<head>.png`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from components.gates import MetricRow, head_passed
from headwise import tasks
from headwise.config import Head, PipelineConfig

REPORT_DIR = "report"
GATES_FILE = "gates.json"


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
    failing = [(h.name, r) for h in cfg.heads for r in results[h.name] if r.failed_gates()]
    if failing:
        lines += ["## Failures", ""]
        for name, r in failing:
            lines.append(f"- head `{name}`: {r.failure_text()}")
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
            metric = r.metric + (f" (class {r.class_name})" if r.class_name else "")
            lines.append(f"| {metric} | {_fmt(r.value)} | {_fmt(r.baseline)} | {r.threshold} "
                         f"| {_fmt(r.change)} | {r.absolute} | {r.no_regression} | "
                         f"{r.beats_baseline} |")
        lines += ["", f"![{h.name}]({h.name}.png)", ""]
    return "\n".join(lines)


MAX_LABELLED_CLASSES = 20  # a confusion matrix shows counts and class names up to this many


def plot_head(head: Head, rows: list[MetricRow], labels: list[Any], predictions: np.ndarray,
              path: str) -> None:
    """Metric vs baseline/threshold bars, and the task's own picture of the predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [r for r in rows if r.class_name is None]
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

    task = tasks.of(head)
    present, y = task.encoded(head, labels)
    p = predictions[present]
    if head.task == "regression":
        ax2.hist(y - p[:, 0], bins=50, color="gray")
        ax2.set_title("residuals (label - prediction)")
    elif head.task == "binary":
        p = p[:, 0]
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(p, edges) - 1, 0, 9)
        mids = [(p[idx == b].mean(), y[idx == b].mean()) for b in range(10) if (idx == b).any()]
        ax2.plot([0, 1], [0, 1], "k--", label="perfect")
        ax2.plot(*zip(*mids, strict=True), "o-", label="model")
        ax2.set(xlabel="predicted probability", ylabel="observed rate", title="calibration")
        ax2.legend()
    elif head.task == "multiclass":
        names = task.class_names(head)
        n = len(names)
        cm = np.zeros((n, n), int)
        for actual, row in zip(y.astype(int), p, strict=True):
            cm[actual, int(np.argmax(row))] += 1
        if n > MAX_LABELLED_CLASSES:  # a thousand classes: the matrix's shape, no labels
            ax2.imshow(np.log1p(cm), cmap="Blues")
            ax2.set(xlabel="predicted class id", ylabel="actual class id",
                    title=f"confusion matrix, {n} classes (log scale)")
        else:
            ax2.imshow(cm, cmap="Blues")
            for (r, c), v in np.ndenumerate(cm):
                ax2.text(c, r, str(v), ha="center", va="center")
            ax2.set_xticks(range(n), names, rotation=30)
            ax2.set_yticks(range(n), names)
            ax2.set(xlabel="predicted", ylabel="actual", title="confusion matrix")
    else:
        k = np.arange(len(head.classes))
        ax2.bar(k - 0.2, y.mean(axis=0), 0.4, label="observed rate")
        ax2.bar(k + 0.2, p.mean(axis=0), 0.4, label="mean prediction")
        ax2.set_xticks(k, head.classes)
        ax2.set_title("per-class rate")
        ax2.legend()
    ax2.set_title(f"{ax2.get_title()}\n({len(present):,} test examples: a random sample)",
                  fontsize=9)
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
                "failures": [r.failure_text() for r in rows if r.failed_gates()],
                "rows": [dataclasses.asdict(r) for r in rows]}
            for h, rows in results.items()}}, fh, indent=1)
    path = os.path.join(out, "report.md")
    with open(path, "w") as fh:
        fh.write(render_markdown(cfg, results, blessed, has_baseline_model))
    return path
