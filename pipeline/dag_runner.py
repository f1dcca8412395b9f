"""LocalDagRunner that runs independent components at the same time.

TFX's LocalDagRunner launches the pipeline's nodes one after another in topological order (its
own TODO, b/171319478: "use multi-threaded execution so that independent components can be run
in parallel"). A headwise pipeline has independent components that each wait on something
outside the Python interpreter: after the Trainer, the Evaluator (TFMA in this process) and
InfraCheck (a model server in a child process) need only the model and the examples, and Kubeflow
already runs them side by side. `ParallelLocalDagRunner` launches every node with TFX's own
`Launcher`, exactly as LocalDagRunner does, but as soon as the nodes it depends on (its IR's
`upstream_nodes`) have finished, up to `max_parallel` at once: one in the calling thread, the
others on worker threads.

What stays as in LocalDagRunner: the run id, the deployment config, the log lines it writes
("Component X is running." / "is finished."), skipped nodes, and a failure raised to the caller.
A failed node launches nothing downstream of it; the nodes already running finish (a thread
cannot be stopped half-way, and stopping one would leave its outputs half-written), then the
first failure is raised. One of the running nodes always runs in the calling thread, so Ctrl-C
stops it as it stops LocalDagRunner's; a node on a worker thread finishes first (InfraCheck's
model server, in the same process group, gets the Ctrl-C too, and a check stopped that way
fails rather than giving a verdict: components/infra_check.py). ML Metadata's SQLite store
retries a locked database (its busy handler), which is what makes concurrent launches against
one metadata.db safe; each launch opens its own connection, as LocalDagRunner's do.

Partial runs (`run_options`) are LocalDagRunner's: given them, this runner hands the pipeline
to it. With `max_parallel=1` (another Beam runner than the direct one) it runs every node in the
calling thread, one at a time, as LocalDagRunner does, and a Ctrl-C is noted the same way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import signal
import threading

from absl import logging
from tfx.dsl.compiler import constants
from tfx.orchestration import metadata
from tfx.orchestration.local import runner_utils
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.portable import launcher, runtime_parameter_utils
from tfx.proto.orchestration import pipeline_pb2

DEFAULT_MAX_PARALLEL = 2

_node = threading.local()  # the node id the current thread launches (None on others)


def current_node() -> str | None:
    """The id of the node this thread is launching, for log handlers that attribute lines."""
    return getattr(_node, "id", None)


class NodeFailed(RuntimeError):
    """A node's launch raised `cause`; says which node (two may be running when one fails)."""

    def __init__(self, node_id: str, cause: BaseException):
        self.node_id, self.cause = node_id, cause
        super().__init__(f"{node_id}: {cause}")


@contextlib.contextmanager
def _noting_ctrl_c():
    """An Event set by any SIGINT while the block runs, which still raises KeyboardInterrupt
    as before. Python raises it wherever the main thread happens to be, and some places swallow
    it: a finalizer (`__del__`, "Exception ignored in ...": TensorFlow's garbage collector of
    concrete functions is one) or a library's `except BaseException`. The event keeps the Ctrl-C
    when the exception is lost. Off the main thread (where Python allows no handler) the event
    is never set."""
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):  # ignored (or not set from Python): left alone
        yield noted
        return

    def handler(signum, frame):
        noted.set()
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


class ParallelLocalDagRunner(LocalDagRunner):
    """LocalDagRunner that launches a node as soon as its upstream nodes have finished (module
    doc). A failure is raised as NodeFailed, naming the node."""

    def __init__(self, max_parallel: int = DEFAULT_MAX_PARALLEL):
        super().__init__()
        if max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
        self.max_parallel = max_parallel

    def run_with_ir(self, pipeline: pipeline_pb2.Pipeline,
                    run_options: pipeline_pb2.RunOptions | None = None) -> None:
        if run_options is not None:
            return super().run_with_ir(pipeline, run_options)
        runtime_parameter_utils.substitute_runtime_parameter(pipeline, {
            constants.PIPELINE_RUN_ID_PARAMETER_NAME: datetime.datetime.now().isoformat()})
        deployment_config = runner_utils.extract_local_deployment_config(pipeline)
        connection_config = getattr(
            deployment_config.metadata_connection_config,
            deployment_config.metadata_connection_config.WhichOneof("connection_config"))
        nodes = {n.pipeline_node.node_info.id: n.pipeline_node for n in pipeline.nodes}

        def launch(node_id: str) -> None:  # LocalDagRunner's loop body
            component_launcher = launcher.Launcher(
                pipeline_node=nodes[node_id],
                mlmd_connection=metadata.Metadata(connection_config),
                pipeline_info=pipeline.pipeline_info,
                pipeline_runtime_spec=pipeline.runtime_spec,
                executor_spec=runner_utils.extract_executor_spec(deployment_config, node_id),
                custom_driver_spec=runner_utils.extract_custom_driver_spec(
                    deployment_config, node_id))
            logging.info("Component %s is running.", node_id)
            component_launcher.launch()
            logging.info("Component %s is finished.", node_id)

        self._run_dag(nodes, launch)

    @staticmethod
    def _launch_as(launch, node_id: str) -> None:
        _node.id = node_id
        try:
            launch(node_id)
        finally:
            _node.id = None

    def _run_dag(self, nodes: dict[str, pipeline_pb2.PipelineNode], launch) -> None:
        """Launch every node once its upstream nodes are done: the first ready node in this
        thread, the other ready ones (up to max_parallel - 1) on worker threads. Running one
        node here keeps Ctrl-C where LocalDagRunner has it: the KeyboardInterrupt stops the
        node of this thread at once, and a worker's node finishes before the process ends.
        While this thread runs a node, a node that a finished worker made ready waits for it.
        A Ctrl-C whose KeyboardInterrupt was swallowed where it landed still stops the run: no
        node starts after it, and KeyboardInterrupt is raised once the running ones end."""
        with _noting_ctrl_c() as ctrl_c:
            self._run_nodes(nodes, launch, ctrl_c)

    def _run_nodes(self, nodes: dict[str, pipeline_pb2.PipelineNode], launch,
                   ctrl_c: threading.Event) -> None:
        upstream = {n: set(node.upstream_nodes) & set(nodes) for n, node in nodes.items()}
        order = list(nodes)  # the IR's topological order: ties start in it
        done: set[str] = set()
        started: set[str] = set()
        running: dict[concurrent.futures.Future, str] = {}
        failure: NodeFailed | None = None

        def settle(futures) -> None:
            nonlocal failure
            for future in futures:
                node_id = running.pop(future)
                if future.exception() is None:
                    done.add(node_id)
                elif failure is None:
                    failure = NodeFailed(node_id, future.exception())

        with concurrent.futures.ThreadPoolExecutor(
                max(1, self.max_parallel - 1), thread_name_prefix="headwise-node") as pool:
            while True:
                ready = []
                for node_id in order if failure is None and not ctrl_c.is_set() else ():
                    if node_id in started or not upstream[node_id] <= done:
                        continue
                    if nodes[node_id].execution_options.HasField("skip"):
                        logging.info("Skipping component %s.", node_id)
                        started.add(node_id)
                        done.add(node_id)
                        continue
                    ready.append(node_id)
                mine, *others = ready or [None]
                for node_id in others[:self.max_parallel - 1 - len(running)]:
                    started.add(node_id)
                    running[pool.submit(self._launch_as, launch, node_id)] = node_id
                if mine is not None:
                    started.add(mine)
                    try:
                        self._launch_as(launch, mine)
                        done.add(mine)
                    except Exception as e:  # noqa: BLE001 (raised below, once the rest finished)
                        failure = failure or NodeFailed(mine, e)
                    settle([f for f in running if f.done()])
                elif running:
                    settle(concurrent.futures.wait(
                        running, return_when=concurrent.futures.FIRST_COMPLETED).done)
                else:
                    break
        if ctrl_c.is_set():  # its KeyboardInterrupt was lost (or a node failed of it)
            raise KeyboardInterrupt
        if failure is not None:
            raise failure from failure.cause
        if len(done) < len(nodes):
            raise RuntimeError(f"nodes never ready: {sorted(set(nodes) - done)}")
