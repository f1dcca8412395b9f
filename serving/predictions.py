"""What every headwise client shares, without TensorFlow: rows in, `HeadPrediction`s out, a table.

The gRPC client (`serving/client.py`, TensorFlow protos) and the quick REST client
(`serving/rest_client.py`, no TensorFlow) both read rows with `read_rows` (or, for a folder of
images, `image_files` and `image_rows`), turn a head's answer into a `HeadPrediction` with its
task's rule from the registry (`headwise.tasks`), and print `table`; one source of truth for
what `headwise predict` shows.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from headwise import examples as examples_lib
from headwise import tasks


class ClientError(RuntimeError):
    """A failed query, with a message a person can act on."""


def to_examples(info: dict[str, Any], rows: Sequence[dict[str, Any]], base_dir: str | None,
                first_row: int) -> list[bytes]:
    """Rows -> serialized tf.Examples, as the model's description (`model_info`) types them,
    with its missing-value markers; an image feature's value is the file's bytes, or its path
    (relative to `base_dir`), read here. `first_row`: rows[0]'s number in errors."""
    try:
        return examples_lib.to_examples(rows, info["features"], info.get("images", {}),
                                        base_dir, first_row, info.get("missing_values", ()))
    except ValueError as e:
        raise ClientError(str(e)) from None


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
    """Rows from a CSV file (header row), JSON (a list of objects or one object per line), or
    Parquet (a file, a folder of them or a glob; headwise.sources)."""
    if fmt == "parquet":
        from headwise import sources

        try:
            return sources.ParquetSource().rows(path)
        except (sources.ConfigError, OSError) as e:
            raise ClientError(f"{path}: {e}") from None
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


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")  # what tf.io.decode_image reads


def image_files(folder: str) -> list[str]:
    """The image files directly in `folder` (by extension, any case), sorted by name."""
    if not os.path.isdir(folder):
        raise ClientError(f"{folder}: no such folder")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, n)))
    if not names:
        raise ClientError(f"{folder}: no image files (extensions "
                          f"{', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    return names


def image_rows(info: dict[str, Any], names: Sequence[str]
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per image file (`names`, relative to the folder given to the encoder as its
    base_dir) with the model's one image feature set to it: (rows, the model's other features,
    which every row leaves missing and the model imputes). ClientError when the model has no
    image feature or several."""
    images = list(info.get("images") or {})
    if not images:
        raise ClientError("the model has no image feature: --images needs one; use --csv or "
                          "--json")
    if len(images) > 1:
        raise ClientError(f"the model has {len(images)} image features ({', '.join(images)}): "
                          "--images fills only one; use --csv with one column of file paths "
                          "per image feature (relative to the CSV's folder)")
    (image,) = images
    return [{image: n} for n in names], [f for f in info["features"] if f != image]


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


def table(predictions: Sequence[list[HeadPrediction]], first_row: int = 1,
          files: Sequence[str] | None = None) -> str:
    """A fixed-width table: one line per row, one column per head. The first column numbers
    the rows from `first_row`, or names each row's image file (`files`, for --images)."""
    if not predictions:
        return "(no rows)"
    heads = [p.head for p in predictions[0]]
    keys = list(files) if files is not None else [str(first_row + i)
                                                  for i in range(len(predictions))]
    cells = [[key] + [p.text() for p in row] for key, row in zip(keys, predictions, strict=True)]
    header = ["file" if files is not None else "row"] + heads
    widths = [max(len(r[j]) for r in [header, *cells]) for j in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
