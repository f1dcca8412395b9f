"""ExampleGen's block-at-a-time CSV reading (headwise.csv_blocks) against TFX's own per-row
code: the stock CsvExampleGen's DoFns and tfx_bsl's type inference and RecordBatch decoder,
called row by row here. Byte-for-byte equal examples are what keeps ExampleGen's hash split
(sha256 of the serialised example) the split TFX's CsvExampleGen makes. No pipeline run."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from tfx.components.example_gen.csv_example_gen import executor as stock
from tfx_bsl.coders import csv_decoder

from components.csv_example_gen import CsvToExamples, CsvToRecordBatches, column_names
from headwise import csv_blocks
from headwise.config import DEFAULT_MISSING_VALUES

MARKERS = frozenset(["", *DEFAULT_MISSING_VALUES])

# Every kind of cell the type rules and conversions treat specially: markers with blanks
# around them, integers Python reads but a plain cast would not (+5, 1_000, blanks), decimals,
# nan/inf, an integer beyond int64 (text for tfx_bsl), hex (text for Python, a number for a
# plain cast), quoted commas and line breaks, non-ASCII text, a column with no value at all.
HOSTILE = (
    "id,n,x,big,word,mixed,empty,hexish,note\r\n"
    "1, 7 ,1.5,1,a,+5,,0x10,plain\r\n"
    "2,NA,nan,9223372036854775807,\" b,c \",1_000,NA,1,\"two\r\nlines\"\r\n"
    "3, -3,-inf,2, ? ,3.25,,2,caf\u00e9\r\n"
    "4,,1e3,3,,,  ,3,\"say \"\"hi\"\"\"\r\n"
    "5,0012,.5,9223372036854775808,\u00fcber,+nan,,4,\r\n"
    "6,-0, 2 ,4,x,7,,5,end\r\n")


def stock_rows(path: str) -> list[list[bytes]]:
    """Parsed rows as TFX reads them, each marker made an empty cell (what headwise's executor
    did before it read blocks)."""
    parse = csv_decoder.ParseCSVLine(delimiter=",")
    parse.setup()
    rows = []
    for line in stock._ReadCsvRecordsFromTextFile().process(path):  # noqa: SLF001
        cells = next(iter(parse.process(line)))[0]
        rows.append([b"" if c.strip().decode("utf-8", "replace") in MARKERS else c
                     for c in cells])
    return rows


def stock_types(path: str, rows) -> list:
    inferrer = csv_decoder.ColumnTypeInferrer(column_names(path), skip_blank_lines=True)
    acc = inferrer.create_accumulator()
    for row in rows:
        acc = inferrer.add_input(acc, row)
    return inferrer.extract_output(acc)


def stock_examples(path: str) -> list[bytes]:
    rows = stock_rows(path)
    infos = stock_types(path, rows)
    convert = stock._ParsedCsvToTfExample()  # noqa: SLF001
    return [e.SerializeToString(deterministic=True) for row in rows
            for e in convert.process(row, infos)]


def blocks(path: str, block_bytes: int = csv_blocks.BLOCK_BYTES) -> list[pa.RecordBatch]:
    with open(path, "rb") as fh:
        return list(csv_blocks.read_blocks(fh, path, column_names(path), MARKERS, block_bytes))


def run_beam(transform, check) -> None:
    """Runs `transform` and `check(every output)` inside the pipeline (Beam's assert_that): an
    AssertionError there fails the test."""
    from apache_beam.testing.util import assert_that

    with beam.Pipeline() as p:
        assert_that(p | transform, check)


@pytest.fixture
def hostile(tmp_path) -> str:
    path = tmp_path / "hostile.csv"
    path.write_bytes(("\ufeff" + HOSTILE).encode("utf-8"))
    return str(path)


def test_types_are_tfx_bsls_on_every_kind_of_cell(hostile):
    ours = csv_blocks.merge_types(csv_blocks.block_types(b) for b in blocks(hostile))
    theirs = [i.type for i in stock_types(hostile, stock_rows(hostile))]
    assert ours == theirs
    # What those are, so a change in both would still show: blanks and +5 / 1_000 are
    # integers, nan/inf decimals, int64's maximum + 1 and 0x10 text, an all-missing column none.
    assert dict(zip(column_names(hostile), [t.name for t in ours], strict=True)) == {
        "id": "INT", "n": "INT", "x": "FLOAT", "big": "STRING", "word": "STRING",
        "mixed": "FLOAT", "empty": "UNKNOWN", "hexish": "STRING", "note": "STRING"}


@pytest.mark.parametrize("block_bytes", [csv_blocks.BLOCK_BYTES, 96])
def test_examples_are_tfxs_byte_for_byte(hostile, block_bytes):
    """One block, and a block per row or two (types merged over blocks that disagree)."""
    read = blocks(hostile, block_bytes)
    assert len(read) > (1 if block_bytes < 1000 else 0)
    types = csv_blocks.merge_types(csv_blocks.block_types(b) for b in read)
    ours = [e for b in read for e in csv_blocks.to_examples(b, types)]
    assert ours == stock_examples(hostile)


def test_random_tables_match_tfx_byte_for_byte(tmp_path):
    """Numbers of every size and sign (varints of 1 to 10 bytes), long texts (lengths past
    127 and 16,383 bytes), missing cells anywhere."""
    rng = np.random.default_rng(0)
    n = 300
    ints = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64) >> rng.integers(0, 63, n)
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)
    texts = ["t" * int(k) for k in rng.choice([0, 1, 127, 128, 300, 16384], n)]
    lines = ["i,f,t,z"]
    for k in range(n):
        cells = [str(ints[k]), repr(float(floats[k])), texts[k], str(k % 3)]
        if rng.random() < 0.2:
            cells[int(rng.integers(0, 4))] = "NA"
        lines.append(",".join(cells))
    path = tmp_path / "random.csv"
    path.write_text("\n".join(lines) + "\n")
    read = blocks(str(path), 1 << 16)
    types = csv_blocks.merge_types(csv_blocks.block_types(b) for b in read)
    assert [e for b in read for e in csv_blocks.to_examples(b, types)] == \
        stock_examples(str(path))


def test_the_executors_transform_writes_the_same_examples(hostile):
    expected = sorted(stock_examples(hostile))

    def check(ours):
        assert sorted(ours) == expected

    run_beam(CsvToExamples(hostile, DEFAULT_MISSING_VALUES), check)


def test_record_batches_are_tfx_bsls(hostile):
    """What `headwise schema` computes statistics on: tfx_bsl's decoder on the same rows."""
    rows = stock_rows(hostile)
    infos = stock_types(hostile, rows)
    decoder = csv_decoder.BatchedCSVRowsToRecordBatch(skip_blank_lines=True)
    theirs = next(iter(decoder.process([(r, "") for r in rows], infos)))

    def check(batches):
        ours = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
        differ = [n for n in theirs.schema.names  # repr: a NaN equals a NaN
                  if repr(ours.column(n).to_pylist()) != repr(theirs.column(n).to_pylist())]
        assert ours.schema == theirs.schema and not differ, (
            [(n, ours.column(n), theirs.column(n)) for n in differ], ours.schema)

    run_beam(CsvToRecordBatches(hostile, DEFAULT_MISSING_VALUES), check)


def test_a_row_with_too_few_cells_names_the_file(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(csv_blocks.CsvReadError, match=r"short\.csv: .*Expected 3 columns"):
        blocks(str(path))
