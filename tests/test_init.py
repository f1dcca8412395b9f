"""`headwise init` (headwise/init.py): every inference rule on a CSV made to hold one column per
rule, the written config's reasons, and the command on a packaged dataset: the config loads and
passes `headwise run`'s pre-flight, its schema is written, and a failure leaves nothing.
(tests/test_init_e2e.py runs the pipeline on what init wrote, without edits.)"""

from __future__ import annotations

import csv
import os
import re

import pytest
import yaml

from headwise import config as config_lib
from headwise import init as init_lib

ROWS = 120


def _table(tmp_path):
    """One column per rule (features) and per task (labels)."""
    cols = {
        "row_id": [str(i + 1) for i in range(ROWS)],
        "uuid": [f"u-{i * 7919 % 100003:06d}" for i in range(ROWS)],
        "when": [f"2024-03-{1 + i % 28:02d}T10:{i % 60:02d}:00" for i in range(ROWS)],
        "epoch": [str(1_700_000_000 + 3600 * i) for i in range(ROWS)],
        "constant": ["same"] * ROWS,
        "nothing": [""] * ROWS,
        "notes": [f"free text number {i} with many words to make it long enough" for i in
                  range(ROWS)],
        "level": [str(1 + i % 4) for i in range(ROWS)],
        "amount": ["?" if i % 9 == 0 else f"{(i * 37) % 101 / 3:.3f}" for i in range(ROWS)],
        "score": ["-" if i % 11 == 0 else str((i * 13) % 97) for i in range(ROWS)],
        "city": [f" {['Oslo', 'Rome', 'Lima'][i % 3]} " for i in range(ROWS)],  # stray blanks
        # labels
        "clicked": [str(i % 2) for i in range(ROWS)],
        "churn": ["yes" if i % 5 == 0 else "no" for i in range(ROWS)],
        "colour": [["red", "green", "blue"][i % 3] for i in range(ROWS)],
        "visits": [str([0, 0, 0, 1, 1, 2, 3, 5, 8][i % 9]) for i in range(ROWS)],
        "rating": [str(1 + i % 5) for i in range(ROWS)],
        "price": [str(1000 + (i * 17) % 500) for i in range(ROWS)],
        "spend": [f"{2 ** ((i * 7) % 13) / 4:g}" for i in range(ROWS)],  # 0.25 to 1024: skewed
        "ratio": [f"{-1 + (i % 50) / 25:.2f}" for i in range(ROWS)],
        "tags": [["a|b", "b", "c|a", "a"][i % 4] for i in range(ROWS)],
        "zip": [f"Z{10_000 + i % 40}" for i in range(ROWS)],  # 40 codes: learned top_k
        "": [str(i * 37 % 1000) for i in range(ROWS)],  # unnamed: a data frame's row index
        "kept": [str(2 * i + i % 2) for i in range(ROWS)],  # increasing, with gaps
        "measure": [str(1000 + (i * 7919) % 100_003) for i in range(ROWS)],  # distinct, no order
    }
    path = tmp_path / "table.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(zip(*cols.values(), strict=True))
    return str(path)


LABELS = ["clicked", "churn", "colour", "visits", "rating", "price", "spend", "ratio", "tags",
          "zip"]


def test_every_rule_decides_its_column_and_says_why(tmp_path):
    decisions, markers = init_lib.infer(_table(tmp_path), LABELS)
    by = {d.column: d for d in decisions}
    assert markers == {"?", "-"}  # each beside numbers only
    left = {c: by[c].why for c in by if by[c].role == "left out"}
    assert set(left) == {"row_id", "", "kept", "uuid", "when", "epoch", "constant", "nothing",
                         "notes"}
    assert "row number or id" in left["row_id"] and "identifier" in left["uuid"]
    assert "no header name" in left[""] and "increasing down the file" in left["kept"]
    assert by["measure"].spec == "numeric"  # a different number in every row, in no order
    assert "date or timestamp" in left["when"] and "Unix timestamps" in left["epoch"]
    assert "one value" in left["constant"] and "no value" in left["nothing"]
    assert "free text" in left["notes"]
    assert by["level"].spec == "categorical" and "4 values" in by["level"].why
    assert by["amount"].spec == "numeric" and by["score"].spec == "numeric"  # markers gone
    assert by["city"].spec == "categorical"
    heads = {d.column: d.spec for d in decisions if d.role == "label"}
    assert heads["clicked"] == {"name": "clicked", "label": "clicked", "task": "binary"}
    assert heads["churn"]["positive"] == "yes"  # the rarer of two values
    assert heads["colour"] == {"name": "colour", "label": "colour", "task": "multiclass",
                               "classes": ["red", "green", "blue"]}
    assert heads["visits"]["task"] == "count"  # non-negative whole numbers, mostly 0
    assert heads["rating"]["task"] == "multiclass" and len(heads["rating"]["classes"]) == 5
    assert heads["price"]["task"] == "regression"  # whole numbers, but a measure
    assert heads["spend"] == {"name": "spend", "label": "spend", "task": "regression",
                              "target": "log"}  # right-skewed, none negative
    assert "skewness 2.2" in by["spend"].why  # scipy.stats.skew of the column: 2.2007
    assert "target" not in heads["price"]  # symmetric (skewness 0)
    assert heads["ratio"]["task"] == "regression" and "target" not in heads["ratio"]  # < 0
    assert heads["tags"]["task"] == "multilabel" and heads["tags"]["classes"] == ["a", "b", "c"]
    assert heads["zip"]["task"] == "multiclass" and heads["zip"]["top_k"] == init_lib.MAX_CLASSES


def test_the_written_config_loads_and_carries_the_reasons(tmp_path):
    path = _table(tmp_path)
    decisions, markers = init_lib.infer(path, LABELS)
    text = init_lib.render("t", "csv", "table.csv", "t/schema.pbtxt", decisions, markers, path)
    (tmp_path / "t.yaml").write_text(text)
    cfg = config_lib.load(str(tmp_path / "t.yaml"), check_data=False)
    assert [h.name for h in cfg.heads] == LABELS
    assert "?" in cfg.missing_values and "-" in cfg.missing_values
    assert {f.name for f in cfg.features} == {"level", "amount", "score", "city", "measure"}
    assert "#   epoch: Unix timestamps" in text and "# two values; the rarer one" in text
    assert '#   "": no header name' in text  # the key to write to take the column back
    assert '\n""  ' in init_lib.table(decisions)  # the table names it too
    raw = yaml.safe_load(text)
    assert raw["heads"][1]["positive"] == "yes"  # quoted: not a YAML boolean


def test_a_label_that_is_not_a_column_or_has_one_value_is_named(tmp_path):
    path = _table(tmp_path)
    with pytest.raises(ValueError, match="no column 'nope'; the columns are row_id, uuid"):
        init_lib.infer(path, ["nope"])
    with pytest.raises(ValueError, match="label 'constant': 1 value"):
        init_lib.infer(path, ["constant"])
    semi = tmp_path / "semi.csv"
    semi.write_text(open(path).read().replace(",", ";"))
    with pytest.raises(ValueError, match="no column 'clicked'.*The header is one column holding "
                                         "23 semicolons"):
        init_lib.infer(str(semi), ["clicked"])


@pytest.mark.parametrize("path,expected", [
    ("/x/.venv/lib/python3.10/site-packages/tfx/data.csv", "package://tfx/data.csv"),
    ("/work/proj/data/d.csv", "data/d.csv"),
    ("/elsewhere/d.csv", "/elsewhere/d.csv"),
])
def test_the_data_is_named_as_a_package_file_relative_or_absolute(path, expected):
    assert init_lib.data_reference(path, "/work/proj") == expected


def test_headwise_init_writes_a_config_and_schema_that_run_accepts(tmp_path, capsys):
    import palmerpenguins

    from cli import main as cli
    from headwise import sources

    data = os.path.join(os.path.dirname(palmerpenguins.__file__), "data", "penguins.csv")
    out = tmp_path / "p.yaml"
    args = ["init", "--data", data, "--labels", "species,sex,body_mass_g", "--output", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "species" in printed and "multiclass" in printed and "positive class" in printed
    cfg = config_lib.load(str(out))  # the schema file exists and the columns match
    assert cfg.data_path == "package://palmerpenguins/data/penguins.csv"
    assert sources.of(cfg).check(cfg.resolve_data(), cfg) == 344
    assert cfg.schema_path() == str(tmp_path / "penguins.schema.pbtxt")  # beside the config
    assert os.path.isfile(cfg.schema_path())
    assert {h.task for h in cfg.heads} == {"multiclass", "binary", "regression"}
    assert cli.main(args) == 2  # no silent overwrite
    assert "exists; --force" in capsys.readouterr().err
    bad = ["init", "--data", data, "--labels", "island_x", "--output", str(tmp_path / "q.yaml")]
    assert cli.main(bad) == 2
    assert not (tmp_path / "q.yaml").exists() and not list(tmp_path.glob("q.yaml.tmp*"))


def test_column_names_tensorflow_cannot_take_get_a_graph_name_of_their_own():
    from headwise.config.features import graph_name

    assert graph_name("trip_miles") == "trip_miles"  # already one: unchanged (caches stay valid)
    odd = ["Body Mass (g)", "Delta 15 N (o/oo)", "Body_Mass_(g)", "_x", "ünïcode", "a b"]
    names = [graph_name(n) for n in odd]
    assert all(re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", n) for n in names)
    assert names[0].startswith("Body_Mass_g_") and len(set(names)) == len(names)


def test_skewness_is_the_same_at_any_scale_without_overflow():
    """Values near 1e300 cube past a float's range; the skewness divides them first."""
    from collections import Counter

    values = [2 ** (i % 7) for i in range(100)]

    def column(scale: float) -> init_lib.Column:
        return init_lib.Column("x", 100, Counter(repr(v * scale) for v in values), "float")

    small = init_lib._skewness(column(1.0))  # noqa: SLF001
    assert small == pytest.approx(1.3092479, rel=1e-6)  # scipy.stats.skew of `values`
    assert init_lib._skewness(column(1e300)) == pytest.approx(small)  # noqa: SLF001
    assert init_lib.decide_head(column(1e300)).spec["target"] == "log"
