"""The `data` section: where the examples come from and how they are split.

The data is one of the sources of `headwise.sources`, named by its key: `data.csv: FILE` or
`data.parquet: FILE` (a Parquet file, a folder of Parquet files, or a glob); a relative path is
relative to the config file, `package://pkg/path` points inside an installed package.

Three splits, each with one job:
  train       what the model is fitted on (and what Transform's analyzers and the trivial
              baselines learn from);
  validation  what the Trainer watches for early stopping and model selection;
  test        what the Evaluator's gates, the report and every benchmark quality number use:
              never seen by training or model selection, so the verdict is not optimistic.
ExampleGen assigns each row by a hash of the whole row, or of the `split_on` column's value, so
that rows sharing that value (one user, one trip, duplicates) never straddle two splits.

`missing_values`: cell texts that mean "no value" (compared after stripping blanks, case
sensitive). ExampleGen writes such a cell as an empty value list, so the schema, statistics,
Transform and the labels all see a missing value, exactly as for an empty cell.

`images`: the folder that the cells of `image` feature columns name files in (a relative path
is relative to the config file; default: the CSV's folder). ExampleGen reads each named file and
writes its encoded bytes into the tf.Example, so a folder of images plus a CSV of labels is a
dataset as it stands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from headwise import sources
from headwise.config.fields import Fields

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
DEFAULT_SPLIT = ((TRAIN, 0.7), (VALIDATION, 0.15), (TEST, 0.15))
BUCKETS = 100  # hash buckets in all: a split's share is a whole number of percent
# R's and pandas' markers, and what databases and spreadsheets export; "" is always missing.
DEFAULT_MISSING_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL")


# The data sources a config can name, by their key under `data:`.
FORMATS = tuple(sources.SOURCES)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    format: str  # one of FORMATS: the key the data's path was given under
    path: str
    split: tuple[tuple[str, float], ...] = DEFAULT_SPLIT  # (name, share), in SPLITS order
    split_on: str | None = None  # a column: rows with the same value land in the same split
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    images: str | None = None  # the folder image columns' file names are relative to


def parse_data(top: Fields) -> DataConfig:
    f = Fields(top.source, "data", top.get("data", dict),
               (*FORMATS, "split", "split_on", "missing_values", "images"))
    given = [k for k in FORMATS if k in f.value]
    if len(given) != 1:
        f.fail(f"name the data with exactly one of {', '.join(f'{k}: FILE' for k in FORMATS)} "
               f"(got {given or 'none'})")
    fmt = given[0]
    path = f.get(fmt, str)
    raw: Mapping[str, Any] = f.get("split", dict, dict(DEFAULT_SPLIT))
    if set(raw) != set(SPLITS):
        f.fail(f"give the share of each of {list(SPLITS)} (got {sorted(raw)}), e.g. "
               f"{{train: 0.7, validation: 0.15, test: 0.15}}", "split")
    split = []
    for name in SPLITS:
        share = raw[name]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            f.fail(f"{name}: expected a share in (0, 1), got {share!r}", "split")
        if abs(share * BUCKETS - round(share * BUCKETS)) > 1e-6:
            f.fail(f"{name}: {share!r} is not a whole number of percent", "split")
        split.append((name, float(share)))
    total = sum(s for _, s in split)
    if abs(total - 1) > 1e-6:
        f.fail(f"the shares must add up to 1, got {total:g}", "split")
    split_on = f.get("split_on", str, None)
    markers = f.get("missing_values", list, list(DEFAULT_MISSING_VALUES))
    if not all(isinstance(m, str) for m in markers):
        f.fail(f"expected a list of strings (quote numbers: ['-1']), got {markers!r}",
               "missing_values")
    markers = tuple(dict.fromkeys(["", *(m.strip() for m in markers)]))
    images = f.get("images", str, None)
    if images is not None and not images.strip():
        f.fail("expected a folder (relative to the config file), got an empty string", "images")
    if images is not None and fmt != "csv":
        f.fail("an image folder goes with a CSV whose cells name the files (data.csv)", "images")
    return DataConfig(format=fmt, path=path, split=tuple(split), split_on=split_on,
                      missing_values=markers, images=images)


def raw_data(d: DataConfig) -> dict[str, Any]:
    out: dict[str, Any] = {d.format: d.path, "split": dict(d.split)}
    if d.split_on is not None:
        out["split_on"] = d.split_on
    out["missing_values"] = list(d.missing_values)
    if d.images is not None:
        out["images"] = d.images
    return out
