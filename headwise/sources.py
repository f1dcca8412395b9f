"""Data sources: where a pipeline's examples come from, one entry per format, without
TensorFlow.

A config names its data under the source's key: `data.csv: FILE` or `data.parquet: FILE` (a
Parquet file, a folder of Parquet files, or a glob). A source says:
  * `files(path)`: the files the path names;
  * `columns(path)`: the column names (the config's columns are checked against them on load);
  * `check(path, cfg)`: the pre-flight check, before any Beam job: the file's structure and the
    values the config constrains (headwise.data_check), with errors that name the file, the line
    or row, the column and the fix;
  * `stage(path, data_root)`: the copy a local run's ExampleGen reads (only what changed, so
    TFX's cache stays valid).
Reading the data in Beam (ExampleGen's executor, and the statistics `headwise schema` computes)
is the TensorFlow side of the same source: `components.data_sources` keys it by the same name.

The rules every source keeps: a cell whose stripped text is one of `data.missing_values` is a
missing value, as is an empty cell or a null; label values are matched as `headwise.tasks`
says, whatever the column's type.
"""

from __future__ import annotations

import csv
import glob
import os
import shutil
from typing import Any

from headwise import data_check
from headwise.errors import ConfigError


class DataSource:
    """One format of data. Subclasses implement every method."""

    name: str = ""  # its key under `data:` in the config

    def files(self, path: str) -> list[str]:
        raise NotImplementedError

    def columns(self, path: str) -> list[str]:
        raise NotImplementedError

    def check(self, path: str, cfg: Any) -> int:
        """Raise DataError for the first problem; return the number of data rows."""
        raise NotImplementedError

    def stage(self, path: str, data_root: str) -> list[str]:
        """Copy the data into data_root (replacing what another version left); the staged
        files' paths."""
        raise NotImplementedError


OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "'|'"}


def separator_hint(columns) -> str:
    """For a message that lists a CSV's columns: when the header came out as one column that
    holds another separator (a European ';' export, a TSV), what to do; else ''."""
    columns = list(columns)
    if len(columns) != 1:
        return ""
    counts = {sep: columns[0].count(sep) for sep in OTHER_SEPARATORS}
    sep, n = max(counts.items(), key=lambda kv: kv[1])
    if not n:
        return ""
    return (f". The header is one column holding {n} {OTHER_SEPARATORS[sep]}: headwise reads "
            f"comma-separated files (RFC 4180). Write the file with commas, e.g. "
            f"pandas.read_csv(path, sep={sep!r}).to_csv(new_path, index=False)")


def _copy_if_changed(src: str, dst: str) -> None:
    """copy2 keeps the source's mtime, so an unchanged file keeps ExampleGen's input
    fingerprint and the cache stays valid across runs; the rename never leaves a half-copied
    file for ExampleGen to read."""
    if os.path.exists(dst):
        a, b = os.stat(src), os.stat(dst)
        if a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime):
            return
    shutil.copy2(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


def _stage_files(files: list[str], data_root: str, name) -> list[str]:
    os.makedirs(data_root, exist_ok=True)
    staged = [os.path.join(data_root, name(i)) for i in range(len(files))]
    for old in os.listdir(data_root):  # shards of an earlier, larger version
        if os.path.join(data_root, old) not in staged:
            os.remove(os.path.join(data_root, old))
    for src, dst in zip(files, staged, strict=True):
        _copy_if_changed(src, dst)
    return staged


class CsvSource(DataSource):
    """One CSV file with a header row (UTF-8; a byte-order mark and blanks around names are
    dropped)."""

    name = "csv"

    def files(self, path):
        return [path]

    def columns(self, path):
        try:
            with open(path, "rb") as fh:
                first = fh.readline()  # only the header: the rows are checked before a run
            header = next(csv.reader([first.decode("utf-8")]), None)
        except FileNotFoundError:
            raise ConfigError(f"data file not found: {path}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}, line 1 (the header): not UTF-8 text ({e.reason} at "
                              f"byte {e.start + 1})") from None
        except (OSError, csv.Error) as e:
            raise ConfigError(f"cannot read data file {path}: {e}") from None
        if not header:
            raise ConfigError(f"data file {path} is empty (no header row)")
        return data_check.column_names(header)

    def check(self, path, cfg):
        return data_check.check_csv(path, cfg)

    def stage(self, path, data_root):
        return _stage_files([path], data_root, lambda i: "data.csv")


# Parquet column types and how an example holds them (components.parquet_example_gen writes
# them so): whole numbers and booleans as int64, other numbers as float, text, bytes, dates and
# times (as ISO 8601 text) as bytes; a list type holds several values of its item's kind.
INT, FLOAT, BYTES = "int", "float", "bytes"


def parquet_kind(arrow_type) -> str | None:
    """INT, FLOAT or BYTES for a pyarrow type (a list: its items'), None if unsupported."""
    import pyarrow as pa

    t = arrow_type.value_type if _is_list(arrow_type) else arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return INT
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return FLOAT
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_temporal(t)):
        return BYTES
    return None


class ParquetSource(DataSource):
    """A Parquet file, a folder of Parquet files (`*.parquet`, as Spark and warehouses export
    them), or a glob; every file has the same columns and types."""

    name = "parquet"
    BATCH_ROWS = 65_536  # rows per batch the pre-flight check reads (bounded memory)

    def files(self, path):
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "*.parquet")))
            where = f"the folder {path} holds no *.parquet file"
        elif glob.has_magic(path):
            found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
            where = f"no file matches {path}"
        elif os.path.isfile(path):
            return [path]
        else:
            raise ConfigError(f"data file not found: {path}")
        if not found:
            raise ConfigError(f"data.parquet: {where}")
        return found

    def _schema(self, file: str):
        import pyarrow.parquet as pq

        try:
            return pq.read_schema(file)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise data_check.DataError(
                f"{file}: not a readable Parquet file ({e}); write it with a Parquet writer "
                "(pandas.to_parquet, pyarrow, Spark)") from None

    def columns(self, path):
        files = self.files(path)
        first = self._schema(files[0])
        for f in files[1:]:
            other = self._schema(f)
            if other.names != first.names or other.types != first.types:
                diff = next((f"{n}: {a} vs {b}" for n, a, b in
                             zip(first.names, first.types, other.types, strict=False) if a != b),
                            f"columns {first.names} vs {other.names}")
                raise ConfigError(f"{f}: its columns differ from {files[0]}'s ({diff}); every "
                                  "file of the data must have the same columns and types")
        return list(first.names)

    def check(self, path, cfg):
        import pyarrow.parquet as pq

        files = self.files(path)
        columns = self.columns(path)
        schema = self._schema(files[0])
        types = {n: t for n, t in zip(schema.names, schema.types, strict=True)}
        self._check_types(files[0], types, cfg)
        # Only the columns the config uses are read, and checked as the CSV's cells are.
        needed = [c for c in columns if c in set(cfg.columns)]
        values = data_check.Values(cfg, needed, files[0], unit="row")
        rows = 0
        for f in files:
            values.path = f
            number = 0
            for batch in pq.ParquetFile(f).iter_batches(batch_size=self.BATCH_ROWS,
                                                        columns=needed):
                cells = [[_cell(v) for v in batch.column(c).to_pylist()] for c in needed]
                for row in zip(*cells, strict=True):
                    number += 1
                    values.row(number, list(row))
            rows += number
        if rows == 0:
            raise data_check.DataError(f"{path}: the Parquet data has no rows")
        values.path = path
        values.finish()
        return rows

    def _check_types(self, file: str, types: dict, cfg) -> None:
        """Numeric features and numeric labels need number columns; every used column a type an
        example can hold."""
        from headwise import tasks

        numeric = {f.name: f"features.{f.name} is {f.type}" for f in cfg.features
                   if f.type in ("numeric", "bucketized")}
        numeric.update({h.label: f"the label of {h.task} head {h.name!r}" for h in cfg.heads
                        if tasks.of(h).numeric_label})
        for f in cfg.image_features:
            raise data_check.DataError(
                f"{cfg.source}: features.{f.name}: image features read files that a CSV's "
                "cells name (data.csv with data.images); with Parquet data, convert them first")
        import pyarrow as pa

        for column in (*(f.name for f in cfg.features), *cfg.label_columns):
            if pa.types.is_null(types[column]):
                continue  # no value at all: the data contract's presence check reports it
            kind = parquet_kind(types[column])
            if kind is None or _is_list(types[column]):
                raise data_check.DataError(
                    f"{file}, column {column!r}: type {types[column]}; a column the config "
                    "uses holds one number or one text per row (null: missing): cast it when "
                    "writing the file (a list of labels: join it into text with the head's "
                    "delimiter)")
            if column in numeric and kind not in (INT, FLOAT):
                raise data_check.DataError(
                    f"{file}, column {column!r}: type {types[column]}, and the column must be "
                    f"numeric ({numeric[column]}). Cast it to a number when writing the file, "
                    f"or change the config ({cfg.source})")

    def stage(self, path, data_root):
        return _stage_files(self.files(path), data_root, lambda i: f"part-{i:05d}.parquet")

    def rows(self, path: str) -> list[dict[str, Any]]:
        """Every row as a dict (null: None), for clients (`headwise predict --parquet`)."""
        import pyarrow.parquet as pq

        out = []
        for f in self.files(path):
            try:
                out += pq.read_table(f).to_pylist()
            except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
                raise ConfigError(f"{f}: not a readable Parquet file ({e})") from None
        return out


def _is_list(arrow_type) -> bool:
    import pyarrow as pa

    return (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type))


def _cell(value: Any) -> str:
    """A Parquet value as the text the pre-flight value checks read (None: an empty cell)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


SOURCES: dict[str, DataSource] = {s.name: s for s in (CsvSource(), ParquetSource())}


def of(cfg: Any) -> DataSource:
    """The source of a PipelineConfig's data (`data.<format>`)."""
    return SOURCES[cfg.data_format]
