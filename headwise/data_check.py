"""Pre-flight check of the data before any Beam job reads it: the CSV scan, and the value
checks that every data source (headwise.sources) runs on its rows.

CsvExampleGen fails on a malformed file deep inside a Beam stack trace (or, for an unbalanced
quote, may silently merge rows). This check reads the file once, as bytes, and stops with a
message that names the file, the line and what is wrong: not UTF-8, a header without rows, a row
with more or fewer fields than the header, a quoted field that never closes, a blank line.

With the heads config, the same pass also checks what the config says about values, where a
Beam job would otherwise fail late or train on garbage:
  * a numeric column (a numeric or bucketized feature, a regression label) holds numbers or
    missing-value markers (`data.missing_values`) only: the first other cell stops the run,
    naming line, column and value, and the setting that would make it a missing value;
  * a binary label holds 0/1 or true/false, or, with `positive`, at most two values, one of
    them the positive one;
  * a multiclass label matches its `classes` at least once (else the encoding is wrong: e.g.
    1.0 vs "one"); a multilabel label is split into tags, which must include `classes` (else
    the delimiter or the names are wrong).
  * an image column's cell that is not missing names a file in the images folder
    (`data.images`; an absolute path is used as it is) whose first bytes are a PNG, JPEG, GIF
    or BMP signature (headwise.image_files; only HEADER_BYTES of each file are read, so the
    check stays fast). Images in a bucket (gs://...) are left to ExampleGen, which reads and
    decodes every file.
Ranges, NaN/inf, unseen categories and missing shares are the data contract's job (the curated
schema, enforced by ExampleValidator and DataValidationGate).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from typing import Any

from headwise import tasks
from headwise.errors import ConfigError
from headwise.image_files import FORMATS, HEADER_BYTES, image_format, image_path

MAX_SHOWN = 5  # offending values a message lists


BOM = "\ufeff"  # a UTF-8 byte-order mark, as Excel's "CSV UTF-8" writes


def column_names(header: list[str]) -> list[str]:
    """A CSV header row's cells -> the column names: a byte-order mark before the first name
    and blanks around every name dropped. The one rule for every reader of a CSV header (the
    pre-flight scan, headwise.sources, ExampleGen)."""
    if header:
        header = [header[0].lstrip(BOM), *header[1:]]
    return [c.strip() for c in header]


class DataError(ConfigError):
    """The data file cannot be read as the CSV the pipeline expects."""


def _lines(path: str, fh) -> Iterator[str]:
    for number, raw in enumerate(fh, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}, line {number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                f"{e.start + 1}); re-export the file as UTF-8") from None


class Values:
    """The value checks of one pass over the rows (see the module docstring), on text cells:
    `row(number, cells)` for each row, then `finish()`. `cfg` is the PipelineConfig; `path`
    and `unit` ("line" of a CSV, "row" of a Parquet file) say where a message points."""

    def __init__(self, cfg: Any, header: list[str], path: str, unit: str = "line"):
        self.cfg, self.path, self.unit = cfg, path, unit
        self.markers = set(cfg.missing_values)
        index = {name: i for i, name in enumerate(header)}
        numeric = {f.name: f"features.{f.name} is {f.type}" for f in cfg.features
                   if f.type in ("numeric", "bucketized")}
        numeric.update({h.label: f"the label of {h.task} head {h.name!r}"
                        for h in cfg.heads if tasks.of(h).numeric_label})
        self.numeric = [(index[c], c, why) for c, why in numeric.items() if c in index]
        # A numeric label's values, one by one, against its task's rule (e.g. counts).
        self.label_values = [(index[h.label], h) for h in cfg.heads
                             if tasks.of(h).numeric_label and h.label in index]
        self.labels = [(index[h.label], h) for h in cfg.heads
                       if not tasks.of(h).numeric_label and h.label in index]
        self.seen: dict[str, Counter] = {h.name: Counter() for _, h in self.labels}
        self.images = [(index[f.name], f.name) for f in cfg.image_features if f.name in index]
        self.images_dir = cfg.resolve_images_dir() if self.images else ""

    def row(self, number: int, row: list[str]) -> None:
        for i, column, why in self.numeric:
            cell = row[i].strip()
            if cell in self.markers:
                continue
            try:
                float(cell)
            except ValueError:
                raise DataError(
                    f"{self.path}, {self.unit} {number}, column {column!r}: {row[i]!r} is not a "
                    f"number, and the column must be numeric ({why}). If {cell!r} means a missing "
                    f"value, add it to data.missing_values in {self.cfg.source} (now "
                    f"{list(self.cfg.missing_values)}); otherwise correct the data") from None
        for i, head in self.label_values:
            cell = row[i].strip()
            if cell in self.markers:
                continue
            why = tasks.of(head).value_error(head, float(cell))
            if why:
                raise DataError(
                    f"{self.path}, {self.unit} {number}, column {head.label!r}: {row[i]!r}: {why} "
                    f"(head {head.name!r} in {self.cfg.source}). Correct the data, or choose "
                    "the task that fits the column")
        for i, column in self.images:
            cell = row[i].strip()
            if cell not in self.markers:
                self._image(number, column, cell)
        for i, head in self.labels:
            cell = row[i].strip()
            if cell in self.markers:
                continue
            seen = self.seen[head.name]
            for value in tasks.of(head).seen(head, cell):
                if len(seen) < 10_000 or value in seen:  # bounded memory on any data
                    seen[value] += 1

    def _image(self, number: int, column: str, name: str) -> None:
        path = image_path(self.images_dir, name)
        if "://" in path:
            return  # a bucket: ExampleGen reads (and decodes) it
        where = f"{self.path}, {self.unit} {number}, column {column!r}: image file {name!r}"
        setting = "data.images" if self.cfg.images_dir is not None else \
            "data.images, not set: the CSV's folder,"
        folder = f"the images folder {self.images_dir} ({setting} in {self.cfg.source})"
        try:
            with open(path, "rb") as fh:
                head = fh.read(HEADER_BYTES)
        except FileNotFoundError:
            raise DataError(
                f"{where}: no such file ({path}). The column's cells name image files in "
                f"{folder}: correct the name or the folder, add the file, or leave the cell "
                "empty (a missing image)") from None
        except OSError as e:
            raise DataError(f"{where}: cannot be read ({path}: {e.strerror}); make it a "
                            "readable image file, or leave the cell empty") from None
        if image_format(head) is None:
            raise DataError(
                f"{where}: not a {FORMATS} image ({path} starts with {head[:8]!r}); replace it "
                f"with a {FORMATS} file, or leave the cell empty (a missing image)")

    def finish(self) -> None:
        for _, head in self.labels:
            why = tasks.of(head).check_labels(head, self.seen[head.name], self._shown)
            if why:
                raise DataError(f"{self._where(head)}: {why}")

    def _where(self, head) -> str:
        i = next(i for i, h in enumerate(self.cfg.heads) if h.name == head.name)
        return (f"{self.path}: heads[{i}] ({head.name}) in {self.cfg.source}: label column "
                f"{head.label!r}")

    @staticmethod
    def _shown(values) -> str:
        values = sorted(values, key=str)
        more = f" and {len(values) - MAX_SHOWN} more" if len(values) > MAX_SHOWN else ""
        return ", ".join(repr(v) for v in values[:MAX_SHOWN]) + more


def check_csv(path: str, cfg: Any = None) -> int:
    """Raise DataError naming file and line for the first structural problem (and, given the
    heads config, the first value problem); return the number of data rows."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e}") from None
    with fh:
        reader = csv.reader(_lines(path, fh), strict=True)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise DataError(f"{path}, line 1: malformed CSV header ({e})") from None
        if not header:
            raise DataError(f"data file {path} is empty (no header row)")
        values = Values(cfg, column_names(header), path) if cfg is not None else None
        rows = 0
        while True:
            start = reader.line_num + 1  # the physical line this record starts on
            try:
                row = next(reader, None)
            except csv.Error as e:
                raise DataError(
                    f"{path}, line {start}: malformed CSV ({e}); a quoted field that starts on "
                    "this line never closes (an unbalanced quote?)") from None
            if row is None:
                break
            if not row:
                raise DataError(f"{path}, line {start}: blank line (remove it)")
            if len(row) != len(header):
                if reader.line_num > start:
                    raise DataError(
                        f"{path}, line {start}: a quoted field that starts on this line runs "
                        f"to line {reader.line_num} (an unbalanced quote?); the row has "
                        f"{len(row)} fields, the header {len(header)}")
                raise DataError(f"{path}, line {start}: {len(row)} fields, the header has "
                                f"{len(header)}")
            if values is not None:
                values.row(start, row)
            rows += 1
    if rows == 0:
        raise DataError(f"data file {path} has a header row but no data rows")
    if values is not None:
        values.finish()
    return rows
