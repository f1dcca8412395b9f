"""Data sources (headwise.sources, components.data_sources): CSV and Parquet behind one
interface. The same rows as CSV and as Parquet give byte-identical tf.Examples (so the same
splits, the same Transform and the same model), and the pre-flight check names the file, the
row or line, the column and the fix, whatever the source."""

from __future__ import annotations

import datetime
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from headwise import config as config_lib
from headwise import data_check, sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
ROWS = 1500


@pytest.fixture(scope="module")
def taxi_sample(tmp_path_factory):
    """The first ROWS rows of the taxi CSV, and the same rows as two Parquet files (types as
    pyarrow reads the CSV; empty text stays text, a missing-value marker in this data)."""
    cfg = config_lib.load(TAXI)
    out = tmp_path_factory.mktemp("taxi_sources")
    with open(cfg.resolve_data(), newline="", encoding="utf-8") as fh:
        lines = [line for _, line in zip(range(ROWS + 1), fh, strict=False)]
    csv_path = out / "taxi.csv"
    csv_path.write_text("".join(lines))
    table = pacsv.read_csv(str(csv_path))
    shards = out / "shards"
    shards.mkdir()
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), shards / "part-0.parquet")
    pq.write_table(table.slice(half), shards / "part-1.parquet")
    return cfg, str(csv_path), str(shards)


def _examples(transform, tmp_path, name: str) -> list[bytes]:
    import tensorflow as tf

    path = str(tmp_path / f"{name}.tfrecord")
    with beam.Pipeline() as p:
        _ = (p | transform  # CSV: serialised already (deterministically); Parquet: protos
             | beam.Map(lambda e: e if isinstance(e, bytes) else
                        e.SerializeToString(deterministic=True))
             | beam.io.WriteToTFRecord(path, shard_name_template=""))
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(path))


def test_the_same_rows_as_csv_and_as_parquet_give_identical_examples(taxi_sample, tmp_path):
    """Byte for byte: ExampleGen hashes the serialized example to split, so identical examples
    are identical splits, and everything downstream follows."""
    from components.csv_example_gen import CsvToExamples
    from components.parquet_example_gen import ParquetToExamples

    cfg, csv_path, shards = taxi_sample
    from_csv = _examples(CsvToExamples(csv_path, cfg.missing_values), tmp_path, "csv")
    from_parquet = _examples(ParquetToExamples(sources.ParquetSource().files(shards),
                                               cfg.missing_values), tmp_path, "parquet")
    assert len(from_csv) == ROWS
    assert from_parquet == from_csv


def test_parquet_values_follow_the_csv_rules():
    """A 0 and an empty string are values or missing as in a CSV: 0 stays 0 (TFX's own
    Parquet conversion writes every falsy value as missing); a marker, a null and NaN are
    missing, each an empty list of the column's type; an all-null column has no type."""
    import tensorflow as tf

    from components.parquet_example_gen import batch_to_examples

    batch = pa.table({
        "i": pa.array([0, None, -1], pa.int64()),
        "f": pa.array([0.0, float("nan"), 2.5]),
        "s": pa.array(["", " NA ", "x"]),
        "b": pa.array([True, False, None]),
        "t": pa.array([None, None, None], pa.null()),
        "d": pa.array([datetime.date(2024, 1, 2), None, None], pa.date32()),
    }).to_batches()[0]
    markers = frozenset(["", "NA", "nan", "-1"])
    ex = [tf.train.Example.FromString(e.SerializeToString())
          for e in batch_to_examples(batch, markers)]
    f = [e.features.feature for e in ex]
    assert list(f[0]["i"].int64_list.value) == [0] and f[0]["f"].float_list.value == [0.0]
    assert f[1]["i"].HasField("int64_list") and not f[1]["i"].int64_list.value
    assert not f[2]["i"].int64_list.value  # -1 is a marker here, as the text "-1" in a CSV
    assert not f[1]["f"].float_list.value and f[2]["f"].float_list.value == [2.5]
    assert not f[0]["s"].bytes_list.value and not f[1]["s"].bytes_list.value
    assert f[2]["s"].bytes_list.value == [b"x"]
    assert [list(x["b"].int64_list.value) for x in f] == [[1], [0], []]
    assert f[0]["t"] == tf.train.Feature()
    assert f[0]["d"].bytes_list.value == [b"2024-01-02"]


def test_headwise_schema_of_parquet_is_the_csvs(taxi_sample):
    from pipeline import schema as schema_lib

    cfg, csv_path, shards = taxi_sample
    as_csv = schema_lib.generate_schema(cfg, csv_path)
    parquet_cfg = config_lib.from_dict(
        {**_raw(cfg), "data": {"parquet": shards}}, source=cfg.source)
    as_parquet = schema_lib.generate_schema(parquet_cfg)
    # The whole curated schema: types, domains, ranges, and presence (a missing value must
    # count as missing in the statistics, as the data gate counts it), in the file's order.
    assert as_parquet == as_csv
    assert [f.name for f in as_parquet.feature] == sources.ParquetSource().columns(shards)
    company = next(f for f in as_parquet.feature if f.name == "company")
    assert company.presence.min_fraction < 0.9  # the taxi sample's company is often missing


def _raw(cfg):
    return config_lib.to_raw(cfg)


# --- Config ------------------------------------------------------------------------------------

def test_a_config_names_its_data_with_exactly_one_source(taxi_sample):
    cfg, _, shards = taxi_sample
    raw = _raw(cfg)
    parquet = config_lib.from_dict({**raw, "data": {"parquet": shards}}, source=cfg.source)
    assert parquet.data_format == "parquet" and parquet.resolve_data() == shards
    assert config_lib.from_json(config_lib.to_json(parquet)) == parquet
    for data, match in (({"csv": "a.csv", "parquet": "b"}, r"exactly one of csv: FILE, "
                                                           r"parquet: FILE \(got \['csv', "),
                        ({"split_on": "x"}, r"exactly one of .* \(got none\)"),
                        ({"parquet": shards, "images": "img"}, "data.images: an image folder")):
        with pytest.raises(config_lib.ConfigError, match=match):
            config_lib.from_dict({**raw, "data": data}, source=cfg.source)


# --- Pre-flight ------------------------------------------------------------------------------

def _cfg(path, heads, features=None):
    return config_lib.from_dict({
        "name": "p", "data": {"parquet": str(path)}, "features": features or {"x": "numeric"},
        "heads": heads}, source=str(path))


def test_the_preflight_check_names_a_parquet_column_of_the_wrong_type(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": ["1.5", "2"], "y": [0, 1]}), path)
    cfg = _cfg(path, [{"name": "y", "label": "y", "task": "binary"}])
    with pytest.raises(data_check.DataError) as e:
        sources.of(cfg).check(str(path), cfg)
    msg = str(e.value)
    assert f"{path}, column 'x': type string" in msg and "features.x is numeric" in msg, msg
    assert "Cast it to a number" in msg


def test_the_preflight_label_checks_are_the_csvs(tmp_path):
    """The same label rules and messages as for a CSV, pointing at a row of a file."""
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b", "c", None],
                             "n": [1, 2, -3, None]}), path)
    binary = _cfg(path, [{"name": "y", "label": "y", "task": "binary", "positive": "z"}])
    with pytest.raises(data_check.DataError, match="positive: 'z' never occurs"):
        sources.of(binary).check(str(path), binary)
    # One value against the rest of a three-valued column: a derived binary label.
    one_vs_rest = _cfg(path, [{"name": "y", "label": "y", "task": "binary", "positive": "a"}])
    sources.of(one_vs_rest).check(str(path), one_vs_rest)
    count = _cfg(path, [{"name": "n", "label": "n", "task": "count"}])
    with pytest.raises(data_check.DataError,
                       match=rf"{path}, row 3, column 'n': '-3': a count head's label must be "
                             "a non-negative whole number"):
        sources.of(count).check(str(path), count)
    fine = _cfg(path, [{"name": "y", "label": "y", "task": "multiclass",
                        "classes": ["a", "b", "c"]}])
    assert sources.of(fine).check(str(path), fine) == 4


def test_a_folder_of_shards_must_agree_on_columns_and_types(tmp_path):
    pq.write_table(pa.table({"x": [1.0], "y": [1]}), tmp_path / "part-0.parquet")
    pq.write_table(pa.table({"x": ["1"], "y": [0]}), tmp_path / "part-1.parquet")
    with pytest.raises(config_lib.ConfigError,
                       match=r"part-1.parquet: its columns differ from .*part-0.parquet's "
                             r"\(x: double vs string\)"):
        sources.ParquetSource().columns(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(config_lib.ConfigError, match=r"holds no \*.parquet file"):
        sources.ParquetSource().files(str(tmp_path / "empty"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(data_check.DataError, match="junk.parquet: not a readable Parquet file"):
        sources.ParquetSource().columns(str(tmp_path / "junk.parquet"))


def test_staging_copies_only_what_changed_and_drops_old_shards(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"x": [float(i)]}), src / f"p{i}.parquet")
    root = tmp_path / "root"
    staged = sources.ParquetSource().stage(str(src), str(root))
    assert [os.path.basename(p) for p in staged] == [f"part-{i:05d}.parquet" for i in range(3)]
    mtime = os.stat(staged[0]).st_mtime_ns
    os.remove(src / "p2.parquet")
    staged = sources.ParquetSource().stage(str(src), str(root))
    assert sorted(os.listdir(root)) == ["part-00000.parquet", "part-00001.parquet"]
    assert os.stat(staged[0]).st_mtime_ns == mtime  # unchanged: not copied again
    assert pq.read_table(staged[1]).column("x").to_pylist() == [1.0]


def test_predict_reads_parquet_rows(tmp_path):
    from serving import predictions

    pq.write_table(pa.table({"x": [1.5, None], "g": ["a", "b"]}), tmp_path / "r.parquet")
    assert predictions.read_rows(str(tmp_path / "r.parquet"), "parquet") == [
        {"x": 1.5, "g": "a"}, {"x": None, "g": "b"}]
    with pytest.raises(predictions.ClientError, match="no file matches"):
        predictions.read_rows(str(tmp_path / "*.nothing"), "parquet")


def test_the_csv_source_reads_its_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\ufeff a ,b\n1,2\n")
    assert sources.CsvSource().columns(str(path)) == ["a", "b"]
