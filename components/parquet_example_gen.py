"""ParquetExampleGen: Parquet files -> tf.Examples, with the same data rules as the CSV reading
(components.csv_example_gen), for `data.parquet` (headwise.sources.ParquetSource).

TFX ships a Parquet executor (custom_executors/parquet_executor.py), but its row -> tf.Example
conversion (`dict_to_example`) writes every falsy value as a missing one: a 0, 0.0 or "" would
become a missing value. This reading keeps the values and follows headwise's rules instead:
  * a column's Parquet type decides its feature's type (headwise.sources.parquet_kind): whole
    numbers and booleans int64, other numbers float, text, bytes, dates and times (ISO 8601
    text) bytes; a list column holds several values;
  * a null, and a value whose text is one of `data.missing_values` (compared stripped; a float
    NaN is "nan"), is a missing value: an empty value list of the column's type, exactly as
    the CSV reading writes an empty cell, so the same rows give byte-identical examples (and
    so the same splits);
  * each file is read in bounded batches, inside Beam (any runner; gs://, s3:// through
    pyarrow's file systems).
`ParquetToRecordBatches` gives the same values to TFDV as the CSV reading does (a list per row,
a missing value null): what `headwise schema` computes statistics on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import tensorflow as tf
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components import example_splits
from components.csv_example_gen import Settings, executor_settings
from headwise.config import DEFAULT_MISSING_VALUES
from headwise.sources import BYTES, FLOAT, INT, parquet_kind

BATCH_ROWS = 8192  # rows read at a time from a file


def _missing(value, markers: frozenset) -> bool:
    if value is None:
        return True
    if isinstance(value, bytes):
        return value.strip().decode("utf-8", "replace") in markers
    text = value if isinstance(value, str) else ("nan" if isinstance(value, float)
                                                and math.isnan(value) else str(value))
    return text.strip() in markers


def _feature(kind: str, values: list) -> tf.train.Feature:
    if kind == INT:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if kind == FLOAT:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]))


def _python_values(column: pa.Array, kind: str) -> list:
    """A column's values as Python objects: dates and times as ISO text, dictionary-encoded
    columns decoded, decimals as floats (by `_feature`)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    t = column.type
    item = t.value_type if pa.types.is_list(t) or pa.types.is_large_list(t) else t
    if kind == BYTES and pa.types.is_temporal(item):
        column = pc.cast(column, pa.string() if item is t else pa.list_(pa.string()))
    return column.to_pylist()


def _columns(batch: pa.RecordBatch, markers: frozenset, source: str
             ) -> list[tuple[str, str | None, list[list | None]]]:
    """Per column of the batch: (name, its kind (None: a column of nulls alone, which has no
    type, as a CSV's empty column), per row its present values (None: missing))."""
    out = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_null(column.type):
            out.append((name, None, [None] * batch.num_rows))
            continue
        kind = parquet_kind(column.type)
        if kind is None:
            raise ValueError(f"{source}: column {name!r}: Parquet type {column.type} cannot go "
                             "into a tf.Example; cast it to a number or text when writing the "
                             "file")
        rows = []
        for v in _python_values(column, kind):
            if isinstance(v, list):
                rows.append([x for x in v if not _missing(x, markers)])
            else:
                rows.append(None if _missing(v, markers) else [v])
        out.append((name, kind, rows))
    return out


def batch_to_examples(batch: pa.RecordBatch, markers: frozenset,
                      source: str = "") -> Iterator[tf.train.Example]:
    """Rows of a RecordBatch -> tf.Examples (see the module docstring)."""
    columns = _columns(batch, markers, source)
    for i in range(batch.num_rows):
        feature = {name: tf.train.Feature() if kind is None else _feature(kind, rows[i] or [])
                   for name, kind, rows in columns}
        yield tf.train.Example(features=tf.train.Features(feature=feature))


# The Arrow types the CSV reading gives TFDV (tfx_bsl's csv_decoder), per kind.
ARROW_TYPES = {INT: pa.large_list(pa.int64()), FLOAT: pa.large_list(pa.float32()),
               BYTES: pa.large_list(pa.large_binary())}


def batch_to_record_batch(batch: pa.RecordBatch, markers: frozenset,
                          source: str = "") -> pa.RecordBatch:
    """A RecordBatch as the CSV reading hands it to TFDV: every column a list of values per
    row, a missing value null (TFDV counts it missing, which the curated schema's presence
    reads), in the file's column order."""
    arrays = []
    for _, kind, rows in _columns(batch, markers, source):
        if kind is None:
            arrays.append(pa.nulls(batch.num_rows))
            continue
        if kind == BYTES:
            rows = [None if r is None else [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                                            for v in r] for r in rows]
        elif kind == FLOAT:
            rows = [None if r is None else [float(v) for v in r] for r in rows]
        arrays.append(pa.array(rows, type=ARROW_TYPES[kind]))
    return pa.RecordBatch.from_arrays(arrays, batch.schema.names)


class _ReadBatches(beam.DoFn):
    """A Parquet file's path -> `convert(batch, markers, path)` of each of its batches."""

    def __init__(self, markers: frozenset, convert):
        super().__init__()
        self._markers, self._convert = markers, convert

    def process(self, path: str):
        # pyarrow's own file systems (local, gs://, s3://, hdfs://): its reader needs a
        # random-access file, which tf.io.gfile's file objects are not.
        source = path
        if "://" in path:
            fs, inner = pafs.FileSystem.from_uri(path)
            source = fs.open_input_file(inner)
        for batch in pq.ParquetFile(source).iter_batches(batch_size=BATCH_ROWS):
            out = self._convert(batch, self._markers, path)
            yield from ([out] if isinstance(out, pa.RecordBatch) else out)


def _files(files: str | Sequence[str]) -> list[str]:
    found = sorted(fileio.glob(files)) if isinstance(files, str) else list(files)
    if not found:
        raise RuntimeError(f"no Parquet file matches {files}")
    return found


class ParquetToExamples(beam.PTransform):
    """Parquet files (a glob, or a list of files) -> tf.Examples, missing values and markers as
    empty value lists."""

    def __init__(self, files: str | Sequence[str],
                 missing_values: Sequence[str] = DEFAULT_MISSING_VALUES):
        super().__init__()
        self._files = files
        self._markers = frozenset(["", *missing_values])

    def expand(self, pipeline):
        return (pipeline
                | "Files" >> beam.Create(_files(self._files))
                | "Read" >> beam.ParDo(_ReadBatches(self._markers, batch_to_examples)))


class ParquetToRecordBatches(beam.PTransform):
    """Parquet files -> Arrow RecordBatches as the CSV reading gives them to TFDV (a missing
    value is null; `batch_to_record_batch`): what `headwise schema` computes statistics on.
    (`image_columns` and `images_dir` exist for the CSV reading's signature; Parquet data has no
    image columns.)"""

    def __init__(self, files: str | Sequence[str],
                 missing_values: Sequence[str] = DEFAULT_MISSING_VALUES,
                 image_columns: Sequence[str] = (), images_dir: str = ""):
        super().__init__()
        if image_columns:
            raise ValueError("image features read files that a CSV's cells name (data.csv)")
        self._files = files
        self._markers = frozenset(["", *missing_values])

    def expand(self, pipeline):
        return (pipeline
                | "Files" >> beam.Create(_files(self._files))
                | "Read" >> beam.ParDo(_ReadBatches(self._markers, batch_to_record_batch)))


def batch_to_serialized(batch: pa.RecordBatch, markers: frozenset, source: str = ""
                        ) -> list[list[bytes]]:
    """A RecordBatch -> [its rows' serialised tf.Examples] (one block: components.example_splits),
    serialised as TFX's ExampleGen serialises them (deterministic)."""
    return [[e.SerializeToString(deterministic=True)
             for e in batch_to_examples(batch, markers, source)]]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _parquet_to_example_blocks(pipeline, exec_properties, split_pattern):
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    return (pipeline
            | "Files" >> beam.Create(_files(pattern))
            | "Read" >> beam.ParDo(_ReadBatches(
                frozenset(["", *executor_settings(exec_properties).missing_values]),
                batch_to_serialized)))


class Executor(example_splits.BlockExampleGenExecutor):
    """Splits and writes the batches' examples (components.example_splits)."""

    def GetInputSourceToBlocksPTransform(self) -> beam.PTransform:
        return _parquet_to_example_blocks


class ParquetExampleGen(example_gen_component.FileBasedExampleGen):
    """TFX's file-based ExampleGen (inputs, outputs, splitting, spans) over Parquet files, with
    `missing_values`. The image arguments mirror CsvExampleGen's; Parquet data has no image
    columns."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, output_config: example_gen_pb2.Output,
                 missing_values: Sequence[str] = DEFAULT_MISSING_VALUES,
                 image_columns: Sequence[str] = (), images_dir: str = "",
                 images_version: str = ""):
        if image_columns:
            raise ValueError("image features read files that a CSV's cells name (data.csv)")
        config = example_gen_pb2.CustomConfig()
        config.custom_config.Pack(Settings(tuple(missing_values)).to_struct())
        super().__init__(input_base=input_base, output_config=output_config,
                         custom_config=config)
