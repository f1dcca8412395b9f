"""ExampleGen's block-wise split, shuffle and write (components.example_splits) against TFX's own
record-at-a-time path in the same executor: the same records in each split, with or without a
`split_on` feature, and an order that no longer follows the file's but is the same for the same
data."""

from __future__ import annotations

import glob
import os

import pytest
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import (
    BaseExampleGenExecutor,
    _PartitionFn,
)
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components import csv_example_gen, example_splits

ROWS = 3000
SPLITS = (("train", 7), ("validation", 2), ("test", 1))


def _split_config(split_on: str = "") -> example_gen_pb2.SplitConfig:
    config = example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in SPLITS])
    if split_on:
        config.partition_feature_name = split_on
    return config


def _csv(tmp_path) -> str:
    """A file sorted by its label: the first half y=0, the second y=1."""
    folder = tmp_path / "data"
    folder.mkdir()
    lines = ["id,group,x,y"] + [f"{i},g{i % 37},{i * 0.5},{int(i >= ROWS // 2)}"
                                for i in range(ROWS)]
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    return str(folder)


def _run(do, input_base: str, out: str, split_on: str = "") -> dict[str, list[bytes]]:
    """`do` (an executor's Do) on the CSV folder -> each split's records, in file order."""
    examples = standard_artifacts.Examples()
    examples.uri = out
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(csv_example_gen.Settings().to_struct())
    do({}, {"examples": [examples]}, {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*")])),
        "output_config": proto_utils.proto_to_json(
            example_gen_pb2.Output(split_config=_split_config(split_on))),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "custom_config": proto_utils.proto_to_json(config)})
    assert artifact_utils.decode_split_names(examples.split_names) == [n for n, _ in SPLITS]
    out_splits = {}
    for name, _ in SPLITS:
        files = sorted(glob.glob(os.path.join(out, f"Split-{name}", "data_tfrecord-*.gz")))
        assert files, name
        out_splits[name] = [r.numpy() for r in tf.data.TFRecordDataset(
            files, compression_type="GZIP")]
    return out_splits


@pytest.mark.parametrize("spill_bytes", [example_splits.SPILL_BYTES, 20_000])
def test_each_split_holds_the_records_tfxs_path_puts_there(tmp_path, monkeypatch, spill_bytes):
    """With the records spilled once at the end, or every 20 kB (a dozen files)."""
    monkeypatch.setattr(example_splits, "SPILL_BYTES", spill_bytes)
    data = _csv(tmp_path)
    executor = csv_example_gen.Executor()
    ours = _run(executor.Do, data, str(tmp_path / "ours"))
    assert sorted(os.listdir(tmp_path / "ours")) == [f"Split-{n}" for n in sorted(
        ("test", "train", "validation"))]  # the spilled records are gone
    # TFX's own executor path: one Partition call per record, then WriteSplit's Reshuffle
    tfxs = _run(lambda *a: BaseExampleGenExecutor.Do(executor, *a), data,
                str(tmp_path / "tfx"))
    assert sum(len(v) for v in ours.values()) == ROWS
    for name, _ in SPLITS:
        assert sorted(ours[name]) == sorted(tfxs[name]), name


def test_split_on_keeps_each_value_in_one_split_by_tfxs_rule(tmp_path):
    """`data.split_on` (TFX's partition_feature_name). TFX's record-at-a-time path cannot run
    it on serialised records (it refuses anything but a parsed tf.Example), so each record is
    checked against TFX's partition function on the parsed example."""
    ours = _run(csv_example_gen.Executor().Do, _csv(tmp_path), str(tmp_path / "ours"), "group")
    assert sum(len(v) for v in ours.values()) == ROWS
    buckets = example_splits.buckets_of(_split_config())
    groups = {}
    for index, (name, _) in enumerate(SPLITS):
        for r in ours[name]:
            ex = tf.train.Example.FromString(r)
            assert _PartitionFn(ex, 3, buckets, _split_config("group")) == index
            groups.setdefault(ex.features.feature["group"].bytes_list.value[0], set()).add(name)
    assert len(groups) == 37 and all(len(s) == 1 for s in groups.values())
    assert len({next(iter(s)) for s in groups.values()}) == 3


def test_the_file_order_does_not_survive(tmp_path):
    """Sorted by label in the CSV; shuffled in the written split: each tenth of the train split
    holds about half of each label (a file-ordered write gives 0 and 1)."""
    ours = _run(csv_example_gen.Executor().Do, _csv(tmp_path), str(tmp_path / "ours"))
    labels = [tf.train.Example.FromString(r).features.feature["y"].int64_list.value[0]
              for r in ours["train"]]
    tenth = len(labels) // 10
    shares = [sum(labels[i * tenth:(i + 1) * tenth]) / tenth for i in range(10)]
    assert all(0.3 < s < 0.7 for s in shares), shares


@pytest.mark.parametrize("spill_bytes", [example_splits.SPILL_BYTES, 20_000])
def test_the_same_file_gives_the_same_files_in_a_shuffled_order(tmp_path, monkeypatch,
                                                                 spill_bytes):
    """The same CSV twice: the same records in the same order in every split, whatever bundles
    and spills they went through."""
    monkeypatch.setattr(example_splits, "SPILL_BYTES", spill_bytes)
    csv_dir = _csv(tmp_path)
    first = _run(csv_example_gen.Executor().Do, csv_dir, str(tmp_path / "first"))
    again = _run(csv_example_gen.Executor().Do, csv_dir, str(tmp_path / "again"))
    assert first == again
    ids = [tf.train.Example.FromString(r).features.feature["id"].int64_list.value[0]
           for r in first["train"]]
    assert ids != sorted(ids) and ids != sorted(ids, reverse=True)


def test_copies_of_one_row_are_spread_like_other_rows(tmp_path):
    """Half the file is one row repeated, all at its end. The copies are one example, so TFX's
    hash split puts them all in one split; each tenth of that split holds some (keys from the
    record's bytes alone would write them in one run)."""
    folder = tmp_path / "data"
    folder.mkdir()
    lines = ["id,group,x,y"] + [f"{i},g{i % 37},{i * 0.5},0" for i in range(ROWS // 2)]
    lines += ["-1,copy,0.0,1"] * (ROWS // 2)
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    ours = _run(csv_example_gen.Executor().Do, str(folder), str(tmp_path / "ours"))
    copies = {name: [tf.train.Example.FromString(r).features.feature["y"].int64_list.value[0]
                     for r in records] for name, records in ours.items()}
    (split,) = [name for name, ys in copies.items() if sum(ys)]
    ys = copies[split]
    assert sum(ys) == ROWS // 2
    share = sum(ys) / len(ys)
    tenth = len(ys) // 10
    shares = [sum(ys[i * tenth:(i + 1) * tenth]) / tenth for i in range(10)]
    assert all(abs(s - share) < 0.15 for s in shares), (split, share, shares)


def test_parquet_rows_land_where_the_same_csv_rows_do(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components import parquet_example_gen

    folder = tmp_path / "parquet"
    folder.mkdir()
    pq.write_table(pa.table({"id": list(range(ROWS)), "group": [f"g{i % 37}" for i in range(ROWS)],
                             "x": [i * 0.5 for i in range(ROWS)],
                             "y": [int(i >= ROWS // 2) for i in range(ROWS)]}),
                   folder / "data.parquet", row_group_size=700)
    from_parquet = _run(parquet_example_gen.Executor().Do, str(folder), str(tmp_path / "pq"))
    from_csv = _run(csv_example_gen.Executor().Do, _csv(tmp_path), str(tmp_path / "csv"))
    for name, _ in SPLITS:
        assert from_parquet[name] and sorted(from_parquet[name]) == sorted(from_csv[name]), name


def test_a_failed_run_leaves_no_spilled_records(tmp_path, monkeypatch):
    def fail(self, keyed):
        raise RuntimeError("disk full")

    monkeypatch.setattr(example_splits.ShuffledRecords, "process", fail)
    with pytest.raises(Exception, match="disk full"):
        _run(csv_example_gen.Executor().Do, _csv(tmp_path), str(tmp_path / "ours"))
    assert not (tmp_path / "ours" / example_splits.SPILL_DIR).exists()


def test_the_threaded_writer_gives_a_gzip_handle_the_bytes_it_would_get_in_line(tmp_path,
                                                                               monkeypatch):
    """Many chunks through the writer's thread into Beam's gzip handle: the very file that
    handle writes when it is written to directly, which gunzips back to the records in order."""
    import gzip

    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    monkeypatch.setattr(example_splits.ThreadedWriter, "CHUNK", 3000)
    records = [f"record {i} ".encode() * (1 + i % 50) for i in range(5000)]
    ours, beams = str(tmp_path / "ours.gz"), str(tmp_path / "beams.gz")
    writer = example_splits.ThreadedWriter(
        FileSystems.create(ours, compression_type=CompressionTypes.GZIP))
    reference = FileSystems.create(beams, compression_type=CompressionTypes.GZIP)
    for r in records:
        writer.write(r)
        reference.write(r)
    writer.close()
    reference.close()
    data = open(ours, "rb").read()
    assert data == open(beams, "rb").read()
    assert gzip.decompress(data) == b"".join(records)


def test_a_failed_write_on_the_writers_thread_is_raised_and_the_file_closed():
    """Beam does not close a sink's file when a write raises: the writer closes it itself."""
    class Handle:
        closed = False

        def write(self, data):
            raise OSError("no space left on device")

        def close(self):
            self.closed = True

    handle = Handle()
    writer = example_splits.ThreadedWriter(handle)
    with pytest.raises(OSError, match="no space left"):
        for _ in range(4 * example_splits.ThreadedWriter.PENDING):
            writer.write(b"x" * example_splits.ThreadedWriter.CHUNK)
    assert handle.closed

    handle = Handle()
    writer = example_splits.ThreadedWriter(handle)
    writer.write(b"a few bytes")
    with pytest.raises(OSError, match="no space left"):
        writer.close()
    assert handle.closed
