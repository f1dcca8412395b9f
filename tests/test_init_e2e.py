"""End to end, the everyday path from a raw file: `headwise init` on a packaged public CSV that
nobody here prepared (palmerpenguins' `penguins-raw.csv`: column names with blanks, brackets
and slashes, a date, constant columns, an identifier-like column, NA markers), then
`headwise run` on the written config without edits (blessed and pushed), then `headwise score`
of the same raw file with the pushed model."""

from __future__ import annotations

import csv
import os

import pytest

from cli import main as cli
from headwise import config as config_lib
from tests.test_cli_console import run_headwise

pytestmark = pytest.mark.e2e


def test_init_run_and_score_a_raw_public_csv(tmp_path, capsys):
    import palmerpenguins

    data = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins-raw.csv")
    config = str(tmp_path / "raw.yaml")
    assert cli.main(["init", "--data", data, "--labels", "Species,Sex,Body Mass (g)",
                     "--name", "raw", "--output", config]) == 0
    text = open(config).read()
    assert "#   Date Egg: a date or timestamp" in text and "#   Region: one value" in text
    cfg = config_lib.load(config)
    assert {h.name: h.task for h in cfg.heads} == {
        "species": "multiclass", "sex": "binary", "body_mass_g": "regression"}
    assert "Culmen Length (mm)" in {f.name for f in cfg.features}
    capsys.readouterr()

    out = str(tmp_path / "out")
    assert cli.main(["run", "--config", config, "--output-dir", out]) == 0
    printed = capsys.readouterr().out
    assert "blessed: yes" in printed and "pushed:" in printed

    # As a user would, in a process of its own: the console holds headwise's lines only (loading
    # a model whose columns have blanks and brackets made TensorFlow warn about each input).
    scored = str(tmp_path / "scored.csv")
    done = run_headwise("score", "--model", os.path.join(out, "serving", "raw"), "--data", data,
                        "--output", scored, "--keys", "Individual ID")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith("headwise")] == [], (
        done.stderr)
    with open(scored, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(data, newline="") as fh:
        raw = list(csv.DictReader(fh))
    assert [r["Individual ID"] for r in rows] == [r["Individual ID"] for r in raw]
    # the species head names the raw file's classes, and mostly agrees with them
    agree = sum(r["species"] == t["Species"] for r, t in zip(rows, raw, strict=True))
    assert agree / len(raw) > 0.9, agree
    masses = [float(r["body_mass_g"]) for r in rows]
    assert 2500 < min(masses) and max(masses) < 6500  # grams, in the label's units
