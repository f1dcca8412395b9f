"""Batch scoring: every head's answers for a whole table (CSV or Parquet), in Beam.

`headwise score --model M --data IN --output OUT` is BulkInferrer for a multi-head model. TFX's
BulkInferrer and Beam's RunInference (tfx-bsl) refuse a model with several signatures or
outputs, so the scoring step is headwise's own DoFn:

  input files ─▶ Read (one file per element; blocks of rows) ─▶ Reshuffle ─▶ Score ─▶ parts
                                                                                     │
  OUT (one file, rows in input order) or OUT/ (one file per input file) ◀── join ◀───┘

  * Read: a CSV file in blocks (pyarrow's CSV reader, every cell as text) or a Parquet file in
    row groups; the model's missing-value markers (the config's `data.missing_values`, kept
    in the model's description) mark a cell missing, as in training.
  * Score: the rows of a block are encoded as serialized tf.Examples, column by column for a
    CSV block whose numbers are plainly written (headwise.csv_blocks, ExampleGen's encoder),
    else by the clients' per-row encoder (headwise.examples: the same dtype rules and errors,
    naming the file, row and column), and sent through the SavedModel's examples signature
    (its description's `signature`) in batches: one forward pass for every head. Each head's
    outputs become columns by the rule every client uses (serving.predictions: its task's
    reading of a Classify answer):
        regression, count     <head>                  the value, in label units
        binary, multiclass,   <head>                  the top class (multilabel: the classes
        multilabel                                    at >= 0.5, joined by "|")
                              <head>_score            the top class's probability
                              <head>_p_<class>        each class's probability
    next to the key columns the user names (`--keys`; default `row`, the data row's number in
    its file, from 1, and `file` when there are several input files).
  * Each block's columns are written as one Parquet part in a staging folder beside OUT; when
    every block is scored, the parts are joined in input order into OUT (Parquet or CSV, by
    its extension), through a temporary name and a rename. A failure leaves no OUT and no
    staging folder.

Any Beam runner runs it; `--workers N` uses the DirectRunner's multi_processing mode (every
DoFn pickled, one model per worker process), the path Dataflow and Flink take.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam

from headwise import contract, versions
from headwise import examples as examples_lib
from serving import predictions as predictions_lib

ClientError = predictions_lib.ClientError

BLOCK_ROWS = 50_000  # rows per block: the unit of work a worker takes (and one output part)
BATCH_ROWS = 2_048  # rows per call of the serving signature
FORMATS = (".csv", ".parquet")


@dataclasses.dataclass(frozen=True)
class Job:
    """What to score and where the answers go; checked by `plan` before Beam starts."""
    model_dir: str  # a SavedModel (holds saved_model.pb)
    files: tuple[str, ...]  # the input files, in order
    fmt: str  # "csv" or "parquet"
    output: str  # a .csv/.parquet file, or a folder (one file per input file)
    output_fmt: str  # ".csv" or ".parquet"
    keys: tuple[str, ...]  # input columns copied next to the answers
    info: dict  # the model's description (assets.extra/headwise.json)
    # No --keys: `keys` are the default ("row": the row number in its file; "file": its name),
    # made up, not read: a column of the data named "row" is a key only when --keys names it.
    numbered: bool = False

    @property
    def sharded(self) -> bool:
        return not self.output.endswith(FORMATS)


def resolve_model(path: str) -> str:
    """A SavedModel folder, or a model base path as the Pusher writes it (numeric versions):
    the version a server serves from it (the highest its model config names)."""
    if os.path.isfile(os.path.join(path, versions.SAVED_MODEL)):
        return path
    found = versions.served_versions(path, versions.LocalFs)
    if not found:
        raise ClientError(f"{path}: not a SavedModel (no {versions.SAVED_MODEL}) and no numeric "
                          "version folder holding one; give the pushed model's folder (e.g. "
                          "outputs/serving/<name>) or one of its versions")
    return os.path.join(path, str(found[-1]))


def input_files(path: str) -> tuple[list[str], str]:
    """(files, "csv" | "parquet"): a file, a folder of *.csv or *.parquet files, or a glob."""
    if os.path.isdir(path):
        found = sorted(p for ext in FORMATS for p in glob.glob(os.path.join(path, f"*{ext}")))
        where = f"the folder {path} holds no *.csv or *.parquet file"
    elif glob.has_magic(path):
        found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        where = f"no file matches {path}"
    else:
        found = [path] if os.path.isfile(path) else []
        where = f"{path}: no such file"
    if not found:
        raise ClientError(where)
    kinds = {os.path.splitext(p)[1].lower() for p in found}
    if not kinds <= set(FORMATS) or len(kinds) > 1:
        raise ClientError(f"{path}: the data must be CSV (.csv) or Parquet (.parquet) files, "
                          f"all of one kind; found {', '.join(sorted(kinds))}")
    return found, kinds.pop()[1:]


def columns_of(file: str, fmt: str) -> list[str]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(file).names)
        except (OSError, ValueError) as e:
            raise ClientError(f"{file}: not a readable Parquet file ({e})") from None
    import csv

    try:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as e:
        raise ClientError(f"{file}, line 1 (the header): not UTF-8 text ({e.reason})") from None
    if not header:
        raise ClientError(f"{file}: empty file; a CSV to score starts with a header row")
    return [h.strip() for h in header]


def output_columns(info: dict) -> list[str]:
    """The answer columns, in order: per head, by its task (see the module's table)."""
    out = []
    for head in info["heads"]:
        if "classes" in head:
            out += [head["name"], f"{head['name']}_score"]
            out += [f"{head['name']}_p_{c}" for c in head["classes"]]
        else:
            out.append(head["name"])
    return out


def plan(model: str, data: str, output: str, keys: Sequence[str] = ()) -> Job:
    """Check everything that can be checked before Beam starts: the model, the input files and
    their columns, the keys, the output's name; ClientError names the file and the fix."""
    model_dir = resolve_model(model)
    try:
        info = examples_lib.read_model_info(model_dir)
    except FileNotFoundError:
        raise ClientError(f"{model_dir}: no {examples_lib.MODEL_INFO}; was it exported by "
                          "headwise?") from None
    files, fmt = input_files(data)
    if info.get("images"):
        raise ClientError(f"{model_dir}: a model with image features; score it with `headwise "
                          "predict --csv` (image paths) or through the server")
    features = set(info["features"])
    for f in files:
        cols = set(columns_of(f, fmt))
        absent = sorted(features - cols)
        if absent:
            raise ClientError(
                f"{f}: no column for the model's feature(s) {', '.join(absent)}. Add them (an "
                "empty column is a missing value, which the model imputes)")
        unknown = [k for k in keys if k not in cols]
        if unknown:
            raise ClientError(f"{f}: --keys names column(s) the data does not have: "
                              f"{', '.join(unknown)}")
    numbered = not keys
    keys = tuple(keys) or (("file", "row") if len(files) > 1 else ("row",))
    clash = sorted(set(keys) & set(output_columns(info)))
    if clash:
        raise ClientError(f"--keys {', '.join(clash)}: the name of an answer column too; "
                          "rename the column or leave it out of --keys")
    if output.endswith(FORMATS):
        if os.path.isdir(output):
            raise ClientError(f"--output {output}: a folder; give another name")
        output_fmt = os.path.splitext(output)[1]
    else:
        if os.path.isfile(output):
            raise ClientError(f"--output {output}: a file; give a name ending in .csv or "
                              ".parquet, or a folder for one output file per input file")
        output_fmt = ".parquet" if fmt == "parquet" else ".csv"
    return Job(model_dir, tuple(files), fmt, output, output_fmt, keys, info, numbered)


# ---------------------------------------------------------------- reading (no TensorFlow)

def read_blocks(job: Job, file_index: int) -> Iterator[tuple[int, int, int, dict]]:
    """(file index, block index, first row number, {column: values}) for one input file; a
    value is text (CSV), a Python value (Parquet), or None where missing."""
    file = job.files[file_index]
    markers = {m.strip() for m in job.info.get("missing_values", ())} | {""}
    needed = sorted(set(job.info["features"]) | (set() if job.numbered else set(job.keys)))
    first = 1
    for block_no, columns in enumerate(_blocks(file, job.fmt, needed)):
        n = len(next(iter(columns.values()))) if columns else 0
        for name, values in columns.items():
            columns[name] = [None if v is None or (isinstance(v, str) and v.strip() in markers)
                             else v for v in values]
        yield file_index, block_no, first, columns
        first += n


def _blocks(file: str, fmt: str, needed: list[str]) -> Iterator[dict[str, list]]:
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(file).iter_batches(batch_size=BLOCK_ROWS, columns=needed):
            yield {c: batch.column(c).to_pylist() for c in needed}
        return
    import pyarrow.csv as pcsv

    names = columns_of(file, "csv")
    try:
        reader = pcsv.open_csv(
            file,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1,
                                          block_size=8 << 20),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, include_columns=needed,
                strings_can_be_null=False, quoted_strings_can_be_null=False))
        pending: dict[str, list] = {c: [] for c in needed}
        for batch in reader:
            for c in needed:
                pending[c] += batch.column(c).to_pylist()
            while len(pending[needed[0]]) >= BLOCK_ROWS:
                yield {c: v[:BLOCK_ROWS] for c, v in pending.items()}
                pending = {c: v[BLOCK_ROWS:] for c, v in pending.items()}
        if pending[needed[0]]:
            yield pending
    except pa.ArrowInvalid as e:
        raise ClientError(f"{file}: {e}. `headwise check` names the line and the fix") from None


# ---------------------------------------------------------------- scoring (TensorFlow)

def answers(info: dict, outputs: dict[str, Any]) -> dict[str, list]:
    """The model's outputs for a batch ({head: [batch, units]}) -> the answer columns,
    each head read as a client reads its Classify/Regress answer."""
    import numpy as np

    columns: dict[str, list] = {}
    for head in info["heads"]:
        name = head["name"]
        out = np.asarray(outputs[name])
        task = predictions_lib.task_of(head)
        if "classes" not in head:
            columns[name] = [float(v) for v in out[:, 0]]
            continue
        scores = task.class_scores(out, lambda parts: np.concatenate(parts, axis=1))
        classes = head["classes"]
        read = [predictions_lib.classification(head, list(zip(classes, map(float, row),
                                                              strict=True)))
                for row in scores]
        columns[name] = [p.label for p in read]
        columns[f"{name}_score"] = [p.score for p in read]
        for j, c in enumerate(classes):
            columns[f"{name}_p_{c}"] = [float(v) for v in scores[:, j]]
    return columns


class Scorer:
    """The model, loaded once per worker; blocks of rows in, answer columns out."""

    def __init__(self, job: Job):
        self.job = job
        self._fn = None

    def load(self) -> None:
        import tensorflow as tf

        self._model = tf.saved_model.load(self.job.model_dir)
        self._fn = self._model.signatures[contract.examples_signature(self.job.info)]

    def score(self, file_index: int, first: int, columns: dict[str, list]) -> dict[str, list]:
        import tensorflow as tf

        if self._fn is None:
            self.load()
        info, job = self.job.info, self.job
        n = len(next(iter(columns.values())))
        out: dict[str, list] = {}
        for k in job.keys:
            if job.numbered and k == "row":
                out[k] = list(range(first, first + n))
            elif job.numbered and k == "file":
                out[k] = [os.path.basename(job.files[file_index])] * n
            else:
                out[k] = [None if v is None else str(v) if job.fmt == "csv" else v
                          for v in columns[k]]
        fast = fast_examples(columns, info["features"]) if job.fmt == "csv" else None
        rows = None if fast is not None else [
            {c: columns[c][i] for c in info["features"]} for i in range(n)]
        for start in range(0, n, BATCH_ROWS):
            if fast is not None:
                serialized = fast[start:start + BATCH_ROWS]
            else:
                try:
                    serialized = examples_lib.to_examples(rows[start:start + BATCH_ROWS],
                                                          info["features"], (), None,
                                                          first + start)
                except ValueError as e:
                    raise ClientError(f"{job.files[file_index]}: {e}") from None
            result = self._fn(**{contract.SERVING_INPUT: tf.constant(serialized)})
            for name, values in answers(info, result).items():
                out.setdefault(name, []).extend(values)
        return out


def fast_examples(columns: dict[str, list], features: dict[str, str]) -> list[bytes] | None:
    """A CSV block's rows as serialized tf.Examples, column by column (headwise.csv_blocks,
    about 10x the clients' per-row encoder), when every number is plainly written (`12`,
    `-3.5`, `1e6`); None otherwise, and the block takes the per-row encoder, whose rules
    (`3.0` for an int, `nan` for a float) and errors (file, row, column) decide. Both give the
    model the same values: a missing cell is an empty value list here and no key there."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from headwise import csv_blocks

    kinds = {"int64": csv_blocks.ColumnType.INT, "float32": csv_blocks.ColumnType.FLOAT}
    arrays, types = [], []
    try:
        for name, dtype in features.items():
            text = pa.array(columns[name], pa.large_string())
            kind = kinds.get(dtype, csv_blocks.ColumnType.STRING)
            if kind != csv_blocks.ColumnType.STRING:
                stripped = pc.ascii_trim_whitespace(text)
                plain = pc.match_substring_regex(stripped, csv_blocks.PLAIN_INT)
                if kind == csv_blocks.ColumnType.FLOAT:
                    plain = pc.or_(plain, pc.match_substring_regex(
                        stripped, csv_blocks.PLAIN_DECIMAL))
                if not pc.all(pc.fill_null(plain, True)).as_py():
                    return None
            arrays.append(text.cast(pa.large_binary()))
            types.append(kind)
        return csv_blocks.to_examples(pa.RecordBatch.from_arrays(arrays, list(features)), types)
    except (pa.ArrowInvalid, ValueError, OverflowError):  # e.g. an int beyond int64
        return None


def write_part(part_dir: str, file_index: int, block: int, columns: dict[str, list]) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(part_dir, f"part-{file_index:05d}-{block:06d}.parquet")
    pq.write_table(pa.table(columns), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


def run(job: Job, beam_args: Sequence[str] = (), progress=sys.stderr) -> dict[str, Any]:
    """Score every row; returns {"rows", "seconds", "rows_per_s", "outputs"}."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parent = job.output if job.sharded else os.path.dirname(os.path.abspath(job.output))
    os.makedirs(parent, exist_ok=True)
    part_dir = tempfile.mkdtemp(prefix=".score-parts-", dir=parent)
    start = time.monotonic()
    try:
        options = PipelineOptions(list(beam_args) or ["--direct_running_mode=in_memory",
                                                      "--direct_num_workers=1"])
        with beam.Pipeline(options=options) as p:
            _ = (p
                 | "Files" >> beam.Create(list(range(len(job.files))))
                 | "Read" >> beam.FlatMap(lambda i: read_blocks(job, i))
                 | "Spread" >> beam.Reshuffle()
                 | "Score" >> beam.ParDo(_ScoreFn(job, part_dir)))
        outputs, rows = _join(job, part_dir, progress)
    finally:
        shutil.rmtree(part_dir, ignore_errors=True)
    seconds = time.monotonic() - start
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds if seconds else 0.0,
            "outputs": outputs}


class _ScoreFn(beam.DoFn):
    """One worker's Scorer: the model loads once per DoFn instance (setup), each block of rows
    becomes one Parquet part."""

    def __init__(self, job: Job, part_dir: str):
        self.job, self.part_dir = job, part_dir
        self.scorer = Scorer(job)

    def setup(self):
        self.scorer.load()

    def process(self, element):
        file_index, block, first, columns = element
        out = self.scorer.score(file_index, first, columns)
        n = len(next(iter(out.values())))
        write_part(self.part_dir, file_index, block, out)
        print(f"headwise score: {os.path.basename(self.job.files[file_index])}: rows "
              f"{first:,}-{first + n - 1:,} scored", file=sys.stderr, flush=True)
        yield n


def _join(job: Job, part_dir: str, progress) -> tuple[list[str], int]:
    """Parts -> OUT (one file, input order) or OUT/<input name> per input file; each written
    part by part (memory: one part) under a temporary name and renamed, so a reader never sees
    half a file."""
    parts: dict[int, list[str]] = {}
    for name in sorted(os.listdir(part_dir)):
        if name.endswith(".parquet"):
            parts.setdefault(int(name.split("-")[1]), []).append(os.path.join(part_dir, name))
    if job.sharded:
        groups = [(os.path.join(job.output, os.path.splitext(os.path.basename(f))[0]
                                + job.output_fmt), parts.get(i, []))
                  for i, f in enumerate(job.files)]
    else:
        groups = [(job.output, [p for i in sorted(parts) for p in parts[i]])]
    written, rows = [], 0
    for target, files in groups:
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            rows += _concat(files, tmp, job.output_fmt, job)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        written.append(target)
    print(f"headwise score: {rows:,} rows -> {', '.join(written)}", file=progress)
    return written, rows


def _concat(files: list[str], path: str, fmt: str, job: Job) -> int:
    """Write the parts one after another into one file (a key column that is null in one part
    and typed in another takes the type)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if files:
        schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    else:
        schema = pa.schema([(c, pa.string()) for c in (*job.keys, *output_columns(job.info))])
    writer = pq.ParquetWriter(path, schema) if fmt == ".parquet" else \
        pcsv.CSVWriter(path, schema)
    rows = 0
    with writer:
        for f in files:
            table = pq.read_table(f).cast(schema)
            writer.write_table(table)
            rows += table.num_rows
    return rows
