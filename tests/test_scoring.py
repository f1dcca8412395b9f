"""Batch scoring (`headwise score`, serving/scoring.py) on the synthetic four-task model: the
answers are the Keras model's own in-process predictions, row for row and in input order, from
CSV and Parquet, one file or sharded; bad input stops before or during the Beam job with the
file, row and column named, and leaves nothing behind.

(tests/test_pipeline_e2e.py scores the taxi CSV with the pushed model and compares every head
with the gRPC server's answers.)"""

from __future__ import annotations

import csv
import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving import scoring
from tests import synthetic

FEATURES = ("a", "b", "c")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoring")
    rows, tft_output, data = synthetic.transform(str(tmp / "transform"))
    export = str(tmp / "model")
    expected = synthetic.train_and_export(tft_output, data, export, epochs=2, seed=0)
    raw = [{k: (v[0] if v else None) for k, v in r.items()} for r in rows]
    for i, r in enumerate(raw):
        r["id"] = f"id-{i:03d}"  # a key column
    return export, raw, expected


def _write_csv(path, rows, columns=("id", *FEATURES, "y_r", "y_k")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r.get(c) is None else r[c] for c in columns])


def _check(table: dict, expected: dict, index: list[int]) -> None:
    """The answer columns against the Keras model's predictions for rows `index`."""
    np.testing.assert_allclose(table["r"], expected["r"][index, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table["k_p_1"], expected["k"][index, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table["k_p_0"], 1 - expected["k"][index, 0], rtol=1e-4,
                               atol=1e-5)
    for j, c in enumerate(["p", "q", "Z"]):
        np.testing.assert_allclose(table[f"m_p_{c}"], expected["m"][index, j], rtol=1e-4,
                                   atol=1e-5)
    assert list(table["m"]) == [["p", "q", "Z"][j] for j in np.argmax(expected["m"][index], 1)]
    np.testing.assert_allclose(table["m_score"], expected["m"][index].max(1), rtol=1e-4)
    for j, c in enumerate(["u", "v", "t"]):
        np.testing.assert_allclose(table[f"g_p_{c}"], expected["g"][index, j], rtol=1e-4,
                                   atol=1e-5)
    on = [("|".join(c for c, p in zip("uvt", row, strict=True) if p >= 0.5) or "-")
          for row in expected["g"][index]]
    assert list(table["g"]) == on


def test_a_csv_is_scored_row_for_row_in_input_order(model, tmp_path, monkeypatch):
    export, raw, expected = model
    monkeypatch.setattr(scoring, "BLOCK_ROWS", 50)  # three blocks: the join keeps their order
    monkeypatch.setattr(scoring, "BATCH_ROWS", 16)
    _write_csv(tmp_path / "in.csv", raw)
    out = tmp_path / "out" / "scored.csv"  # its folder is made
    job = scoring.plan(export, str(tmp_path / "in.csv"), str(out), ["id"])
    result = scoring.run(job)
    assert result["rows"] == synthetic.N and result["outputs"] == [str(out)]
    with open(out, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["id"] + scoring.output_columns(job.info)
    assert [r["id"] for r in got] == [r["id"] for r in raw]
    table = {c: [float(r[c]) if c not in ("id", "m", "g") else r[c] for r in got]
             for c in got[0]}
    _check(table, expected, list(range(synthetic.N)))
    assert os.listdir(out.parent) == ["scored.csv"]  # no staging folder or temporary file left


def test_missing_value_markers_of_the_training_config_apply(model, tmp_path):
    """`NA` is one of the config's missing_values: a cell holding it scores as an empty one."""
    export, raw, _ = model
    rows = [dict(raw[0], a=None), dict(raw[0], a=" NA ")]
    _write_csv(tmp_path / "in.csv", rows)
    job = scoring.plan(export, str(tmp_path / "in.csv"), str(tmp_path / "o.parquet"))
    scoring.run(job)
    t = pq.read_table(tmp_path / "o.parquet").to_pydict()
    assert t["row"] == [1, 2]
    assert t["r"][0] == pytest.approx(t["r"][1], rel=1e-6)


def test_a_data_column_named_row_is_the_key_when_keys_name_it(model, tmp_path):
    """`row` is the default key, the row number; a column of the data under that name is what
    `--keys row` asks for (it used to be shadowed by the row number)."""
    export, raw, _ = model
    _write_csv(tmp_path / "in.csv", [dict(r, row=f"r{100 + i}") for i, r in enumerate(raw[:3])],
               ("row", *FEATURES))
    for keys, expected in (((), [1, 2, 3]), (("row",), ["r100", "r101", "r102"])):
        job = scoring.plan(export, str(tmp_path / "in.csv"), str(tmp_path / "o.parquet"), keys)
        scoring.run(job)
        assert pq.read_table(tmp_path / "o.parquet").to_pydict()["row"] == expected, keys


def test_a_parquet_folder_is_scored_into_one_file_per_input_file(model, tmp_path):
    export, raw, expected = model
    folder = tmp_path / "parts"
    folder.mkdir()
    columns = ("id", *FEATURES)
    for name, part in (("p0", raw[:70]), ("p1", raw[70:])):
        pq.write_table(pa.table({c: [r[c] for r in part] for c in columns}),
                       folder / f"{name}.parquet")
    job = scoring.plan(export, str(folder), str(tmp_path / "scored"))
    assert job.keys == ("file", "row")
    scoring.run(job)
    assert sorted(os.listdir(tmp_path / "scored")) == ["p0.parquet", "p1.parquet"]
    t0 = pq.read_table(tmp_path / "scored" / "p0.parquet").to_pydict()
    t1 = pq.read_table(tmp_path / "scored" / "p1.parquet").to_pydict()
    assert t0["file"] == ["p0.parquet"] * 70 and t0["row"] == list(range(1, 71))
    assert t1["row"] == list(range(1, synthetic.N - 70 + 1))
    _check(t0, expected, list(range(70)))
    _check(t1, expected, list(range(70, synthetic.N)))


def test_a_bad_value_names_file_row_and_column_and_leaves_nothing(model, tmp_path):
    export, raw, _ = model
    rows = [dict(r) for r in raw]
    rows[6]["a"] = "abc"
    _write_csv(tmp_path / "in.csv", rows)
    job = scoring.plan(export, str(tmp_path / "in.csv"), str(tmp_path / "o.csv"))
    with pytest.raises(scoring.ClientError, match=r"in\.csv: row 7, column 'a': expected "
                       r"float32, got 'abc'"):
        scoring.run(job)
    assert os.listdir(tmp_path) == ["in.csv"]


def test_what_is_wrong_before_beam_starts_is_named_with_the_fix(model, tmp_path):
    export, raw, _ = model
    _write_csv(tmp_path / "in.csv", raw, columns=("id", "a", "c"))
    with pytest.raises(scoring.ClientError, match=r"in\.csv: no column for the model's "
                       r"feature\(s\) b\. Add them"):
        scoring.plan(export, str(tmp_path / "in.csv"), str(tmp_path / "o.csv"))
    _write_csv(tmp_path / "ok.csv", raw)
    with pytest.raises(scoring.ClientError, match="--keys names column.* the data does not "
                       "have: nope"):
        scoring.plan(export, str(tmp_path / "ok.csv"), str(tmp_path / "o.csv"), ["nope"])
    _write_csv(tmp_path / "m.csv", raw, columns=("id", *FEATURES, "m"))
    with pytest.raises(scoring.ClientError, match="--keys m: the name of an answer column"):
        scoring.plan(export, str(tmp_path / "m.csv"), str(tmp_path / "o.csv"), ["id", "m"])
    with pytest.raises(scoring.ClientError, match="not a SavedModel"):
        scoring.plan(str(tmp_path), str(tmp_path / "ok.csv"), str(tmp_path / "o.csv"))
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(scoring.ClientError, match=r"CSV \(\.csv\) or Parquet"):
        scoring.plan(export, str(tmp_path / "*.*"), str(tmp_path / "o.csv"))
    assert not glob.glob(str(tmp_path / "o.csv*"))


def test_the_pipeline_stage_records_rows_or_the_error_and_the_summary_shows_it(model, tmp_path):
    """BatchScoring's work (components/batch_scoring.py: `headwise score` as a child process):
    the rows scored, or the command's own error line, which the run's summary prints."""
    from components import batch_scoring
    from pipeline.summary import RunSummary

    export, raw, _ = model
    _write_csv(tmp_path / "in.csv", raw[:30])
    out = str(tmp_path / "s.parquet")
    ok = batch_scoring.run_scoring(export, str(tmp_path / "in.csv"), out, "id")
    assert ok["scored"] and ok["rows"] == 30, ok
    assert pq.read_table(out).column("id").to_pylist() == [r["id"] for r in raw[:30]]
    bad = batch_scoring.run_scoring(export, str(tmp_path / "in.csv"), str(tmp_path / "t.csv"),
                                    "nope")
    assert not bad["scored"] and not os.path.exists(tmp_path / "t.csv")
    assert bad["error"].endswith("--keys names column(s) the data does not have: nope"), bad
    summary = RunSummary("p", "r", {}, [], True, True, "/v/1", False, None,
                         scoring={**bad, "data": "in.csv", "output": "t.csv"})
    assert summary.scoring_failed
    assert f"scored:  FAILED, in.csv: {bad['error']}" in summary.table()
