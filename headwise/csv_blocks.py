"""CSV files read a block of rows at a time, with pyarrow's CSV reader, and turned into exactly
what TFX's per-row CSV code makes of them, column by column instead of cell by cell.

TFX's CsvExampleGen parses each line in Python, infers each cell's type in Python and builds
one tf.train.Feature per cell: about 1,400 rows/s on census-income's 43 columns. Here each step
is a vectorised pyarrow/numpy operation on a block of rows (tens of thousands):
  * read: `pyarrow.csv` (quoted fields may span lines, CRLF, a UTF-8 byte-order mark), every
    column as text, so nothing is typed before the markers are applied;
  * missing values: a cell whose stripped text is one of the markers ("" always) is null;
  * types: tfx_bsl's rule (`csv_decoder._InferValueType`, the type hierarchy INT < FLOAT <
    STRING over every non-missing cell of every file). A value that plainly is an integer or a
    decimal number is decided by a regular expression and a cast; any other value (`+5`,
    `1_000`, `nan`, an integer beyond int64, ...) by tfx_bsl's own function, once per distinct
    value, so the types are tfx_bsl's on every input;
  * tf.Examples: serialised in one pass over the columns, byte for byte what protobuf's
    deterministic serialisation of TFX's examples gives (map keys in sorted order), so the
    ExampleGen's hash split puts every row in the split TFX's CsvExampleGen puts it in;
  * RecordBatches: the ones tfx_bsl's CSV decoder gives (what TFDV computes statistics on).

Light to import (pyarrow, numpy, tfx_bsl's CSV decoder; no TF, no TFX)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from tfx_bsl.coders import csv_decoder

ColumnType = csv_decoder.ColumnType
BLOCK_BYTES = 8 << 20  # of CSV text per block: about 80k rows of census-income

# Values whose type a cast decides exactly as Python's int() and float() do (ASCII, no sign
# but "-", no underscores, no nan/inf): every other value goes to tfx_bsl's function.
_INT = r"^-?[0-9]+$"
_DECIMAL = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
PLAIN_INT, PLAIN_DECIMAL = _INT, _DECIMAL  # for other vectorised readers (serving.scoring)
_ARROW_TYPES = {ColumnType.UNKNOWN: pa.null(), ColumnType.INT: pa.large_list(pa.int64()),
                ColumnType.FLOAT: pa.large_list(pa.float32()),
                ColumnType.STRING: pa.large_list(pa.large_binary())}


class CsvReadError(ValueError):
    """A CSV file pyarrow cannot read as a table of the header's columns."""


def read_blocks(fh, path: str, names: Sequence[str], markers: Iterable[str],
                block_bytes: int = BLOCK_BYTES) -> Iterator[pa.RecordBatch]:
    """One CSV file (an open binary file object, its header line included) -> blocks of rows,
    every column `large_binary` with a marker cell (compared stripped) null."""
    markers = pa.array(sorted(set(markers) | {""}), pa.string())
    try:
        reader = pcsv.open_csv(
            fh,
            read_options=pcsv.ReadOptions(column_names=list(names), skip_rows=1,
                                          block_size=block_bytes),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False,
                quoted_strings_can_be_null=False))
        for batch in reader:
            yield pa.RecordBatch.from_arrays(
                [_mark_missing(col, markers) for col in batch.columns], list(names))
    except pa.ArrowInvalid as e:
        raise CsvReadError(f"{path}: {e}. `headwise check --config <config>` names the line "
                           "and the fix") from None


def _mark_missing(col: pa.Array, markers: pa.Array) -> pa.Array:
    missing = pc.is_in(pc.ascii_trim_whitespace(col), value_set=markers)
    return pc.if_else(missing, pa.scalar(None, pa.string()), col).cast(pa.large_binary())


def _values(col: pa.Array) -> pa.Array:
    """The non-missing cells, as text."""
    return col.drop_null().cast(pa.large_string())


def column_type(col: pa.Array) -> ColumnType:
    """tfx_bsl's type of one column of a block (csv_decoder.ColumnTypeInferrer): the highest
    type of any of its values, so read from its distinct values."""
    values = pc.unique(_values(col))
    if len(values) == 0:
        return ColumnType.UNKNOWN
    stripped = pc.ascii_trim_whitespace(values)
    is_int = pc.match_substring_regex(stripped, _INT)
    if pc.any(is_int).as_py():
        try:
            pc.cast(pc.filter(stripped, is_int), pa.int64())
        except pa.ArrowInvalid:  # beyond int64: tfx_bsl calls that STRING
            return ColumnType.STRING
    is_decimal = pc.and_not(pc.match_substring_regex(stripped, _DECIMAL), is_int)
    plain = pc.or_(is_int, is_decimal)
    found = (ColumnType.FLOAT if pc.any(is_decimal).as_py() else
             ColumnType.INT if pc.any(is_int).as_py() else ColumnType.UNKNOWN)
    others = pc.unique(pc.filter(values, pc.invert(plain)))
    for value in others.to_pylist():
        found = max(found, csv_decoder._InferValueType(value.encode("utf-8")))  # noqa: SLF001
        if found == ColumnType.STRING:
            break
    return found


def block_types(block: pa.RecordBatch, strings: Sequence[str] = ()) -> list[ColumnType]:
    """Each column's type in one block; `strings` are typed STRING whatever they hold."""
    return [ColumnType.STRING if name in strings and col.null_count < len(col)
            else column_type(col) for name, col in zip(block.schema.names, block.columns,
                                                       strict=True)]


def merge_types(types: Iterable[list[ColumnType]]) -> list[ColumnType] | None:
    """The types over several blocks: the highest in the hierarchy per column."""
    merged = None
    for t in types:
        merged = list(t) if merged is None else [max(a, b) for a, b in zip(merged, t,
                                                                           strict=True)]
    return merged


def typed(col: pa.Array, kind: ColumnType) -> pa.Array:
    """A column's values converted as tfx_bsl converts them (int(), float() then float32,
    bytes), null where missing; UNKNOWN: all null."""
    if kind == ColumnType.UNKNOWN:
        return pa.nulls(len(col), pa.null())
    if kind == ColumnType.STRING:
        return col
    text = col.cast(pa.large_string())
    stripped = pc.ascii_trim_whitespace(text)
    pattern = _INT if kind == ColumnType.INT else None
    plain = (pc.match_substring_regex(stripped, pattern) if pattern else
             pc.or_(pc.match_substring_regex(stripped, _INT),
                    pc.match_substring_regex(stripped, _DECIMAL)))
    plain = pc.fill_null(plain, True)
    target = pa.int64() if kind == ColumnType.INT else pa.float64()
    out = pc.cast(pc.if_else(plain, stripped, pa.scalar(None, pa.large_string())), target)
    if not pc.all(plain).as_py():  # the rest by Python's own int() / float()
        convert = int if kind == ColumnType.INT else float
        rest = pc.unique(pc.filter(text, pc.invert(plain)))
        converted = pa.array([convert(v.encode("utf-8")) for v in rest.to_pylist()], target)
        index = pc.index_in(text, value_set=rest)
        out = pc.if_else(pc.invert(plain), pc.take(converted, index), out)
    return out.cast(pa.float32()) if kind == ColumnType.FLOAT else out


def to_record_batch(block: pa.RecordBatch, types: Sequence[ColumnType]) -> pa.RecordBatch:
    """The RecordBatch tfx_bsl's CSV decoder gives (csv_decoder.BatchedCSVRowsToRecordBatch):
    one-value lists, null where missing, a null column where every cell is missing."""
    arrays = []
    for col, kind in zip(block.columns, types, strict=True):
        values = typed(col, kind)
        if kind == ColumnType.UNKNOWN:
            arrays.append(values)
            continue
        arrays.append(_one_value_lists(values, _ARROW_TYPES[kind]))
    return pa.RecordBatch.from_arrays(arrays, block.schema.names)


def _one_value_lists(values: pa.Array, list_type: pa.DataType) -> pa.Array:
    n = len(values)
    offsets = pa.array(np.arange(n + 1, dtype=np.int64))
    lists = pa.LargeListArray.from_arrays(offsets, values.fill_null(_FILL[values.type]))
    return pc.if_else(pc.is_null(values), pa.scalar(None, list_type), lists).cast(list_type)


_FILL = {pa.int64(): 0, pa.float32(): 0.0, pa.large_binary(): b""}


# --- tf.Example serialisation ------------------------------------------------------------
# Example{1: Features{1: map<string, Feature>}}; a map entry is {1: key, 2: value}; Feature is a
# oneof {1: BytesList, 2: FloatList, 3: Int64List}, each {1: repeated value} (numbers packed).
# TFX's CsvExampleGen writes an empty list for a missing cell and an empty Feature for a column
# without any value. Each row's bytes are built as segments (uint8 matrix, bytes used per row)
# in numpy, and one pyarrow call per block joins them with the text cells' bytes.
_LIST_FIELD = {ColumnType.STRING: 0x0A, ColumnType.FLOAT: 0x12, ColumnType.INT: 0x1A}
Segment = tuple[np.ndarray, np.ndarray]  # (n x width uint8, n bytes used per row)


def _varint(values: np.ndarray) -> Segment:
    """Each value's protobuf varint (values: non-negative int64, or uint64)."""
    values = values.astype(np.uint64, copy=False)
    lengths = np.ones(len(values), np.int64)
    for k in range(1, 10):
        above = values >= np.uint64(1 << (7 * k))
        if not above.any():
            break
        lengths += above
    width = int(lengths.max()) if len(values) else 1
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = (values[:, None] >> shifts[None, :]) & np.uint64(0x7F)
    more = np.arange(width)[None, :] < (lengths[:, None] - 1)
    return (groups | (more.astype(np.uint64) << np.uint64(7))).astype(np.uint8), lengths


def _binary(segment: Segment) -> pa.Array:
    """Each row's first bytes of the matrix, as one binary value per row."""
    matrix, lengths = segment
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    keep = np.arange(matrix.shape[1])[None, :] < lengths[:, None]
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(lengths),
        [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix[keep]))])


Part = bytes | pa.Array  # the same bytes in every row, or one value per row


def _list(values: pa.Array, kind: ColumnType, n: int) -> tuple[list[Part], np.ndarray]:
    """A column's typed lists' bytes (BytesList / FloatList / Int64List, without their field
    tag): one value, or none where the cell is missing; and their lengths."""
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    if kind == ColumnType.STRING:  # {1: [cell]}
        text = values.fill_null(b"")
        size = pc.binary_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
        prefix, used = _varint(size)
        used = np.where(present, used, 0)
        inner = [pc.if_else(pa.array(present), pa.scalar(b"\x0a", pa.large_binary()),
                            pa.scalar(b"", pa.large_binary())), _binary((prefix, used)), text]
        return inner, np.where(present, 1 + used + size, 0)
    if kind == ColumnType.FLOAT:  # {1: packed [one float32]}
        raw = values.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f4")
        matrix = np.empty((n, 6), np.uint8)
        matrix[:, 0], matrix[:, 1] = 0x0A, 4
        matrix[:, 2:] = raw.view(np.uint8).reshape(n, 4)
        size = np.where(present, 6, 0)
        return [_binary((matrix, size))], size
    ints = values.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)  # {1: packed}
    digits, used = _varint(ints.view(np.uint64))
    matrix = np.empty((n, 2 + digits.shape[1]), np.uint8)
    matrix[:, 0], matrix[:, 1], matrix[:, 2:] = 0x0A, used, digits
    size = np.where(present, 2 + used, 0)
    return [_binary((matrix, size))], size


def _entry(key: bytes, values: pa.Array, kind: ColumnType, n: int
           ) -> tuple[list[Part], np.ndarray]:
    """One column's map entry in every row, as Features' field 1, and its length."""
    if kind == ColumnType.UNKNOWN:  # an empty Feature
        entry = bytes([0x0A]) + _varint_bytes(len(key)) + key + b"\x12\x00"
        return [bytes([0x0A]) + _varint_bytes(len(entry)) + entry], np.full(n, len(entry) + 2)
    inner, size = _list(values, kind, n)
    list_len = _varint(size)
    feature = 1 + list_len[1] + size
    feature_len = _varint(feature)
    head = bytes([0x0A]) + _varint_bytes(len(key)) + key + b"\x12"  # the key, then the Feature
    entry = len(head) + feature_len[1] + feature
    entry_len = _varint(entry)
    parts = [b"\x0a", _binary(entry_len), head, _binary(feature_len),
             bytes([_LIST_FIELD[kind]]), _binary(list_len), *inner]
    return parts, 1 + entry_len[1] + entry


def to_examples(block: pa.RecordBatch, types: Sequence[ColumnType]) -> list[bytes]:
    """The rows as serialised tf.Examples, byte for byte what TFX's CsvExampleGen builds
    (`_ParsedCsvToTfExample`) and protobuf's deterministic serialisation (map keys sorted)
    writes."""
    n = block.num_rows
    if n == 0:
        return []
    names = block.schema.names
    total = np.zeros(n, np.int64)
    parts: list[Part] = []
    for i in sorted(range(len(names)), key=lambda i: names[i].encode("utf-8")):
        entry, size = _entry(names[i].encode("utf-8"), typed(block.column(i), types[i]),
                             types[i], n)
        parts += entry
        total += size
    merged: list[Part] = [b"\x0a", _binary(_varint(total))]  # Example field 1: the Features
    for part in parts:  # adjacent constants as one
        if isinstance(part, bytes) and isinstance(merged[-1], bytes):
            merged[-1] += part
        else:
            merged.append(part)
    args = [pa.scalar(p, pa.large_binary()) if isinstance(p, bytes) else p for p in merged]
    return pc.binary_join_element_wise(*args, pa.scalar(b"", pa.large_binary())).to_pylist()


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
