"""Every case of the bad-input corpus (tests/data/bad/cases.yaml) ends as documented.

Structural cases go through `headwise run` for real: exit code 2, a message naming the file and
line, nothing started, the model already pushed untouched. Value cases are checked against the
committed data contract with TFDV (what ExampleValidator runs); test_pipeline_e2e runs some of
them through the whole pipeline to the DataValidationGate.
"""

from __future__ import annotations

import os

import pytest
import yaml

from cli import main as cli
from headwise import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join(ROOT, "tests", "data", "bad")
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
with open(os.path.join(BAD, "cases.yaml"), encoding="utf-8") as _fh:
    CASES = yaml.safe_load(_fh)["cases"]


def cases(*stops: str) -> list:
    return [pytest.param(c, id=c["file"]) for c in CASES if c["stops_at"] in stops]


def corpus_csv(case: dict, tmp_path) -> str:
    """The data the case feeds the pipeline: the file alone, or taxi rows + its rows."""
    path = os.path.join(BAD, case["file"])
    if case["feed"] == "alone":
        return path
    cfg = config_lib.load(TAXI)
    with open(cfg.resolve_data(), encoding="utf-8") as fh:
        base = fh.read()
    with open(path, encoding="utf-8") as fh:
        bad_rows = fh.read().splitlines()[1:]
    out = tmp_path / f"taxi_plus_{case['file']}"
    out.write_text(base.rstrip("\n") + "\n" + "\n".join(bad_rows * case.get("repeat", 1)) + "\n",
                   encoding="utf-8")
    return str(out)


def config_for(data_path: str, tmp_path) -> str:
    with open(TAXI, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    raw["data"]["csv"] = data_path
    raw["validation"]["schema"] = config_lib.load(TAXI).schema_path()
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _tree(path: str) -> list:
    return sorted((os.path.relpath(os.path.join(d, f), path), os.path.getmtime(os.path.join(d, f)))
                  for d, _, files in os.walk(path) for f in files)


def test_every_corpus_file_is_a_documented_case():
    files = {f for f in os.listdir(BAD) if f.endswith(".csv")}
    assert files == {c["file"] for c in CASES}
    with open(os.path.join(BAD, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert all(f"`{f}`" in readme for f in files)


@pytest.mark.parametrize("case", cases("config", "data_check"))
def test_structural_damage_stops_before_anything_runs(case, tmp_path, capsys):
    out = tmp_path / "outputs"
    served = out / "serving" / "taxi" / "1700000000"
    served.mkdir(parents=True)
    (served / "saved_model.pb").write_bytes(b"the model users are being served")
    before = _tree(str(out))
    data = corpus_csv(case, tmp_path)
    code = cli.main(["run", "--config", config_for(data, tmp_path), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert data in err and case["words"] in err, err
    if "also" in case:
        assert case["also"] in err, err
    if "column" in case:
        assert f"'{case['column']}'" in err, err
    assert _tree(str(out)) == before  # nothing written, nothing pushed, nothing removed
    assert not (out / "pipelines").exists()


def test_a_missing_schema_file_is_said_before_the_data_is_read(tmp_path, capsys, monkeypatch):
    from headwise import sources

    def no_data_pass(*args, **kwargs):
        raise AssertionError("the data was read before the schema file was checked")

    monkeypatch.setattr(sources.CsvSource, "check", no_data_pass)
    damaged = next(c for c in CASES if c["stops_at"] == "data_check" and c["feed"] == "alone")
    path = config_for(os.path.join(BAD, damaged["file"]), tmp_path)
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    raw["validation"]["schema"] = str(tmp_path / "no" / "schema.pbtxt")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(raw, fh)
    out = tmp_path / "outputs"
    code = cli.main(["run", "--config", path, "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"validation.schema: cannot read {tmp_path / 'no' / 'schema.pbtxt'}" in err, err
    assert f"headwise schema --config {path}" in err, err
    assert not out.exists()


@pytest.fixture(scope="module")
def schema():
    from pipeline import schema as schema_lib

    return schema_lib.load_schema(config_lib.load(TAXI).schema_path())


@pytest.mark.parametrize("case", cases("DataValidationGate", "none"))
def test_value_damage_is_an_anomaly_of_the_data_contract(case, schema, tmp_path):
    import tensorflow_data_validation as tfdv

    from pipeline import schema as schema_lib

    # Read as the pipeline's ExampleGen reads it (missing-value markers are missing).
    stats = schema_lib.csv_statistics(config_lib.load(TAXI), corpus_csv(case, tmp_path))
    anomalies = tfdv.validate_statistics(stats, schema, environment="TRAINING").anomaly_info
    found = {k: f"{v.short_description}: {v.description}" for k, v in anomalies.items()}
    if case["stops_at"] == "none":
        assert found == {}, found  # handled downstream (the labels are masked), not refused
        return
    assert case["column"] in found, found
    assert case["words"] in found[case["column"]], found
