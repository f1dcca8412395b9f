"""What every headwise client shares, without TensorFlow: rows in, `HeadPrediction`s out, a table.

The gRPC client (`serving/client.py`, TensorFlow protos) and the quick REST client
(`serving/rest_client.py`, no TensorFlow) both read rows with `read_rows`, turn a head's answer
into a `HeadPrediction` with its task's rule from the registry (`headwise.tasks`), and print
`table`; one source of truth for what `headwise predict` shows.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from headwise import tasks


class ClientError(RuntimeError):
    """A failed query, with a message a person can act on."""


@dataclass
class HeadPrediction:
    head: str
    task: str
    value: float | None = None  # regression, in label units
    label: str | None = None  # classifiers: the top class (multilabel: classes >= 0.5, "|")
    score: float | None = None  # the top class's probability
    scores: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        if self.value is not None:
            return f"{self.value:.4g}"
        return f"{self.label} ({self.score:.2f})"


def read_rows(path: str, fmt: str = "csv") -> list[dict[str, Any]]:
    """Rows from a CSV file (header row), or JSON: a list of objects or one object per line."""
    if not os.path.isfile(path):
        raise ClientError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError as e:
        raise ClientError(f"{path}: not UTF-8 text ({e})") from None
    if fmt == "json":
        try:
            stripped = text.lstrip()
            if stripped.startswith("["):
                rows = json.loads(text)
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ClientError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ClientError(f"{path}: expected a list of objects, one per row")
        return rows
    reader = csv.DictReader(text.splitlines())
    rows = []
    for row in reader:
        if None in row:
            raise ClientError(f"{path}, line {reader.line_num}: more fields than the header has")
        rows.append(row)
    return rows


def task_of(head: dict) -> tasks.Task:
    """The registry's task of a head in the model's description."""
    try:
        return tasks.get(head["task"])
    except KeyError:
        raise ClientError(f"head {head['name']!r}: the model was exported with a task this "
                          f"client does not know ({head['task']!r}); upgrade headwise") from None


def regression(head: dict, value: float) -> HeadPrediction:
    return HeadPrediction(head["name"], head["task"], value=value)


def classification(head: dict, classes: Sequence[tuple[str, float]]) -> HeadPrediction:
    """One Classify answer, (class name, score) per class, read by the head's task."""
    label, score = task_of(head).decode(classes)
    return HeadPrediction(head["name"], head["task"], label=label, score=score,
                          scores=dict(classes))


def table(predictions: Sequence[list[HeadPrediction]], first_row: int = 1) -> str:
    """A fixed-width table: one line per row, one column per head."""
    if not predictions:
        return "(no rows)"
    heads = [p.head for p in predictions[0]]
    cells = [[str(first_row + i)] + [p.text() for p in row] for i, row in enumerate(predictions)]
    header = ["row"] + heads
    widths = [max(len(r[j]) for r in [header, *cells]) for j in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
