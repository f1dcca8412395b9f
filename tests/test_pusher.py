"""The atomic Pusher: versions appear whole or not at all, never twice, oldest pruned."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import pytest

from components import pusher
from headwise import versions


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
    # no temporary directory left behind; TF Serving's model config names the version
    assert sorted(os.listdir(base)) == ["1000", "models.config"]
    assert versions.configured_versions(base) == [1000]
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
    assert sorted(os.listdir(base)) == ["8", "models.config"]


def test_a_remote_push_carries_the_drift_baseline_and_the_warm_up_file(tmp_path, model):
    """The Executor on a remote path (gs:// on Kubeflow; ram:// stands in: both are tf.io.gfile
    filesystems without the local rename): the pushed version holds the training statistics
    the next run's drift check reads, the warm-up requests the infra check's server replayed
    (where TF Serving reads them), and the model."""
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
    infra = standard_artifacts.InfraBlessing()
    infra.uri = str(tmp_path / "infra")
    infra.set_int_custom_property("blessed", 1)
    os.makedirs(infra.uri)
    warm = b"records the infra check's server replayed"
    (tmp_path / "infra" / "tf_serving_warmup_requests").write_bytes(warm)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = "ram://serving/taxi"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    pusher.Executor().Do(
        {"model": [trained], "model_blessing": [blessing], "infra_blessing": [infra],
         pusher.STATISTICS_KEY: [statistics]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination),
         "custom_config": json.dumps({})})
    assert pushed.get_int_custom_property("pushed") == 1
    version, baseline = data_gate.served_baseline(base)
    assert str(version) == pushed.get_string_custom_property("pushed_version")
    assert baseline == stats
    assert tf.io.gfile.exists(f"{base}/{version}/saved_model.pb")
    with tf.io.gfile.GFile(f"{base}/{version}/assets.extra/tf_serving_warmup_requests",
                           "rb") as fh:
        assert fh.read() == warm


class Killed(BaseException):
    """The pushing process died (a SIGKILL: no except or finally block of the push runs)."""


class ObjectStore(pusher.Storage):
    """A filesystem that behaves like GCS or S3: flat keys; each object is written whole;
    "directories" are key prefixes, so a listing shows every object written so far (a partial
    copy is visible); there is no rename. `kill_after(n)`: the push dies at the n-th write from
    now: that write and every later operation raise Killed. `on_write` observes each write."""

    def __init__(self):  # no TensorFlow: everything is in `objects`
        self.objects: dict[str, bytes] = {}
        self.writes_left: int | None = None
        self.dead = False
        self.on_write = lambda key: None
        self.removed: list[str] = []

    def kill_after(self, n: int) -> None:
        self.writes_left = n

    def revive(self) -> None:  # the next pipeline run: a new process
        self.dead, self.writes_left = False, None

    def _alive(self) -> None:
        if self.dead:
            raise Killed()

    def _put(self, key: str, data: bytes) -> None:
        self._alive()
        if self.writes_left is not None:
            if self.writes_left == 0:
                self.dead = True
                raise Killed()
            self.writes_left -= 1
        self.objects[key] = data
        self.on_write(key)

    def _under(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return [k for k in self.objects if k.startswith(prefix)]

    def listdir(self, path):
        self._alive()
        prefix = path.rstrip("/") + "/"
        return sorted({k[len(prefix):].split("/")[0] for k in self._under(path)})

    def isdir(self, path):
        return bool(self._under(path))

    def exists(self, path):
        return path in self.objects or self.isdir(path)

    def makedirs(self, path):
        self._alive()  # no directories in an object store

    def files(self, root):
        self._alive()
        if not self.isdir(root):
            raise FileNotFoundError(root)
        return sorted(k[len(root.rstrip("/")) + 1:] for k in self._under(root))

    def copy(self, src, dst):
        self._put(dst, self.read(src))

    def write(self, path, content):
        self._put(path, content)

    def read(self, path):
        self._alive()
        if path not in self.objects:
            raise FileNotFoundError(path)
        return self.objects[path]

    def remove(self, path):
        self._alive()
        for k in [path] * (path in self.objects) + self._under(path):
            del self.objects[k]
            self.removed.append(k)

    def rename_dir(self, src, dst):
        return False


MODEL_FILES = {"saved_model.pb": b"graph", "variables/variables.index": b"index",
               "variables/variables.data-00000-of-00001": b"weights",
               "assets/vocab.txt": b"a\nb", "fingerprint.pb": b"fp"}
BASELINE = {"assets.extra/baseline_stats.pb": b"stats"}
BASE = "mem://bucket/serving/taxi"


def _store_with_models(*names: str) -> ObjectStore:
    store = ObjectStore()
    for name in names:
        for rel, data in MODEL_FILES.items():
            store.objects[f"mem://bucket/pipeline/{name}/{rel}"] = data
    return store


def _complete(store: ObjectStore, version: int) -> bool:
    want = set(MODEL_FILES) | set(BASELINE) | {pusher.PUSH_RECORD}
    return set(store.files(f"{BASE}/{version}")) == want


def tf_serving_loads(store: ObjectStore, config: bool = True) -> list[int]:
    """The versions TF Serving would load from BASE, by its own rules (file_system_storage_
    path_source.cc): every child whose name parses as a number is a version, whatever it holds;
    started with --model_config_file=<BASE>/models.config, the versions that file's `specific`
    policy names; else (`config=False`, the default `latest` policy) the highest."""
    children = [int(n) for n in store.listdir(BASE) if n.isdigit()]
    if config:
        path = f"{BASE}/{versions.MODEL_CONFIG}"
        if path not in store.objects:
            return []
        named = set(re.findall(r"versions: (\d+)", store.objects[path].decode()))
        return sorted(v for v in children if str(v) in named)
    return [max(children)] if children else []


def test_tf_serving_on_the_model_config_never_loads_a_partial_version():
    """Watched after every single write of two pushes: the versions that TF Serving, run on
    the Pusher's model config, would load are complete (model, push record, drift baseline).
    Under its default `latest` policy it would have loaded the second version half-copied: the
    listing shows a version while it is copied."""
    store = _store_with_models("m1", "m2")
    partial_under_latest = []

    def check(key):
        for v in tf_serving_loads(store):
            assert _complete(store, v), (key, sorted(store.files(f"{BASE}/{v}")))
        partial_under_latest.extend(v for v in tf_serving_loads(store, config=False)
                                    if not _complete(store, v))
    store.on_write = check
    for name, now in (("m1", 1000), ("m2", 2000)):
        pusher.push_model(f"mem://bucket/pipeline/{name}", BASE, source=name, now=now,
                          extra_files=BASELINE, storage=store)
        assert tf_serving_loads(store) == [now]
    assert 2000 in partial_under_latest  # why the config is needed on an object store
    assert versions.served_versions(BASE, store) == [2000]  # the built-in server's reading


@pytest.mark.parametrize("kill_at", range(1, 2 * (len(MODEL_FILES) + 2)))  # every write
def test_a_push_killed_midway_is_never_served_and_the_next_push_cleans_up(kill_at,
                                                                          monkeypatch):
    """The process dies at write `kill_at` of the second push's 14 (7 staged files, then 7
    published, saved_model.pb last): the served version is untouched and the partial one is
    never loadable; a later push removes what was left (its staging once it is stale: a live
    push's is never touched) and publishes a complete version."""
    store = _store_with_models("m1", "m2")
    pusher.push_model("mem://bucket/pipeline/m1", BASE, source="m1", now=1000,
                      extra_files=BASELINE, storage=store)
    store.kill_after(kill_at)
    with pytest.raises(Killed):
        pusher.push_model("mem://bucket/pipeline/m2", BASE, source="m2", now=2000,
                          extra_files=BASELINE, storage=store)
    store.revive()
    assert pusher.serving_versions(BASE, store) == [1000] and _complete(store, 1000)
    assert tf_serving_loads(store) == [1000]
    assert len(store.listdir(BASE)) > 1  # something partial was left behind
    import time

    later = time.time() + pusher.STALE_STAGING_S + 1  # the next run, an hour on
    monkeypatch.setattr(pusher, "_clock", lambda: later)
    r = pusher.push_model("mem://bucket/pipeline/m2", BASE, source="m2", now=2000,
                          extra_files=BASELINE, storage=store)
    assert r.version == 2000 and not r.reused
    assert store.listdir(BASE) == ["1000", "2000", "models.config"]  # no staging, no partial
    assert tf_serving_loads(store) == [2000]
    assert _complete(store, 2000)


def test_object_store_pushes_dedupe_number_and_prune_like_local_ones():
    store = _store_with_models("m1", "m2", "m3")
    a = pusher.push_model("mem://bucket/pipeline/m1", BASE, "m1", now=100, storage=store)
    again = pusher.push_model("mem://bucket/pipeline/m1", BASE, "m1", now=200, storage=store)
    assert again.reused and again.version == a.version == 100
    b = pusher.push_model("mem://bucket/pipeline/m2", BASE, "m2", now=100, storage=store)
    store.removed.clear()
    c = pusher.push_model("mem://bucket/pipeline/m3", BASE, "m3", keep_versions=2, now=50,
                          storage=store)
    assert (b.version, c.version, c.removed) == (101, 102, (100,))
    assert store.listdir(BASE) == ["101", "102", "models.config"]
    old = [k for k in store.removed if k.startswith(f"{BASE}/100/")]
    assert old[0] == f"{BASE}/100/saved_model.pb"  # unloadable first, then the rest


# --- Concurrent pushes ----------------------------------------------------------------------
ROUNDS = 25
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _named_model(root, name: str) -> str:
    """A model whose every file says which model it is."""
    d = root / f"model_{name}" / "Format-Serving"
    (d / "variables").mkdir(parents=True)
    (d / "assets").mkdir()
    (d / "saved_model.pb").write_bytes(f"{name} graph".encode() * 1000)
    (d / "variables" / "variables.data-00000-of-00001").write_bytes(f"{name} w".encode() * 50_000)
    (d / "variables" / "variables.index").write_bytes(f"{name} index".encode())
    (d / "assets" / "vocabulary").write_bytes(f"{name} vocabulary".encode())
    (d / "fingerprint.pb").write_bytes(f"{name} fingerprint".encode())
    return str(d)


def _check_pure(base: str, expected_versions: int) -> None:
    """Every version is one whole model: every file from the model its push record names."""
    import json

    versions = pusher.serving_versions(base)
    assert len(versions) == expected_versions, versions
    from headwise import versions as versions_lib

    # whichever push wrote last, TF Serving's model config names the newest version
    assert versions_lib.configured_versions(base) == [versions[-1]]
    assert not [n for n in os.listdir(base) if not n.isdigit() and n != "models.config"]
    for v in versions:
        vdir = os.path.join(base, str(v))
        with open(os.path.join(vdir, pusher.PUSH_RECORD)) as fh:
            name = json.load(fh)["source"].split("/")[0]
        files = pusher.Storage().files(vdir)
        assert len(files) == 6, (v, files)
        for rel in files:
            if rel != pusher.PUSH_RECORD:
                with open(os.path.join(vdir, rel), "rb") as fh:
                    assert fh.read().startswith(name.encode() + b" "), (v, rel, name)


def test_two_threads_pushing_at_once_never_mix_a_version(tmp_path):
    base = str(tmp_path / "serving")
    models = {n: _named_model(tmp_path, n) for n in ("A", "B")}
    barrier = threading.Barrier(2)
    results, errors = [], []

    def push(name):
        try:
            for i in range(ROUNDS):
                barrier.wait()
                results.append(pusher.push_model(models[name], base, source=f"{name}/{i}",
                                                 keep_versions=0, now=1000))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=push, args=(n,)) for n in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len({r.version for r in results}) == 2 * ROUNDS  # never the same number twice
    _check_pure(base, 2 * ROUNDS)


PUSHER_PROCESS = """
import os, sys, time
from components import pusher
model, base, name, other, sync, rounds = sys.argv[1:7]
for i in range(int(rounds)):  # each round starts when both processes are ready for it
    open(os.path.join(sync, f"{name}-{i}"), "w").close()
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(sync, f"{other}-{i}")):
        assert time.time() < deadline, "the other process never got ready"
        time.sleep(0.0005)
    r = pusher.push_model(model, base, source=f"{name}/{i}", keep_versions=0, now=1000)
    print(r.version, flush=True)
"""


def test_two_processes_pushing_at_once_never_mix_a_version(tmp_path):
    """Two processes, each pushing its own model ROUNDS times into one base directory, every
    round started by both at once (the stale listing: both compute the same next number)."""
    base = str(tmp_path / "serving")
    models = {n: _named_model(tmp_path, n) for n in ("A", "B")}
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", PUSHER_PROCESS, models[n], base, n,
                               other, str(sync), str(ROUNDS)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for n, other in (("A", "B"), ("B", "A"))]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    versions = [int(v) for out, _ in outs for v in out.split()]
    assert len(versions) == len(set(versions)) == 2 * ROUNDS
    _check_pure(base, 2 * ROUNDS)


def test_a_live_push_staging_is_left_alone_and_a_stale_one_removed(tmp_path, model):
    import time

    base = tmp_path / "serving"
    base.mkdir()
    live = base / f"{pusher.TMP_PREFIX}{int(time.time()) - 10}-abc"
    stale = base / f"{pusher.TMP_PREFIX}{int(time.time()) - pusher.STALE_STAGING_S - 60}-def"
    live.mkdir()
    stale.mkdir()
    pusher.push_model(model, str(base), source="x", now=9)
    assert sorted(os.listdir(base)) == sorted(["9", "models.config", live.name])



def test_a_server_serves_what_the_model_config_names_not_every_numeric_directory(tmp_path,
                                                                                   model):
    """`headwise.versions.served_versions`, what the built-in server loads: the versions the
    Pusher's model config names; without a config, every complete numeric version."""
    import shutil

    base = str(tmp_path / "serving" / "taxi")
    pusher.push_model(model, base, source="a", now=1000)
    shutil.copytree(os.path.join(base, "1000"), os.path.join(base, "2000"))  # not pushed
    assert versions.numeric_versions(base) == [1000, 2000]
    assert versions.served_versions(base) == [1000]
    assert versions.served_versions(base, versions.LocalFs) == [1000]  # no TensorFlow
    from serving import scoring

    assert scoring.resolve_model(base) == os.path.join(base, "1000")  # `headwise score`
    os.remove(os.path.join(base, versions.MODEL_CONFIG))
    assert versions.served_versions(base) == [1000, 2000]


def test_a_push_that_loses_the_race_leaves_the_newest_version_named(tmp_path, model):
    """Push A has listed the versions and is about to name its own in the model config when
    push B publishes a newer one and names it: A's config must not name its older version
    last (TF Serving would go back to it)."""
    import shutil

    base = str(tmp_path / "serving" / "taxi")
    other = str(tmp_path / "other")
    shutil.copytree(model, other)

    class Racing(pusher.Storage):
        raced = False

        def write(self, path, content):
            if path.endswith(versions.MODEL_CONFIG) and not self.raced:
                self.raced = True  # B gets in between A's listing and A's write
                pusher.push_model(other, base, source="b", now=3000)
            super().write(path, content)

    a = pusher.push_model(model, base, source="a", now=2000, storage=Racing())
    assert a.version == 2000
    assert versions.configured_versions(base) == [3000]
    assert versions.served_versions(base) == [3000]
