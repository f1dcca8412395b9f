"""The atomic Pusher: versions appear whole or not at all, never twice, oldest pruned."""

from __future__ import annotations

import os

import pytest

from components import pusher


@pytest.fixture
def model(tmp_path):
    d = tmp_path / "trainer_out" / "Format-Serving"
    (d / "variables").mkdir(parents=True)
    (d / "saved_model.pb").write_bytes(b"graph")
    (d / "variables" / "variables.index").write_bytes(b"index")
    return str(d)


def test_push_is_a_complete_numeric_version(tmp_path, model):
    base = str(tmp_path / "serving" / "taxi")
    r = pusher.push_model(model, base, source="model/1", now=1000)
    assert (r.version, r.reused) == (1000, False)
    assert sorted(os.listdir(base)) == ["1000"]  # no temporary directory left behind
    assert open(os.path.join(r.path, "saved_model.pb"), "rb").read() == b"graph"
    assert os.path.exists(os.path.join(r.path, "variables", "variables.index"))


def test_versions_strictly_increase_within_one_second(tmp_path, model):
    base = str(tmp_path / "serving")
    a = pusher.push_model(model, base, source="model/1", now=1000)
    b = pusher.push_model(model, base, source="model/2", now=1000)
    c = pusher.push_model(model, base, source="model/3", now=999)
    assert [a.version, b.version, c.version] == [1000, 1001, 1002]
    assert pusher.serving_versions(base) == [1000, 1001, 1002]


def test_the_served_model_is_not_pushed_again(tmp_path, model):
    base = str(tmp_path / "serving")
    first = pusher.push_model(model, base, source="model/1", now=1000)
    again = pusher.push_model(model, base, source="model/1", now=2000)
    assert again.reused and again.path == first.path
    assert pusher.serving_versions(base) == [1000]
    # A different model after it is pushed normally.
    assert not pusher.push_model(model, base, source="model/2", now=2000).reused


def test_keeps_only_the_newest_versions(tmp_path, model):
    base = str(tmp_path / "serving")
    results = [pusher.push_model(model, base, source=f"m/{i}", keep_versions=2, now=100 + i)
               for i in range(4)]
    assert pusher.serving_versions(base) == [102, 103]
    assert results[-1].removed == (101,)


def test_failed_copy_leaves_nothing_and_stale_temp_dirs_are_cleaned(tmp_path, model):
    base = tmp_path / "serving"
    base.mkdir()
    (base / ".tmp-5-123").mkdir()  # a push that was killed half-way
    with pytest.raises(FileNotFoundError):
        pusher.push_model(str(tmp_path / "no_such_model"), str(base), source="x", now=7)
    assert os.listdir(base) == []
    pusher.push_model(model, str(base), source="y", now=8)
    assert os.listdir(base) == ["8"]


def test_a_remote_push_carries_the_drift_baseline_too(tmp_path, model):
    """gs:// on Kubeflow goes through the stock Pusher's copy; the pushed version must still
    hold the training statistics the next run's drift check reads (ram:// stands in for gs://:
    both are tf.io.gfile filesystems that the local fast path does not handle)."""
    import json

    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import statistics_pb2
    from tfx.proto import pusher_pb2
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import proto_utils

    from components import data_gate

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.datasets.add(num_examples=42)
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "stats")
    statistics.split_names = artifact_utils.encode_split_names(["train"])
    os.makedirs(tmp_path / "stats" / "Split-train")
    (tmp_path / "stats" / "Split-train" / "FeatureStats.pb").write_bytes(
        stats.SerializeToString())
    trained = standard_artifacts.Model()
    trained.uri = os.path.dirname(model)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = "ram://serving/taxi"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    pusher.Executor().Do(
        {"model": [trained], "model_blessing": [blessing], pusher.STATISTICS_KEY: [statistics]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination),
         "custom_config": json.dumps({})})
    assert pushed.get_int_custom_property("pushed") == 1
    version, baseline = data_gate.served_baseline(base)
    assert str(version) == pushed.get_string_custom_property("pushed_version")
    assert baseline == stats
    assert tf.io.gfile.exists(f"{base}/{version}/saved_model.pb")
