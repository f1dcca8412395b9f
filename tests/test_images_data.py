"""Image features on the data side (issue 19): a CSV of file names plus a folder of images.

ExampleGen's own PTransform (components.csv_example_gen) writes each named file's bytes into the
tf.Example and stops on a file that is missing or no image, naming file, column and row; the
curated schema declares the column BYTES with an image_domain, which TFDV's statistics and
ExampleValidator then treat as opaque bytes; the pre-flight check (headwise.data_check) names
line and column; `headwise data digits` writes the demo dataset. No pipeline run: tiny folders
written by the tests.
"""

from __future__ import annotations

import csv
import io
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_metadata.proto.v0 import schema_pb2

from components import data_gate, distributions
from components.csv_example_gen import CsvToExamples, executor_settings
from headwise import config as config_lib
from headwise import data_check, datasets

BACKBONE = {"application": "MobileNetV2", "weights": "none"}
TAXI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipeline",
                    "configs", "taxi.yaml")


def png(seed: int, size=(8, 8)) -> bytes:
    pixels = (np.arange(size[0] * size[1]).reshape(size) * (seed + 1)) % 256
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def make_data(tmp_path, rows: list[tuple[str, str, str]], files: dict[str, bytes]):
    """data.csv (image,x,y) and images/ with `files`; returns (csv path, images dir, config)."""
    images = tmp_path / "images"
    images.mkdir()
    for name, content in files.items():
        (images / name).write_bytes(content)
    path = tmp_path / "data.csv"
    path.write_text("image,x,y\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    cfg = config_lib.from_dict({
        "name": "img", "data": {"csv": str(path), "images": str(images)},
        "features": {"image": {"type": "image", "size": [32, 32], "channels": 1},
                     "x": "numeric"},
        "heads": [{"name": "y", "label": "y", "task": "binary"}],
        "model": {"hidden_units": [4], "backbone": BACKBONE}}, source=str(tmp_path / "c.yaml"))
    return str(path), str(images), cfg


def read_examples(tmp_path, csv_path: str, images_dir: str) -> list[tf.train.Example]:
    out = str(tmp_path / "examples")
    with beam.Pipeline() as p:
        _ = (p | CsvToExamples(csv_path, config_lib.DEFAULT_MISSING_VALUES, ["image"],
                               images_dir)
             | beam.io.WriteToTFRecord(out, shard_name_template=""))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(out)]


FILES = {"a.png": png(0), "0001.png": png(1), "c.png": png(2, (5, 7))}
ROWS = [("a.png", "1.5", "1"), ("0001.png", "2.5", "0"), ("c.png", "3.5", "1"),
        ("", "4.5", "0"), ("NA", "5.5", "1")]


# -- ExampleGen --------------------------------------------------------------------------------

def test_example_gen_writes_each_named_files_bytes(tmp_path):
    csv_path, images, _ = make_data(tmp_path, ROWS, FILES)
    examples = read_examples(tmp_path, csv_path, images)
    by_x = {e.features.feature["x"].float_list.value[0]: e.features.feature["image"]
            for e in examples}
    # Exactly the file's bytes, a numeric-looking name (0001.png) included: the column is
    # bytes, never typed by its names; an empty cell and a marker are an empty value list.
    assert {x: f.WhichOneof("kind") for x, f in by_x.items()} == dict.fromkeys(by_x, "bytes_list")
    assert [list(by_x[x].bytes_list.value) for x in (1.5, 2.5, 3.5, 4.5, 5.5)] == [
        [FILES["a.png"]], [FILES["0001.png"]], [FILES["c.png"]], [], []]


def test_a_column_of_numeric_file_names_is_still_bytes(tmp_path):
    files = {"1": png(0), "2.5": png(1)}  # names that type inference would read as numbers
    csv_path, images, _ = make_data(tmp_path, [("1", "1", "1"), ("2.5", "2", "0")], files)
    examples = read_examples(tmp_path, csv_path, images)
    assert sorted(v for e in examples for v in e.features.feature["image"].bytes_list.value) \
        == sorted(files.values())


@pytest.mark.parametrize("name,content,words", [
    ("nothere.png", None, ["no such file"]),
    ("bad.png", b"this is text, not a picture", ["not a PNG, JPEG, GIF or BMP image"]),
    ("cut.png", png(0)[:30], ["not a PNG, JPEG, GIF or BMP image"]),  # a truncated PNG
], ids=["missing", "text", "truncated"])
def test_example_gen_stops_on_a_missing_or_broken_file_naming_it(tmp_path, name, content,
                                                                   words):
    files = dict(FILES, **({name: content} if content is not None else {}))
    csv_path, images, _ = make_data(tmp_path, [*ROWS, (name, "7.25", "1")], files)
    with pytest.raises(Exception) as caught:
        read_examples(tmp_path, csv_path, images)
    message = str(caught.value)
    for w in [csv_path, "column 'image'", f"{images}/{name}", "x='7.25'", *words]:
        assert w in message, message


def test_the_pipeline_gives_example_gen_the_columns_and_the_config_relative_folder(tmp_path):
    from pipeline import pipeline as pipeline_lib

    _, images, cfg = make_data(tmp_path, ROWS, FILES)
    gen = pipeline_lib.example_gen_component(cfg, "/staged/copy/of/the/csv")
    got = executor_settings(gen.exec_properties)
    assert (got.image_columns, got.images_dir) == (("image",), images)
    assert got.missing_values == cfg.missing_values
    # Without image features, no image settings (the executor reads the rows as before).
    taxi = config_lib.load(TAXI)
    got = executor_settings(pipeline_lib.example_gen_component(taxi, "/d").exec_properties)
    assert (got.image_columns, got.images_dir) == ((), "")


# -- the data contract -------------------------------------------------------------------------

def test_the_curated_schema_declares_image_bytes_and_tfdv_keeps_them_opaque(tmp_path):
    import tensorflow_data_validation as tfdv

    from pipeline import schema as schema_lib

    csv_path, images, cfg = make_data(tmp_path, ROWS, FILES)
    schema = schema_lib.generate_schema(cfg)
    image = next(f for f in schema.feature if f.name == "image")
    assert image.type == schema_pb2.BYTES and image.HasField("image_domain")
    for field in ("domain", "string_domain", "distribution_constraints"):
        assert not image.HasField(field), field
    slack = cfg.validation.missing_slack
    assert image.presence.min_fraction == pytest.approx(3 / 5 - slack, abs=0.01)  # floored
    assert image.value_count.min == 0 and image.value_count.max == 1
    assert not schema.string_domain  # no vocabulary of encoded images anywhere
    # StatisticsGen's statistics with this schema: byte statistics, no top-k of images; and
    # ExampleValidator and the gate find nothing wrong with healthy data.
    examples = read_examples(tmp_path, csv_path, images)
    path = str(tmp_path / "ex.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for e in examples:
            w.write(e.SerializeToString())
    stats = tfdv.generate_statistics_from_tfrecord(
        path, stats_options=distributions.stats_options(schema))
    feature = next(f for f in stats.datasets[0].features if f.path.step[0] == "image")
    assert feature.WhichOneof("stats") == "bytes_stats"
    assert feature.bytes_stats.max_num_bytes_int == max(len(b) for b in FILES.values())
    anomalies = tfdv.validate_statistics(stats, schema)
    assert not anomalies.anomaly_info, data_gate.describe({"train": anomalies})
    assert not data_gate.missing_value_problems("train", stats.datasets[0], schema)


# -- the pre-flight check ----------------------------------------------------------------------

def test_preflight_accepts_images_and_missing_cells(tmp_path):
    csv_path, _, cfg = make_data(tmp_path, ROWS, FILES)
    assert data_check.check_csv(csv_path, cfg) == len(ROWS)


@pytest.mark.parametrize("name,content,words", [
    ("nothere.png", None, ["no such file", "correct the name or the folder"]),
    ("notes.png", b"a text file named .png", ["not a PNG, JPEG, GIF or BMP image",
                                              "starts with b'a text f'"]),
], ids=["missing", "text"])
def test_preflight_names_line_column_and_file(tmp_path, name, content, words):
    files = dict(FILES, **({name: content} if content is not None else {}))
    csv_path, images, cfg = make_data(tmp_path, [*ROWS, (name, "1", "1")], files)
    with pytest.raises(data_check.DataError) as caught:
        data_check.check_csv(csv_path, cfg)
    message = str(caught.value)
    line = len(ROWS) + 2  # the header, then the rows
    for w in [f"{csv_path}, line {line}, column 'image': image file {name!r}",
              f"{images}/{name}", *words]:
        assert w in message, message


# -- the demo dataset --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return datasets.write_digits(str(tmp_path_factory.mktemp("demo") / "digits"))


def test_digits_are_sklearns_images_as_pngs_with_their_labels(digits):
    from sklearn.datasets import load_digits

    want = load_digits()
    with open(digits.labels_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert digits.written and digits.images == len(rows) == 1797
    assert list(rows[0]) == ["image", "ink", "digit", "loops", "even"]
    for i, row in enumerate(rows):
        with Image.open(f"{digits.images_dir}/{row['image']}") as im:
            assert im.format == "PNG" and im.mode == "L"
            pixels = np.asarray(im)
        np.testing.assert_array_equal(pixels, np.rint(want.images[i] * 255 / 16))
        digit = int(row["digit"])
        assert digit == want.target[i]
        assert float(row["ink"]) == pytest.approx(want.images[i].mean() / 16, abs=5e-5)
        loops = 2 if digit == 8 else 1 if digit in (0, 4, 6, 9) else 0
        assert int(row["loops"]) == loops and int(row["even"]) == (digit % 2 == 0), row


def test_digits_are_written_once_and_never_over_other_files(digits, tmp_path):
    again = datasets.write_digits(digits.out_dir)
    assert not again.written and again.images == 1797
    with open(digits.labels_csv, "a") as fh:  # a damaged copy is written again
        fh.write("9999.png,0,0,0,1\n")
    assert datasets.write_digits(digits.out_dir).written
    assert not datasets.write_digits(digits.out_dir).written
    (tmp_path / "mine.txt").write_text("someone's file")
    with pytest.raises(ValueError, match="mine.txt"):
        datasets.write_digits(str(tmp_path))
    assert (tmp_path / "mine.txt").exists()


def test_the_digits_csv_passes_the_preflight_check(digits, tmp_path):
    cfg = config_lib.from_dict({
        "name": "digits", "data": {"csv": digits.labels_csv, "images": digits.images_dir},
        "features": {"image": {"type": "image", "size": [32, 32], "channels": 1},
                     "ink": "numeric"},
        "heads": [{"name": "digit", "label": "digit", "task": "multiclass",
                   "classes": list(range(10))},
                  {"name": "loops", "label": "loops", "task": "multiclass", "classes": [0, 1, 2]},
                  {"name": "even", "label": "even", "task": "binary"}],
        "model": {"backbone": BACKBONE}}, source=str(tmp_path / "digits.yaml"))
    assert data_check.check_csv(digits.labels_csv, cfg) == 1797
