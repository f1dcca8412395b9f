"""pipeline/dag_runner.py: independent components run side by side, each as soon as its
upstream nodes have finished, on real TFX launches against one ML Metadata store; a failure
stops everything downstream, lets the running sibling finish and names the failed node; a rerun
is answered from the cache, and the console says which component each line is about."""

# No `from __future__ import annotations`: TFX reads the components' annotations at runtime.
import io
import logging
import os
import threading
import time
from typing import TypedDict

import pytest
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto.orchestration import pipeline_pb2

from pipeline import dag_runner, local_runner

# Components of the real-TFX tests below: each waits at a barrier until its sibling has started.
# In LocalDagRunner's order the first would wait alone and time out.
_BARRIERS: dict[str, threading.Barrier] = {}


def _nodes(upstream: dict[str, list[str]], skip: tuple[str, ...] = ()):
    nodes = {}
    for node_id, ups in upstream.items():
        node = pipeline_pb2.PipelineNode()
        node.node_info.id = node_id
        node.upstream_nodes.extend(ups)
        if node_id in skip:
            node.execution_options.skip.SetInParent()
        nodes[node_id] = node
    return nodes


class _Recorder:
    """A fake launch: records start and end, sleeps, fails where told."""

    def __init__(self, seconds: dict[str, float] | None = None, fail: tuple[str, ...] = ()):
        self.seconds, self.fail = seconds or {}, fail
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.running, self.most = 0, 0

    def __call__(self, node_id: str) -> None:
        with self.lock:
            self.events.append(("start", node_id))
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.seconds.get(node_id, 0.05))
        with self.lock:
            self.running -= 1
            self.events.append(("end", node_id))
        if node_id in self.fail:
            raise ValueError(f"{node_id} broke")

    def index(self, kind: str, node_id: str) -> int:
        return self.events.index((kind, node_id))


DAG = {"gen": [], "stats": ["gen"], "trainer": ["stats"], "evaluator": ["trainer"],
       "infra": ["trainer"], "pusher": ["evaluator", "infra"]}


def test_independent_nodes_overlap_and_every_node_waits_for_its_upstream():
    launch = _Recorder({"evaluator": 0.3, "infra": 0.3})
    dag_runner.ParallelLocalDagRunner()._run_dag(_nodes(DAG), launch)
    assert {n for kind, n in launch.events if kind == "end"} == set(DAG)
    for node_id, ups in DAG.items():
        for up in ups:
            assert launch.index("end", up) < launch.index("start", node_id), launch.events
    # both started before either ended
    assert max(launch.index("start", "evaluator"), launch.index("start", "infra")) < min(
        launch.index("end", "evaluator"), launch.index("end", "infra")), launch.events
    assert launch.most == 2


def test_at_most_max_parallel_nodes_run_at_once():
    fan = {"root": [], **{f"leaf{i}": ["root"] for i in range(5)}}
    launch = _Recorder({f"leaf{i}": 0.1 for i in range(5)})
    dag_runner.ParallelLocalDagRunner(max_parallel=3)._run_dag(_nodes(fan), launch)
    assert launch.most == 3
    launch = _Recorder({f"leaf{i}": 0.1 for i in range(5)})
    dag_runner.ParallelLocalDagRunner(max_parallel=1)._run_dag(_nodes(fan), launch)
    assert launch.most == 1
    with pytest.raises(ValueError, match="max_parallel must be at least 1"):
        dag_runner.ParallelLocalDagRunner(max_parallel=0)


def test_a_failure_launches_nothing_downstream_lets_the_sibling_finish_and_names_the_node():
    launch = _Recorder({"evaluator": 0.05, "infra": 0.4}, fail=("evaluator",))
    with pytest.raises(dag_runner.NodeFailed) as exc:
        dag_runner.ParallelLocalDagRunner()._run_dag(_nodes(DAG), launch)
    assert exc.value.node_id == "evaluator"
    assert isinstance(exc.value.cause, ValueError) and "evaluator broke" in str(exc.value)
    assert ("end", "infra") in launch.events  # finished, not abandoned half-way
    assert ("start", "pusher") not in launch.events


def test_skipped_nodes_count_as_done_and_a_cycle_is_refused():
    launch = _Recorder()
    dag_runner.ParallelLocalDagRunner()._run_dag(_nodes(DAG, skip=("gen", "stats")), launch)
    assert [n for kind, n in launch.events if kind == "start"][0] == "trainer"
    assert ("start", "gen") not in launch.events
    with pytest.raises(RuntimeError, match=r"never ready: \['a', 'b'\]"):
        dag_runner.ParallelLocalDagRunner()._run_dag(_nodes({"a": ["b"], "b": ["a"]}),
                                                     _Recorder())


def test_ctrl_c_stops_the_running_node_at_once_as_in_local_dag_runner():
    """SIGINT reaches the calling thread, which runs a node itself: that node stops where it
    is (a node left running on a worker thread would go on and publish its outputs)."""
    import signal

    events = []

    def launch(node_id):
        events.append(("start", node_id))
        for _ in range(30):  # 1.5 s, interruptible
            time.sleep(0.05)
        events.append(("end", node_id))

    timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        dag_runner.ParallelLocalDagRunner()._run_dag(_nodes({"transform": []}), launch)
    time.sleep(2.0)
    assert events == [("start", "transform")]


def test_a_ctrl_c_swallowed_where_it_landed_still_stops_the_run():
    """Python raises Ctrl-C's KeyboardInterrupt wherever the main thread is, and a finalizer
    swallows it ("Exception ignored in ...": TensorFlow's garbage collector of concrete
    functions did, in a CI run). The node it hit finishes, its sibling fails of the same SIGINT
    (the infra check's model server), nothing downstream starts, and the run ends as
    interrupted, not as a failure of the sibling."""
    import signal

    events = []

    def launch(node_id):
        events.append(node_id)
        if node_id == "evaluator":
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:  # what a finalizer does with it
                pass
        if node_id == "infra_check":
            time.sleep(0.2)
            raise RuntimeError("the model server was stopped by SIGINT")

    dag = {"trainer": [], "evaluator": ["trainer"], "infra_check": ["trainer"],
           "pusher": ["evaluator", "infra_check"], "scorer": ["evaluator"]}
    with pytest.raises(KeyboardInterrupt):
        dag_runner.ParallelLocalDagRunner()._run_dag(_nodes(dag), launch)
    assert sorted(events) == ["evaluator", "infra_check", "trainer"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_on_another_beam_runner_every_component_runs_in_the_main_thread():
    """A Flink or Spark job server that Beam starts sets a SIGINT handler, which Python allows
    only in the main thread: off the direct runner, components run one at a time, there."""
    import signal

    def launch(node_id):  # what Beam's job server does when a Beam component starts it
        signal.signal(signal.SIGINT, signal.getsignal(signal.SIGINT))

    nodes = _nodes({"example_gen": [], "schema": []})
    flink = local_runner.local_beam_args(["--runner=FlinkRunner", "--flink_master=[local]"])
    local_runner.dag_runner_for(flink)._run_dag(nodes, launch)
    direct = local_runner.local_beam_args(["--direct_running_mode=in_memory"])
    assert local_runner.dag_runner_for(direct).max_parallel == 2
    with pytest.raises(dag_runner.NodeFailed, match="main thread"):
        local_runner.dag_runner_for(direct)._run_dag(nodes, launch)


def _console(run, components=("Left", "Right", "Join")) -> list[str]:
    """Run with the console progress of `headwise run` attached; its lines."""
    stream = io.StringIO()
    progress = local_runner.Progress(list(components), stream)
    absl_logger = logging.getLogger("absl")
    old = absl_logger.level
    absl_logger.setLevel(logging.INFO)
    absl_logger.addHandler(progress)
    try:
        run()
    finally:
        absl_logger.removeHandler(progress)
        absl_logger.setLevel(old)
    return stream.getvalue().splitlines()


def test_the_console_says_which_of_two_running_components_a_cached_line_is_about():
    """Both siblings start, then each logs TFX's cache line: the line goes to its own."""
    from absl import logging as absl_logging

    both = threading.Barrier(2, timeout=20)

    def launch(node_id):  # what TFX's launcher logs for a cached execution
        absl_logging.info("Component %s is running.", node_id)
        both.wait()
        if node_id == "Right":
            time.sleep(0.2)  # Right's line comes last; Left's is said while Right runs
        absl_logging.info("A cached execution %d is used.", 7)
        absl_logging.info("Component %s is finished.", node_id)

    nodes = _nodes({"Left": [], "Right": []})
    lines = _console(lambda: dag_runner.ParallelLocalDagRunner()._run_dag(nodes, launch),
                     ("Left", "Right"))
    finished = sorted(line.split("]")[1].split()[0:2] for line in lines if " in " in line)
    assert finished == [["Left", "cached"], ["Right", "cached"]], lines


# --- Real TFX launches ---------------------------------------------------------------------------

class Started(TypedDict):
    started: float


@component
def Meet(key: Parameter[str], wait_s: Parameter[int] = 20) -> Started:
    """Waits (at most wait_s) until its sibling has started too."""
    _BARRIERS[key].wait(timeout=wait_s)
    return {"started": time.time()}


@component
def Join(a: float, b: float, broken: Parameter[int] = 0) -> None:
    if broken:
        raise RuntimeError("Join is broken on purpose")


def _pipeline(work: str, fail: bool = False):
    from tfx import v1 as tfx

    left, right = Meet(key=work).with_id("Left"), Meet(key=work).with_id("Right")
    join = Join(a=left.outputs["started"], b=right.outputs["started"], broken=int(fail))
    return tfx.dsl.Pipeline(
        pipeline_name="parallel", pipeline_root=os.path.join(work, "root"), enable_cache=True,
        components=[left, right, join],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(work, "metadata.db")))


def test_two_real_components_run_at_once_against_one_metadata_store_and_rerun_cached(tmp_path):
    from pipeline import summary as summary_lib

    work = str(tmp_path)
    _BARRIERS[work] = threading.Barrier(2, timeout=20)
    lines = _console(lambda: dag_runner.ParallelLocalDagRunner().run(_pipeline(work)))
    runs = summary_lib.component_runs(os.path.join(work, "metadata.db"), "parallel")
    assert {n: r.state for n, r in runs.items()} == {
        "Left": "COMPLETE", "Right": "COMPLETE", "Join": "COMPLETE"}, runs
    assert any(line.startswith("[3/3] Join") and "done in" in line for line in lines), lines

    lines = _console(lambda: dag_runner.ParallelLocalDagRunner().run(_pipeline(work)))
    for name in ("Left", "Right", "Join"):  # each cached line is said of its own component
        assert any(f"] {name} " in line and "cached in" in line for line in lines), lines


def test_a_real_failure_is_raised_naming_its_component(tmp_path):
    work = str(tmp_path)
    _BARRIERS[work] = threading.Barrier(2, timeout=20)
    with pytest.raises(dag_runner.NodeFailed) as exc:
        dag_runner.ParallelLocalDagRunner().run(_pipeline(work, fail=True))
    assert exc.value.node_id == "Join" and "broken on purpose" in str(exc.value.cause)


def test_one_at_a_time_runs_through_this_runner_too(tmp_path):
    """max_parallel=1 (a Flink or Spark runner) runs the nodes here, not in LocalDagRunner's
    loop, so it keeps this runner's Ctrl-C noting and names a failed node (LocalDagRunner
    raises the bare error)."""
    work = str(tmp_path)
    _BARRIERS[work] = threading.Barrier(1)  # one at a time: no sibling to wait for
    with pytest.raises(dag_runner.NodeFailed) as exc:
        dag_runner.ParallelLocalDagRunner(max_parallel=1).run(_pipeline(work, fail=True))
    assert exc.value.node_id == "Join" and "broken on purpose" in str(exc.value.cause)
