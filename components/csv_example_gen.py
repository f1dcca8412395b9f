"""CsvExampleGen with the data settings of the heads config: TFX's CSV reading, plus
missing-value markers and the CSV conventions that spreadsheet exports use.

TFX's CsvExampleGen treats only an empty cell as missing: a column with `NA` cells is typed as
text, and Transform later fails on it with a cast error that names no column. This executor is
the stock one (same reading, same type inference over the whole data, same tf.Examples) with
three differences:
  * a cell whose stripped text is one of `data.missing_values` is written as an empty value
    list, exactly like an empty cell (so statistics, schema, Transform and labels all see a
    missing value), before the column types are inferred;
  * a UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name, and
    blanks around column names are dropped (CRLF line ends are read as TFX reads them).
Everything stays inside Beam, so it runs on any runner.

`CsvToExamples` is also what `headwise schema` reads the data with, so the curated schema's
types are the ones ExampleGen will write.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import apache_beam as beam
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx.components.example_gen import component as example_gen_component
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.csv_example_gen import executor as stock
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx_bsl.coders import csv_decoder

from headwise.config import DEFAULT_MISSING_VALUES

BOM = "\ufeff"


def column_names(path: str) -> list[str]:
    """The header's column names: a UTF-8 byte-order mark and blanks around names removed."""
    with fileio.open(path, "rb") as fh:
        first = fh.readline().decode("utf-8")
    return [c.strip() for c in next(csv.reader([first.lstrip(BOM)]))]


def blank_markers(cells: list, markers: frozenset) -> list:
    """One parsed row with each missing-value marker (compared stripped) made an empty cell;
    every other cell as it is."""
    return [b"" if c.strip().decode("utf-8", "replace") in markers else c for c in cells]


def _read_cells(pipeline, pattern: str, markers: frozenset):
    """CSV files (one header each, all the same) -> (parsed rows with markers made empty cells,
    the column types inferred over all of them, as a side input): TFX's CSV reading, where
    quoted fields may span lines. What both transforms below are built from."""
    files = fileio.glob(pattern)
    if not files:
        raise RuntimeError(f"no CSV file matches {pattern}")
    names = column_names(files[0])
    for f in files[1:]:
        if column_names(f) != names:
            raise RuntimeError(f"{f}: its header differs from {files[0]}'s")
    rows = (pipeline
            | "Files" >> beam.Create(files)
            | "Read" >> beam.ParDo(stock._ReadCsvRecordsFromTextFile())  # noqa: SLF001
            | "Parse" >> beam.ParDo(csv_decoder.ParseCSVLine(delimiter=","))
            | "Cells" >> beam.Keys()
            | "Missing" >> beam.Map(blank_markers, markers))
    types = beam.pvalue.AsSingleton(
        rows | "InferTypes" >> beam.CombineGlobally(
            csv_decoder.ColumnTypeInferrer(names, skip_blank_lines=True)))
    return rows, types


class _CsvTransform(beam.PTransform):
    def __init__(self, pattern: str, missing_values: Sequence[str] = DEFAULT_MISSING_VALUES):
        super().__init__()
        self._pattern = pattern
        self._markers = frozenset(["", *missing_values])


class CsvToExamples(_CsvTransform):
    """CSV files -> tf.Examples, as TFX's CsvExampleGen writes them, markers read as missing
    (an empty value list)."""

    def expand(self, pipeline):
        rows, types = _read_cells(pipeline, self._pattern, self._markers)
        return rows | "ToExample" >> beam.ParDo(
            stock._ParsedCsvToTfExample(), types)  # noqa: SLF001


class CsvToRecordBatches(_CsvTransform):
    """CSV files -> Arrow RecordBatches, as TFDV reads a CSV (a missing cell is null, which
    TFDV's statistics count as missing), markers read as missing, with the very column types
    CsvToExamples gives: what `headwise schema` computes statistics on."""

    def expand(self, pipeline):
        rows, types = _read_cells(pipeline, self._pattern, self._markers)
        return (rows
                | "WithRawLine" >> beam.Map(lambda cells: (cells, "")).with_output_types(
                    tuple[list[bytes], str])  # no raw-record column is asked for
                | "Batch" >> beam.BatchElements(min_batch_size=100, max_batch_size=1000)
                | "ToRecordBatch" >> beam.ParDo(
                    csv_decoder.BatchedCSVRowsToRecordBatch(skip_blank_lines=True), types))


def _missing_values(exec_properties) -> list[str]:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return list(DEFAULT_MISSING_VALUES)
    config = example_gen_pb2.CustomConfig()
    from tfx.utils import proto_utils

    proto_utils.json_to_proto(raw, config)
    values = struct_pb2.ListValue()
    config.custom_config.Unpack(values)
    return [v.string_value for v in values.values]


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _csv_to_example(pipeline, exec_properties, split_pattern):
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    return pipeline | CsvToExamples(pattern, _missing_values(exec_properties))


class Executor(BaseExampleGenExecutor):
    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _csv_to_example


class CsvExampleGen(example_gen_component.FileBasedExampleGen):
    """TFX's CsvExampleGen (inputs, outputs, splitting, spans) with `missing_values`."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, input_base: str, output_config: example_gen_pb2.Output,
                 missing_values: Sequence[str] = DEFAULT_MISSING_VALUES):
        config = example_gen_pb2.CustomConfig()
        config.custom_config.Pack(struct_pb2.ListValue(
            values=[struct_pb2.Value(string_value=v) for v in missing_values]))
        super().__init__(input_base=input_base, output_config=output_config,
                         custom_config=config)


