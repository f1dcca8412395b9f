"""CsvExampleGen with the data settings of the heads config: TFX's CSV reading, plus
missing-value markers and the CSV conventions that spreadsheet exports use, read a block of rows
at a time.

TFX's CsvExampleGen treats only an empty cell as missing: a column with `NA` cells is typed as
text, and Transform later fails on it with a cast error that names no column. It also reads,
types and converts every cell in Python (about 1,400 rows/s on census-income's 43 columns).
This executor writes the stock tf.Examples, byte for byte (same type inference over the whole
data, same values, so the same hash split), with these differences:
  * rows are read with pyarrow's CSV reader and converted a block at a time, column by column
    (headwise.csv_blocks): tens of times faster;
  * a cell whose stripped text is one of `data.missing_values` is written as an empty value
    list, exactly like an empty cell (so statistics, schema, Transform and labels all see a
    missing value), before the column types are inferred;
  * a UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name, and
    blanks around column names are dropped (CRLF line ends are read as TFX reads them);
  * the cells of image columns (`image` features) name files under the images folder
    (`data.images`): each is replaced by the file's bytes, read with tf.io.gfile (so gs:// works)
    and decoded once to validate it, before the column types are inferred: an image column is
    always bytes, even where its file names look like numbers. A missing, unreadable or
    undecodable file stops the job with an `ImageError` that names the CSV, the column, the file
    and the row. An empty (or marker) cell stays a missing value.
Everything stays inside Beam (one file per element, its blocks after it), so it runs on any
runner. The examples are split, shuffled and written a block at a time too
(components.example_splits: TFX's split rule, TFX's files), not one Beam element per example.

The component's custom config is a Struct {missing_values: [...], image_columns: [...],
images_dir: "..."}; the ListValue of markers that earlier versions wrote is still read.

`CsvToRecordBatches` is what `headwise schema` reads the data with: the same blocks and types,
so the curated schema's types are the ones ExampleGen will write.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Sequence

import apache_beam as beam
import pyarrow as pa
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components import example_splits
from headwise import csv_blocks, data_check
from headwise.config import DEFAULT_MISSING_VALUES
from headwise.image_files import FORMATS, image_path

SHOWN_CHARS = 40  # of each cell, where an error message shows the row


class ImageError(ValueError):
    """An image column's cell names a file that is missing, unreadable or not an image."""


def column_names(path: str) -> list[str]:
    """The header's column names (headwise.data_check.column_names: a byte-order mark and
    blanks around names removed); any file system tf.io.gfile reads."""
    with fileio.open(path, "rb") as fh:
        first = fh.readline().decode("utf-8")
    return data_check.column_names(next(csv.reader([first])))


class ReadImages(beam.DoFn):
    """Blocks of rows (csv_blocks.read_blocks) -> the same blocks with each image column's
    cells (file names) replaced by those files' bytes, validated by decoding them; a missing
    cell stays missing.

    Beam keeps no line numbers, so an error shows the row's cells instead (what the CSV says
    before any file was read), which is enough to find the line; `headwise run`'s pre-flight
    check (headwise.data_check) names the line itself for a local folder."""

    def __init__(self, names: Sequence[str], image_columns: Sequence[str], images_dir: str,
                 source: str):
        super().__init__()
        self._names = list(names)
        self._columns = [(self._names.index(c), c) for c in image_columns]
        self._dir, self._source = images_dir, source

    def process(self, block: pa.RecordBatch):
        arrays = list(block.columns)
        for i, column in self._columns:
            files = []
            for row, cell in enumerate(arrays[i].to_pylist()):
                name = cell.strip() if cell is not None else b""
                files.append(self._read(name.decode("utf-8", "replace"), column,
                                        self._cells(block, row)) if name else None)
            arrays[i] = pa.array(files, pa.large_binary())
        yield pa.RecordBatch.from_arrays(arrays, block.schema.names)

    @staticmethod
    def _cells(block: pa.RecordBatch, row: int) -> list:
        return [c[row].as_py() or b"" for c in block.columns]

    def _read(self, name: str, column: str, cells: list) -> bytes:
        path = image_path(self._dir, name)
        try:
            with tf.io.gfile.GFile(path, "rb") as fh:
                data = fh.read()
        except tf.errors.NotFoundError:
            raise self._error(column, cells, path, "no such file",
                              "correct the name or add the file") from None
        except (tf.errors.OpError, OSError) as e:
            raise self._error(column, cells, path,
                              f"cannot be read ({getattr(e, 'message', None) or e})",
                              "make it a readable file") from None
        try:
            tf.io.decode_image(data, expand_animations=False)
        except (tf.errors.OpError, ValueError) as e:
            why = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
            why = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "", why)  # TF's op noise
            raise self._error(column, cells, path,
                              f"not a {FORMATS} image, or a damaged one ({len(data)} bytes; "
                              f"decoding failed: {why})",
                              f"replace it with a {FORMATS} file") from None
        return data

    def _error(self, column: str, cells: list, path: str, problem: str, fix: str) -> ImageError:
        row = ", ".join(f"{n}={self._shown(c)}" for n, c in zip(self._names, cells, strict=True))
        return ImageError(
            f"{self._source}: column {column!r} (an image feature): image file {path}: {problem}. "
            f"The row: {row}. The column's cells name image files relative to the images folder "
            f"{self._dir} (data.images in the heads config); {fix}, or leave the cell empty "
            "(a missing image)")

    @staticmethod
    def _shown(cell: bytes) -> str:
        text = cell.decode("utf-8", "replace")
        return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


class ReadBlocks(beam.DoFn):
    """A CSV file's path -> its rows in blocks (csv_blocks.read_blocks), markers made missing;
    any file system (and compression) Beam opens."""

    def __init__(self, names: Sequence[str], markers: frozenset):
        super().__init__()
        self._names, self._markers = list(names), markers

    def process(self, path: str):
        with beam.io.filesystems.FileSystems.open(path) as fh:
            yield from csv_blocks.read_blocks(fh, path, self._names, self._markers)


def _files(pattern: str | Sequence[str]) -> list[str]:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return [f for p in patterns for f in sorted(fileio.glob(p))]


def _read_blocks(pipeline, pattern: str | Sequence[str], markers: frozenset,
                 image_columns: Sequence[str] = (), images_dir: str = ""):
    """CSV files (one header each, all the same) -> (blocks of rows with markers made missing
    and image file names made the files' bytes, the column types inferred over all of them, as
    a side input): TFX's CSV reading, where quoted fields may span lines. What both transforms
    below are built from. `images_dir` "" is the (first) CSV file's folder."""
    files = _files(pattern)
    if not files:
        raise RuntimeError(f"no CSV file matches {pattern}")
    names = column_names(files[0])
    for f in files[1:]:
        if column_names(f) != names:
            raise RuntimeError(f"{f}: its header differs from {files[0]}'s")
    absent = [c for c in image_columns if c not in names]
    if absent:
        raise RuntimeError(f"{files[0]}: no column {absent[0]!r} in its header, which the "
                           f"image feature of that name reads (columns: {names})")
    blocks = (pipeline
              | "Files" >> beam.Create(files)
              | "Read" >> beam.ParDo(ReadBlocks(names, markers)))
    if image_columns:
        # Before the type inference: the column is typed by the files' bytes (STRING), never
        # by names such as 0001 that read as numbers.
        source = files[0] if len(files) == 1 else f"one of the {len(files)} CSV files {pattern}"
        blocks = blocks | "Images" >> beam.ParDo(ReadImages(
            names, image_columns, images_dir or os.path.dirname(files[0]), source))
    types = beam.pvalue.AsSingleton(
        blocks
        | "BlockTypes" >> beam.Map(csv_blocks.block_types, tuple(image_columns))
        | "InferTypes" >> beam.CombineGlobally(csv_blocks.merge_types))
    return blocks, types


class _CsvTransform(beam.PTransform):
    """`image_columns`: the columns whose cells name image files under `images_dir` (default:
    the CSV's folder)."""

    def __init__(self, pattern: str | Sequence[str],
                 missing_values: Sequence[str] = DEFAULT_MISSING_VALUES,
                 image_columns: Sequence[str] = (), images_dir: str = ""):
        super().__init__()
        self._pattern = pattern
        self._markers = frozenset(["", *missing_values])
        self._images = (tuple(image_columns), images_dir)


class CsvToExampleBlocks(_CsvTransform):
    """CSV files -> lists of serialised tf.Examples (one per block of rows), as TFX's
    CsvExampleGen writes them, markers read as missing (an empty value list)."""

    def expand(self, pipeline):
        blocks, types = _read_blocks(pipeline, self._pattern, self._markers, *self._images)
        return blocks | "ToExamples" >> beam.Map(csv_blocks.to_examples, types)


class CsvToExamples(CsvToExampleBlocks):
    """CSV files -> serialised tf.Examples, one element each (CsvToExampleBlocks' records)."""

    def expand(self, pipeline):
        return super().expand(pipeline) | "Records" >> beam.FlatMap(lambda block: block)


class CsvToRecordBatches(_CsvTransform):
    """CSV files -> Arrow RecordBatches, as TFDV reads a CSV (a missing cell is null, which
    TFDV's statistics count as missing), markers read as missing, with the very column types
    CsvToExamples gives: what `headwise schema` computes statistics on."""

    def expand(self, pipeline):
        blocks, types = _read_blocks(pipeline, self._pattern, self._markers, *self._images)
        return blocks | "ToRecordBatch" >> beam.Map(csv_blocks.to_record_batch, types)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the executor reads from the component's custom config."""

    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    image_columns: tuple[str, ...] = ()
    images_dir: str = ""  # "": the CSV's folder

    def to_struct(self) -> struct_pb2.Struct:
        s = struct_pb2.Struct()
        s.update({"missing_values": list(self.missing_values),
                  "image_columns": list(self.image_columns), "images_dir": self.images_dir})
        return s


def executor_settings(exec_properties) -> Settings:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return Settings()
    config = example_gen_pb2.CustomConfig()
    from tfx.utils import proto_utils

    proto_utils.json_to_proto(raw, config)
    if config.custom_config.Is(struct_pb2.ListValue.DESCRIPTOR):  # markers only (before images)
        values = struct_pb2.ListValue()
        config.custom_config.Unpack(values)
        return Settings(missing_values=tuple(v.string_value for v in values.values))
    s = struct_pb2.Struct()
    config.custom_config.Unpack(s)
    fields = s.fields
    return Settings(
        missing_values=tuple(v.string_value for v in fields["missing_values"].list_value.values),
        image_columns=tuple(v.string_value for v in fields["image_columns"].list_value.values),
        images_dir=fields["images_dir"].string_value)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _csv_to_example_blocks(pipeline, exec_properties, split_pattern):
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    settings = executor_settings(exec_properties)
    return pipeline | CsvToExampleBlocks(pattern, settings.missing_values,
                                         settings.image_columns, settings.images_dir)


class Executor(example_splits.BlockExampleGenExecutor):
    """Splits and writes the blocks' examples (components.example_splits)."""

    def GetInputSourceToBlocksPTransform(self) -> beam.PTransform:
        return _csv_to_example_blocks


class CsvExampleGen(example_gen_component.FileBasedExampleGen):
    """TFX's CsvExampleGen (inputs, outputs, splitting, spans) with `missing_values`, and
    `image_columns` whose cells name files under `images_dir` ("": the CSV's folder; give the
    folder explicitly where the CSV is a staged copy)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, output_config: example_gen_pb2.Output,
                 missing_values: Sequence[str] = DEFAULT_MISSING_VALUES,
                 image_columns: Sequence[str] = (), images_dir: str = "",
                 images_version: str = ""):
        """`images_version`: a fingerprint of the images folder's files. The executor does not
        read it; TFX's cache does (ExampleGen's own fingerprint covers the CSV only), so
        replacing an image file runs ExampleGen again."""
        config = example_gen_pb2.CustomConfig()
        struct = Settings(tuple(missing_values), tuple(image_columns), images_dir).to_struct()
        if images_version:
            struct.fields["images_version"].string_value = images_version
        config.custom_config.Pack(struct)
        super().__init__(input_base=input_base, output_config=output_config,
                         custom_config=config)


