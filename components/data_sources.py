"""The TensorFlow side of each data source (headwise.sources): the ExampleGen component that
reads it in the pipeline, and the Beam transform that reads it into Arrow RecordBatches for the
statistics of `headwise schema`. Keyed by the source's name, as the config names it."""

from __future__ import annotations

from typing import NamedTuple

from components import csv_example_gen, parquet_example_gen
from headwise import sources


class Reading(NamedTuple):
    example_gen: type  # a FileBasedExampleGen over the staged files of this source
    record_batches: type  # (pattern, missing_values, image_columns, images_dir) -> PTransform


READINGS: dict[str, Reading] = {
    sources.CsvSource.name: Reading(csv_example_gen.CsvExampleGen,
                                    csv_example_gen.CsvToRecordBatches),
    sources.ParquetSource.name: Reading(parquet_example_gen.ParquetExampleGen,
                                        parquet_example_gen.ParquetToRecordBatches),
}
if set(READINGS) != set(sources.SOURCES):
    raise ImportError(f"components.data_sources.READINGS {sorted(READINGS)} and "
                      f"headwise.sources.SOURCES {sorted(sources.SOURCES)} differ")
