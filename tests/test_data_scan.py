"""The pre-flight check's two scans agree: pyarrow's column scan (fast) never passes a file the
row scan (the reference, which names the line) refuses, and counts the same rows and labels.

Every file of the bad-input corpus, alone and appended to the taxi data, plus edge cases of
CSV syntax and numbers, runs through both scans separately."""

from __future__ import annotations

import os
import re

import pytest

from headwise import config as config_lib
from headwise import data_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join(ROOT, "tests", "data", "bad")
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")


def outcome(scan, path: str, cfg) -> tuple:
    """("rows", n, label counts), ("error", message) or ("unsure",)."""
    values = []
    real = data_check.Values

    class Recorded(real):  # keeps the label counts each scan made
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            values.append(self)

    data_check.Values = Recorded
    try:
        n = scan(path, cfg)
    except data_check.DataError as e:
        return ("error", str(e))
    except data_check._Unsure:  # noqa: SLF001
        return ("unsure",)
    finally:
        data_check.Values = real
    return ("rows", n, {k: dict(v) for k, v in values[-1].seen.items()} if values else None)


def agree(path: str, cfg) -> tuple:
    """check_csv's verdict is the row scan's, always; and where the structure passes, the
    column scan gives that verdict too, or hands over (unsure)."""
    rows = outcome(data_check._scan_rows, path, cfg)  # noqa: SLF001
    assert outcome(data_check.check_csv, path, cfg) == rows
    if cfg is None or outcome(data_check._scan_rows, path, None)[0] == "error":  # noqa: SLF001
        return None, rows  # the structure: one scan only

    def columns_scan(p, c):
        n = data_check._scan_rows(p, None)  # noqa: SLF001
        data_check._scan_columns(p, c, n)  # noqa: SLF001
        return n

    columns = outcome(columns_scan, path, cfg)
    assert columns == rows or columns == ("unsure",), (columns, rows)
    return columns, rows


@pytest.fixture(scope="module")
def taxi():
    cfg = config_lib.load(TAXI)
    with open(cfg.resolve_data(), encoding="utf-8") as fh:
        return cfg, fh.read()


def test_a_good_file_passes_the_column_scan_with_the_row_scans_counts(taxi):
    cfg, _ = taxi
    columns, rows = agree(cfg.resolve_data(), cfg)  # noqa: RUF059
    assert columns == rows and rows[0] == "rows"
    assert rows[1] > 15000 and sum(rows[2]["payment_type"].values()) > 15000


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(BAD) if f.endswith(".csv")))
def test_corpus_file_alone_and_appended(name, taxi, tmp_path):
    cfg, base = taxi
    path = os.path.join(BAD, name)
    agree(path, None)
    if name in ("empty.csv",):
        return
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        bad_rows = fh.read().splitlines()[1:]
    appended = tmp_path / "appended.csv"
    appended.write_text(base.rstrip("\n") + "\n" + "\n".join(bad_rows) + "\n",
                        encoding="utf-8", errors="surrogateescape")
    columns, rows = agree(str(appended), cfg)
    if columns is not None and rows[0] == "error" and re.search(r"line \d+", rows[1]):
        assert columns == ("unsure",)  # only the row scan knows lines


EDGES = {
    "blank_line_inside": "a,b\n1,2\n\n3,4\n",
    "blank_lines_at_end": "a,b\n1,2\n\n\n",
    "no_final_newline": "a,b\n1,2",
    "crlf": "a,b\r\n1,2\r\n",
    "quoted_newline": 'a,b\n"1\n",2\n',
    "quote_never_closes": 'a,b\n"x,2\n3,4\n',
    "quote_never_closes_last_field": 'a,b\n1,"2\n3,4\n',
    "few_fields": "a,b\n1\n",
    "bom_header": "\ufeffa,b\n1,2\n",
    "spaces_in_header": " a , b \n1,2\n",
    "header_only": "a,b\n",
    "duplicate_names": "a,a\n1,2\n",
    "lone_cr": "a,b\r1,2\r",
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_csv_syntax_edge(name, tmp_path):
    path = tmp_path / f"{name}.csv"
    path.write_text(EDGES[name], encoding="utf-8", newline="")
    cfg_path = tmp_path / "edge.yaml"
    cfg_path.write_text(f"name: edge\ndata: {{csv: {path}}}\nfeatures: {{a: numeric}}\n"
                        "heads: [{name: b, label: b, task: regression}]\n")
    try:
        cfg = config_lib.load(str(cfg_path))
    except config_lib.ConfigError:
        cfg = None  # the header itself is refused: the structure alone
    agree(str(path), None)
    if cfg is not None:
        agree(str(path), cfg)


NUMBERS = ["1", " 2.5 ", "-3e2", ".5", "5.", "+4", "1_000", "inf", "-Infinity", "nan", "NA", "",
           "0x10", "1e", "--1", "1,5", "١٢", "1 2", "true"]


@pytest.mark.parametrize("cell", NUMBERS)
def test_numeric_cells_are_judged_as_the_row_scan_judges_them(cell, taxi, tmp_path):
    cfg, base = taxi
    lines = base.rstrip("\n").split("\n")
    header = lines[0].split(",")
    i = header.index("trip_miles")
    row = next(csv_row for csv_row in lines[1:] if '"' not in csv_row).split(",")
    row[i] = f'"{cell}"' if "," in cell else cell
    path = tmp_path / "data.csv"
    path.write_text("\n".join([*lines, ",".join(row)]) + "\n", encoding="utf-8")
    agree(str(path), cfg)


def test_a_bad_value_is_named_by_its_line_after_the_column_scan(taxi, tmp_path):
    cfg, base = taxi
    lines = base.rstrip("\n").split("\n")
    i = lines[0].split(",").index("trip_miles")
    row = next(r for r in lines[1:] if '"' not in r).split(",")
    row[i] = "n/a"
    path = tmp_path / "data.csv"
    path.write_text("\n".join([*lines, ",".join(row)]) + "\n", encoding="utf-8")
    with pytest.raises(data_check.DataError, match=f"line {len(lines) + 1}, column 'trip_miles'"):
        data_check.check_csv(str(path), cfg)
