"""`headwise init`: a starting heads config inferred from a data file, and the reasons.

    headwise init --data FILE --labels a,b [--name N] [--output N.yaml]

One pass over the data (CSV: every cell as text, pyarrow's reader; Parquet: its typed
columns), then, per column:
  * missing-value markers: the config's defaults (`""`, `NA`, `null`, ...) and any of
    `EXTRA_MARKERS` (`?`, `-`, `None`, ...) found in a column whose other values are numbers, or
    `?` anywhere (the UCI convention); they become `data.missing_values`;
  * its type, by tfx_bsl's rule (ExampleGen's own: INT < FLOAT < STRING over every value);
  * a feature: numbers with many values -> `numeric`; whole numbers with few values and text
    -> `categorical` (text with more than TOP_K values keeps the TOP_K most frequent); left out
    and said so: a column with no value, a constant, an identifier (a different value in every
    row), a timestamp or date (ISO 8601 text, or Unix seconds), free text (long, nearly all
    distinct);
  * a head per label: two values -> `binary` (0/1 and true/false as they are; other pairs name
    the rarer value `positive`); text or few whole numbers -> `multiclass` (classes listed, or
    learned by Transform above MAX_CLASSES with `top_k`); non-negative whole numbers with many
    values and a small median (MAX_COUNT_MEDIAN), or 0 the most frequent -> `count`; other
    numbers -> `regression`, with `target: log` when none is negative and they are right-
    skewed (sample skewness above LOG_TARGET_SKEW, as every log-target head of the shipped
    configs is: taxi's amounts, diamonds' price);
    text whose cells join several values with `|` -> `multilabel`.
Values with stray blanks are compared stripped, as the pipeline compares labels.

Nothing is guessed silently: `infer` returns one `Decision` per column (what was seen, what was
chosen, why), the CLI prints them as a table, and the written YAML carries the same reasons as
comments. The config is loaded back and the data checked as `headwise run` checks it before it
is kept; no TensorFlow here (the CLI writes the schema next, with TFDV).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections import Counter
from typing import Any

from headwise import tasks
from headwise.config.data import DEFAULT_MISSING_VALUES

EXTRA_MARKERS = ("?", "-", "--", "None", "none", "N/a", "n/a", "na", "#N/A", "missing", ".")
# the tasks a label can get, by the registry's names
BINARY, MULTICLASS, MULTILABEL, COUNT, REGRESSION = (
    t.name for t in (tasks.BinaryTask, tasks.MulticlassTask, tasks.MultilabelTask,
                     tasks.CountTask, tasks.RegressionTask))
MAX_CATEGORIES = 20  # whole numbers with at most this many values: categorical
TOP_K = 1000  # categorical text keeps at most this many values
MAX_CLASSES = 30  # a multiclass head lists at most this many classes, else learns top_k
MAX_COUNT_MEDIAN = 20  # non-negative whole numbers with a larger median: regression
# A non-negative regression label more skewed than this gets `target: log` (1: the usual mark of
# a highly skewed distribution; the shipped log targets are 1.6 to 31, penguins' body mass 0.5)
LOG_TARGET_SKEW = 1.0
MIN_ROWS_FOR_ID = 50  # below this, "a different value in every row" proves nothing
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}"
                       r"([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_UNIX_SECONDS = (631_152_000, 4_102_444_800)  # 1990-01-01 .. 2100-01-01
_UNNAMED = re.compile(r"^Unnamed: \d+$")  # pandas' name for a column without a header


@dataclasses.dataclass
class Decision:
    column: str
    seen: str  # what the data holds: type, values, missing share
    role: str  # "feature", "label", "left out"
    spec: Any  # the feature's or head's YAML (None: left out)
    why: str


@dataclasses.dataclass
class Column:
    name: str
    rows: int
    counts: Counter  # stripped non-missing text -> rows
    kind: str  # "int", "float", "text", "empty"

    @property
    def present(self) -> int:
        return sum(self.counts.values())

    @property
    def distinct(self) -> int:
        return len(self.counts)

    def numbers(self) -> list[float]:
        return [float(v) for v in self.counts]

    def seen(self) -> str:
        missing = 1 - self.present / self.rows if self.rows else 0.0
        top = ", ".join(repr(v) for v, _ in self.counts.most_common(3))
        more = ", ..." if self.distinct > 3 else ""
        return (f"{self.kind}, {self.distinct:,} values ({top}{more}), "
                f"{missing:.0%} missing")


def read_columns(path: str, markers: set[str] | None = None) -> tuple[list[Column], set[str]]:
    """The file's columns (value counts of stripped text, the type) and the markers found."""
    texts = _read_text(path)
    found = set(DEFAULT_MISSING_VALUES) if markers is None else set(markers)
    if markers is None:
        for values in texts.values():
            counts = Counter(v.strip() for v in values if v is not None)
            candidates = [m for m in EXTRA_MARKERS if m in counts]
            numeric = all(_NUMBER.match(v) for v in counts
                          if v not in found and v not in EXTRA_MARKERS)
            for m in candidates:
                if m == "?" or (numeric and len(counts) > len(candidates)):
                    found.add(m)
    columns = []
    for name, values in texts.items():
        counts = Counter(s for s in (v.strip() for v in values if v is not None)
                         if s not in found)
        columns.append(Column(name, len(values), counts, _kind(counts)))
    return columns, found - set(DEFAULT_MISSING_VALUES)


def _kind(counts: Counter) -> str:
    if not counts:
        return "empty"
    if all(_NUMBER.match(v) for v in counts):
        return "int" if all(re.match(r"^-?\d+$", v) for v in counts) else "float"
    return "text"


def _read_text(path: str) -> dict[str, list[str | None]]:
    import pyarrow as pa

    if path.endswith(".parquet") or os.path.isdir(path):
        from headwise import sources

        src = sources.ParquetSource()
        out: dict[str, list] = {}
        import pyarrow.parquet as pq

        for f in src.files(path):
            table = pq.read_table(f)
            for name in table.column_names:
                out.setdefault(name, []).extend(
                    None if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                    for v in table.column(name).to_pylist())
        return out
    import pyarrow.csv as pcsv

    with open(path, "rb") as fh:
        header = fh.readline().decode("utf-8-sig")
    import csv

    names = [h.strip() for h in next(csv.reader([header]))]
    table = pcsv.read_csv(
        path, read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                            strings_can_be_null=False))
    return {n: table.column(n).to_pylist() for n in names}


def data_reference(path: str, config_dir: str) -> str:
    """How the config names its data: `package://pkg/path` for a file inside an installed
    package, else relative to the config's folder when it lies beside or under it, else
    absolute."""
    parts = os.path.abspath(path).split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "package://" + "/".join(parts[parts.index(marker) + 1:])
    rel = os.path.relpath(path, config_dir)
    return os.path.abspath(path) if rel.startswith("..") else rel


def config_name(text: str) -> str:
    """A config name (letters, digits, '_', starting with a letter) from a column or file."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return name if name and name[0].isalpha() else f"h_{name}" if name else "head"


def decide_feature(c: Column) -> Decision:
    def out(why: str) -> Decision:
        return Decision(c.name, c.seen(), "left out", None, why)

    if c.kind == "empty":
        return out("no value in any row")
    if c.distinct == 1:
        return out("one value wherever there is one: nothing to learn from")
    unique_per_row = c.distinct == c.present and c.present >= MIN_ROWS_FOR_ID
    if c.kind == "text":
        sample = list(c.counts)[:200]
        if sum(bool(_ISO_DATE.match(v)) for v in sample) >= 0.9 * len(sample):
            return out("a date or timestamp: derive features from it (hour, weekday, age) "
                       "into columns of their own")
        mean_len = sum(len(v) for v in sample) / len(sample)
        if mean_len > 40 and c.distinct > 0.5 * c.present:
            return out(f"free text ({mean_len:.0f} characters on average, mostly distinct)")
        if unique_per_row:
            return out("a different value in every row: an identifier")
        if c.distinct >= 0.5 * c.present and c.present >= MIN_ROWS_FOR_ID:
            return out(f"{c.distinct:,} values in {c.present:,} rows: nearly one per row, an "
                       "identifier or free text")
        if c.distinct > TOP_K:
            return Decision(c.name, c.seen(), "feature", {"type": "categorical", "top_k": TOP_K},
                            f"text with {c.distinct:,} values: the {TOP_K} most frequent")
        return Decision(c.name, c.seen(), "feature", "categorical", "text")
    numbers = c.numbers()  # in the order of the file (each value where it first appears)
    if c.kind == "int" and unique_per_row:
        if _is_sequence(numbers):
            return out("a different whole number in every row, consecutive: a row number or id")
        if not c.name.strip() or _UNNAMED.match(c.name):
            return out("no header name and a different whole number in every row: the row "
                       "index a data frame wrote with the data (pandas' to_csv, R's write.csv)")
    if c.kind == "int" and c.distinct > 0.9 * c.present and all(
            _UNIX_SECONDS[0] <= v <= _UNIX_SECONDS[1] for v in numbers[:1000]):
        return out("Unix timestamps (seconds): derive features from them into columns of "
                   "their own")
    if c.kind == "int" and unique_per_row and all(a < b for a, b in itertools.pairwise(numbers)):
        return out("a different whole number in every row, increasing down the file: a row "
                   "number or id (with gaps where rows were left out)")
    if c.kind == "int" and c.distinct <= MAX_CATEGORIES:
        return Decision(c.name, c.seen(), "feature", "categorical",
                        f"whole numbers with {c.distinct} values: codes or levels")
    return Decision(c.name, c.seen(), "feature", "numeric",
                    f"{'whole numbers' if c.kind == 'int' else 'numbers'} with "
                    f"{c.distinct:,} values")


def _is_sequence(numbers: list[float]) -> bool:
    s = sorted(numbers)
    return s[-1] - s[0] == len(s) - 1


def decide_head(c: Column) -> Decision:
    name = config_name(c.name)
    head: dict[str, Any] = {"name": name, "label": c.name}

    def made(task: str, why: str, **extra) -> Decision:
        return Decision(c.name, c.seen(), "label", {**head, "task": task, **extra}, why)

    if c.kind == "empty" or c.distinct < 2:
        raise ValueError(f"label {c.name!r}: {c.distinct} value(s) in the data ({c.seen()}); "
                         "a head needs a label with at least two values")
    values = list(c.counts)
    lower = {v.lower() for v in values}
    if c.distinct == 2:
        if lower <= {"0", "1"} or lower <= {"true", "false"}:
            return made(BINARY, "two values, 0/1 or true/false")
        rarer = min(values, key=lambda v: (c.counts[v], v))
        return made(BINARY, f"two values; the rarer one, {rarer!r} "
                    f"({c.counts[rarer] / c.present:.0%}), is the positive class",
                    positive=_yaml_value(rarer, c.kind))
    if c.kind == "text" and sum("|" in v for v in values) >= 0.05 * len(values):
        tags = Counter(t.strip() for v, n in c.counts.items() for t in v.split("|")
                       for _ in range(n) if t.strip())
        classes = [t for t, _ in tags.most_common(MAX_CLASSES)]
        return made(MULTILABEL, f"text joining several values with '|': {len(tags)} tags"
                    + (f", the {MAX_CLASSES} most frequent" if len(tags) > MAX_CLASSES else ""),
                    classes=classes)
    numbers = c.numbers() if c.kind != "text" else []
    if c.kind == "int" and min(numbers) >= 0 and c.counts.most_common(1)[0][0] == "0":
        return made(COUNT, f"non-negative whole numbers, {c.distinct:,} values, 0 the most "
                    "frequent: counts")
    if c.kind == "text" or (c.kind == "int" and c.distinct <= MAX_CATEGORIES):
        kind = "text" if c.kind == "text" else f"whole numbers, {c.distinct} values"
        if c.distinct <= MAX_CLASSES:
            classes = [_yaml_value(v, c.kind) for v, _ in c.counts.most_common()]
            return made(MULTICLASS, f"{kind}: {c.distinct} classes, most frequent first",
                        classes=classes)
        return made(MULTICLASS, f"{kind}: {c.distinct:,} values; Transform learns the "
                    f"{MAX_CLASSES} most frequent, the rest is `other`",
                    top_k=MAX_CLASSES, other_class="other")
    if c.kind == "int" and min(numbers) >= 0 and _median(c) <= MAX_COUNT_MEDIAN:
        return made(COUNT, f"non-negative whole numbers, {c.distinct:,} values, median "
                    f"{_median(c):g}: counts")
    what = "whole numbers, mostly large (a measure rather than a count)" if c.kind == "int" \
        else "numbers"
    skew = _skewness(c)
    if min(numbers) >= 0 and skew > LOG_TARGET_SKEW:
        return made(REGRESSION, f"{what}, {c.distinct:,} values, none negative and right-skewed "
                    f"(skewness {skew:.1f}): the loss on log(1 + y), outputs in its units",
                    target="log")
    return made(REGRESSION, f"{what}, {c.distinct:,} values")


def _skewness(c: Column) -> float:
    """The sample skewness (Fisher's, as scipy.stats.skew) of a numeric column's values,
    computed on the values divided by the largest magnitude (the same skewness, no overflow
    of cubes for values near 1e300)."""
    scale = max(abs(float(v)) for v in c.counts) or 1.0
    pairs = [(float(v) / scale, n) for v, n in c.counts.items()]
    rows = sum(n for _, n in pairs)
    mean = sum(v * n for v, n in pairs) / rows
    m2 = sum((v - mean) ** 2 * n for v, n in pairs) / rows
    m3 = sum((v - mean) ** 3 * n for v, n in pairs) / rows
    return m3 / m2 ** 1.5 if m2 > 0 else 0.0


def _median(c: Column) -> float:
    seen = 0
    for v, n in sorted(((float(v), n) for v, n in c.counts.items())):
        seen += n
        if seen * 2 >= c.present:
            return v
    return 0.0


def _yaml_value(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


def infer(path: str, labels: list[str]) -> tuple[list[Decision], set[str]]:
    columns, markers = read_columns(path)
    by_name = {c.name: c for c in columns}
    unknown = [lab for lab in labels if lab not in by_name]
    if unknown:
        from headwise import sources

        raise ValueError(f"{path}: no column {', '.join(map(repr, unknown))}; the columns are "
                         f"{', '.join(by_name)}{sources.separator_hint(by_name)}")
    decisions = [decide_head(by_name[lab]) for lab in labels]
    names = [d.spec["name"] for d in decisions]
    for i, d in enumerate(decisions):  # two label columns that make one head name
        if names.count(d.spec["name"]) > 1:
            d.spec["name"] = f"{d.spec['name']}_{i + 1}"
    decisions += [decide_feature(c) for c in columns if c.name not in labels]
    return decisions, markers


# ------------------------------------------------------------------------------- writing

def _yaml(value: Any) -> str:
    import json

    if isinstance(value, str):
        plain = re.match(r"^[A-Za-z_][A-Za-z0-9_ .()/+-]*$", value) and value.lower() not in (
            "yes", "no", "true", "false", "on", "off", "null", "y", "n", "~")
        return value if plain and value == value.strip() else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _key(name: str) -> str:
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name) else _yaml(name) if \
        re.match(r"^[A-Za-z_]", name) else f'"{name}"'


def render(name: str, data_key: str, data_path: str, schema_path: str,
           decisions: list[Decision], markers: set[str], source: str) -> str:
    """The config's YAML, every choice with its reason as a comment."""
    lines = [f"# Heads config for {os.path.basename(source)}, written by `headwise init`: every",
             "# choice below is a guess from the data, with its reason. Check them, change what",
             "# is wrong, then `headwise run --config <this file>`. Options: docs/config.md.",
             f"name: {name}", "", "data:", f"  {data_key}: {_yaml(data_path)}"]
    all_markers = sorted(set(DEFAULT_MISSING_VALUES) | markers)
    if markers:
        lines.append(f"  missing_values: {_yaml(all_markers)}   # found in the data: "
                     f"{', '.join(sorted(markers))}")
    lines += ["", "features:"]
    width = max(len(_key(d.column)) for d in decisions) + 2
    for d in decisions:
        if d.role == "feature":
            spec = d.spec if isinstance(d.spec, str) else _yaml(d.spec)
            lines.append(f"  {(_key(d.column) + ':').ljust(width)} {spec:<12} # {d.why}")
    left = [d for d in decisions if d.role == "left out"]
    if left:
        lines.append("  # left out:")
        lines += [f"  #   {_key(d.column)}: {d.why}" for d in left]  # as a key would be written
    lines += ["", "heads:"]
    for d in decisions:
        if d.role != "label":
            continue
        spec = dict(d.spec)
        lines.append(f"  - name: {spec.pop('name')}   # {d.why}")
        for k, v in spec.items():
            lines.append(f"    {k}: {_yaml(v)}")
        lines.append("")
    lines += ["# No model or trainer section: the defaults are the tabular recipe the quality",
              "# benchmark measures (MMoE, uncertainty weighting, epochs from the data size with",
              "# early stopping; docs/config.md).", "",
              "validation:",
              f"  schema: {_yaml(schema_path)}   # the data contract: `headwise schema` "
              "writes it again", ""]
    return "\n".join(lines)


def table(decisions: list[Decision]) -> str:
    rows = [("column", "seen", "role", "as", "why")]
    for d in decisions:
        spec = "" if d.spec is None else d.spec if isinstance(d.spec, str) else (
            d.spec.get("task") if d.role == "label" else _yaml(d.spec))
        rows.append((d.column or '""', d.seen, d.role, spec, d.why))
    widths = [min(max(len(str(r[i])) for r in rows), cap)
              for i, cap in enumerate((28, 48, 8, 12, 200))]

    def cut(text: str, w: int) -> str:
        text = str(text)
        return text if len(text) <= w else text[:w - 1] + "…"

    out = ["  ".join(cut(r[i], widths[i]).ljust(widths[i]) for i in range(5)).rstrip()
           for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
