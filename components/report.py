"""The per-head validation report: one table per head and one picture per head.

For every head and metric: value, trivial baseline, threshold, change against the last blessed
model, and the verdict of each gate, as TFMA's ValidationResult gave it (`components.gates`
reads it; nothing here judges a gate again). Written next to the evaluation as
`report/report.md`, `report/gates.json` (all the run summary reads of an evaluation: per head,
whether it passed and each failure as one line) and `report/<head>.png`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from components.gates import GATES, NA, MetricRow, head_passed
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
    idle = [g.name.replace("_", "-") for g in GATES.values() if g.needs_baseline_model]
    if not has_baseline_model and idle:
        lines += [f"No blessed model to compare with yet: the {' and '.join(idle)} "
                  f"{'gate does' if len(idle) == 1 else 'gates do'} not apply.", ""]
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
        header = ["metric", "value", "trivial baseline", "threshold", "change vs last blessed",
                  *(g.column for g in GATES.values())]  # a column per gate, in registry order
        lines += [f"## {h.name} ({h.task}, {role}): {verdict}", ""]
        derived = tasks.of(h).derivation(h)
        if derived:
            lines += [f"Label, derived from the column `{h.label}`: {derived}.", ""]
        lines += [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
        for r in rows:
            metric = r.metric + (f" (class {r.class_name})" if r.class_name else "")
            cells = [metric, _fmt(r.value), _fmt(r.baseline), r.threshold, _fmt(r.change),
                     *(r.verdicts.get(g, NA) for g in GATES)]
            lines.append(f"| {' | '.join(cells)} |")
        lines += ["", f"![{h.name}]({h.name}.png)", ""]
    return "\n".join(lines)


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
    task.plot(ax2, head, y, p)
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
                "rows": [r.as_json() for r in rows]}
            for h, rows in results.items()}}, fh, indent=1)
    path = os.path.join(out, "report.md")
    with open(path, "w") as fh:
        fh.write(render_markdown(cfg, results, blessed, has_baseline_model))
    return path
