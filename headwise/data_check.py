"""Pre-flight check of a CSV file before any Beam job reads it.

CsvExampleGen fails on a malformed file deep inside a Beam stack trace (or, for an unbalanced
quote, may silently merge rows). This check reads the file once, as bytes, and stops with a
message that names the file, the line and what is wrong: not UTF-8, a header without rows, a row
with more or fewer fields than the header, a quoted field that never closes, a blank line.
Values are not judged here: types, ranges, NaN/inf, unseen categories and missing values are the
data contract's job (the curated schema, enforced by ExampleValidator and DataValidationGate).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from headwise.config import ConfigError


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


def check_csv(path: str) -> int:
    """Raise DataError naming file and line for the first structural problem; return the number
    of data rows."""
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
            rows += 1
    if rows == 0:
        raise DataError(f"data file {path} has a header row but no data rows")
    return rows
