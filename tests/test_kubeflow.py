"""Kubeflow: the same pipeline compiled to a KFP v2 spec, and the serving manifests, offline."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import pytest
import yaml

from headwise import config as config_lib
from kubeflow import compile as kfp_compile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(ROOT, "pipeline", "configs", "taxi.yaml")
DEPLOY = os.path.join(ROOT, "kubeflow", "deploy.yaml")
LOCAL_ORDER = ["CsvExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator",
               "DataValidationGate", "Transform", "Trainer", "latest_blessed_model_resolver",
               "Evaluator", "InfraCheck", "Pusher"]


@pytest.fixture(scope="module")
def cfg():
    return config_lib.load(TAXI)


@pytest.fixture(scope="module")
def deploy():
    return kfp_compile.load_deploy_config(DEPLOY)


def _compile(cfg, deploy, tmp_path):
    path = kfp_compile.compile_pipeline(cfg, deploy, str(tmp_path / "pipeline.yaml"))
    with open(path) as fh:
        return path, yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compiled(cfg, deploy, tmp_path_factory):
    return _compile(cfg, deploy, tmp_path_factory.mktemp("kfp"))


RESOLVER = "latest_blessed_model_resolver"


def _deps(spec):
    """Task -> the tasks it depends on; KFP splits the resolver into two tasks: merged here."""
    def node(name):
        return RESOLVER if name.startswith(RESOLVER) else name

    deps: dict[str, set[str]] = {}
    for name, t in spec["root"]["dag"]["tasks"].items():
        deps.setdefault(node(name), set()).update(node(d) for d in t.get("dependentTasks", []))
    return deps


def _upstream(deps, node):
    out, todo = set(), list(deps[node])
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += deps[n]
    return out


def test_every_local_component_is_compiled_in_the_same_dependency_order(compiled, cfg):
    from pipeline import pipeline as pipeline_lib

    _, spec = compiled
    deps = _deps(spec)
    local = pipeline_lib.create_pipeline(cfg, pipeline_root="/r", data_root="/d",
                                         serving_dir="/s", schema_file="/x.pbtxt")
    assert set(deps) == {c.id for c in local.components}
    for c in local.components:  # every local edge (data or explicit) is an edge on Kubeflow
        upstream = {u.id for u in c.upstream_nodes}
        assert upstream <= _upstream(deps, c.id) | deps[c.id], (c.id, upstream, deps[c.id])
    assert "DataValidationGate" in _upstream(deps, "Transform")
    assert {"Evaluator", "Transform", "Trainer"} <= _upstream(deps, "Pusher")


def _executor_args(spec, component):
    executors = spec["deploymentSpec"]["executors"]
    key = next(k for k in executors if k.startswith(f"{component}_executor") or
               k == f"{component}_executor")
    return executors[key]["container"]


def test_image_and_beam_args_come_from_the_deploy_config(compiled, deploy):
    _, spec = compiled
    for component in ("Transform", "Trainer", "Evaluator", "Pusher"):
        container = _executor_args(spec, component)
        assert container["image"] == deploy.image
    text = json.dumps(spec)
    for arg in deploy.beam_args:
        assert arg in text
    # The shipped example sizes Dataflow's workers and lets them scale.
    flags = {a.split("=", 1)[0] for a in deploy.beam_args}
    assert {"--runner", "--project", "--region", "--temp_location", "--machine_type",
            "--autoscaling_algorithm", "--max_num_workers"} <= flags
    assert deploy.data_root in text
    assert spec["defaultPipelineRoot"] == deploy.pipeline_root


def _exec_param(spec, component, name):
    inputs = spec["components"][f"{component}"]["inputDefinitions"]["parameters"]
    assert name in inputs
    task = spec["root"]["dag"]["tasks"][component]
    return task["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]["stringValue"]


def test_evaluator_carries_one_metrics_spec_per_head_with_thresholds(compiled, cfg):
    _, spec = compiled
    comp = next(k for k in spec["components"] if k.startswith("Evaluator"))
    raw = _exec_param(spec, comp, "eval_config")
    eval_config = json.loads(raw)
    per_head = [m for m in eval_config["metrics_specs"] if "binarize" not in m]
    assert sorted(m["output_names"][0] for m in per_head) == sorted(h.name for h in cfg.heads)
    big = next(m for m in per_head if m["output_names"] == ["big_tipper"])
    auc = next(c for c in big["metrics"] if json.loads(c.get("config", "{}")).get("name") == "auc")
    threshold = auc["per_slice_thresholds"][0]["threshold"]
    assert threshold["value_threshold"]["lower_bound"] == pytest.approx(0.55)  # DoubleValue


def test_spec_loads_with_the_kfp_sdk(compiled, cfg):
    """What KFP itself reads back: every component of the local pipeline as a task, each task's
    component defined, and the Evaluator gating on the test split."""
    from kfp import components

    from pipeline import pipeline as pipeline_lib

    path, _ = compiled
    spec = components.load_component_from_file(path).pipeline_spec
    tasks = spec.root.dag.tasks
    local = pipeline_lib.create_pipeline(cfg, pipeline_root="/r", data_root="/d",
                                         serving_dir="/s", schema_file="/x.pbtxt")
    assert {RESOLVER if n.startswith(RESOLVER) else n for n in tasks} == {
        c.id for c in local.components}
    for name, task in tasks.items():
        assert task.component_ref.name in spec.components, name
    splits = tasks["Evaluator"].inputs.parameters["example_splits"]
    assert json.loads(splits.runtime_value.constant_value.string_value) == ["test"]


def test_changing_a_head_changes_local_and_compiled_pipeline(cfg, deploy, tmp_path):
    from components.gates import eval_config

    renamed = dataclasses.replace(cfg, heads=tuple(
        dataclasses.replace(h, name="fare_usd") if h.name == "fare" else h for h in cfg.heads))
    local = eval_config(renamed)
    assert "fare_usd" in {s.output_names[0] for s in local.metrics_specs}
    _, spec = _compile(renamed, deploy, tmp_path)
    text = json.dumps(spec)
    assert "fare_usd" in text and "label__fare_usd" in text
    assert '"fare"' not in json.dumps(_exec_param(
        spec, next(k for k in spec["components"] if k.startswith("Evaluator")), "eval_config"))


class _Response:  # what the Kubernetes client deserializes: an API server's JSON answer
    def __init__(self, doc: dict):
        self.data = json.dumps(doc)


def _validate_manifest(doc: dict) -> None:
    """A manifest read by the Kubernetes Python client's models of its kind (the API's OpenAPI
    schemas, generated): a missing required field raises, and one the API does not have, or a
    value of another type, does not survive the round trip back to JSON."""
    from kubernetes import client

    api = client.ApiClient()
    version = doc["apiVersion"].rpartition("/")[2]
    model = f"{version[0].upper()}{version[1:]}{doc['kind']}"  # apps/v1 Deployment: V1Deployment
    assert api.sanitize_for_serialization(api.deserialize(_Response(doc), model)) == doc, model


def test_the_manifest_check_catches_what_the_api_would_refuse(cfg, deploy):
    deployment = next(d for d in kfp_compile.serving_manifests(cfg, deploy)
                      if d["kind"] == "Deployment")
    _validate_manifest(deployment)

    def broken(edit):
        doc = copy.deepcopy(deployment)
        edit(doc["spec"]["template"]["spec"]["containers"][0])
        return doc

    for doc in (broken(lambda c: c.update(replicaz=2)),  # no such field
                broken(lambda c: c["ports"][0].update(containerPort="8500")),  # not an integer
                broken(lambda c: c.pop("name"))):  # required
        with pytest.raises((AssertionError, ValueError)):
            _validate_manifest(doc)


def test_serving_manifests_validate_against_kubernetes_schemas(cfg, deploy):
    docs = kfp_compile.serving_manifests(cfg, deploy)
    for doc in docs:
        _validate_manifest(doc)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("tensorflow/serving:")
    # TF Serving loads what the Pusher's model config names, never a half-copied version
    base = f"{deploy.serving_model_dir.rstrip('/')}/{cfg.model_name}"
    assert f"--model_config_file={base}/models.config" in container["args"]
    assert not [a for a in container["args"] if a.startswith(("--model_name", "--model_base"))]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["readinessProbe"] and container["livenessProbe"]
    ports = {p["containerPort"] for p in container["ports"]}
    assert 8500 in ports


def test_inference_service_has_required_fields(cfg, deploy):
    isvc = kfp_compile.inference_service(cfg, deploy)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["name"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["storageUri"].endswith(f"/{cfg.model_name}")


def test_dockerfile_copies_the_project_and_runs_unprivileged():
    """(What the image installs, the lock, is checked in tests/test_parity.py.)"""
    with open(os.path.join(ROOT, "Dockerfile")) as fh:
        text = fh.read()
    for folder in ("headwise/", "pipeline/", "components/", "trainer/", "schemas/"):
        assert f"COPY {folder}" in text
    assert "pip install" in text and "USER 1000" in text
    assert "TF_USE_LEGACY_KERAS=1" in text


def test_gate_reads_the_deployments_request_logs_and_is_never_cached(compiled, cfg, deploy):
    """The skew baseline (request logs) and the drift baseline (the served version) are not
    inputs of the gate, so KFP must not answer it from its cache; every other step caches."""
    _, spec = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["DataValidationGate"]["cachingOptions"] == {"enableCache": False}
    assert tasks["Transform"]["cachingOptions"] == {"enableCache": True}
    params = tasks["DataValidationGate"]["inputs"]["parameters"]
    value = params["request_log_dir"]["runtimeValue"]["constantValue"]
    assert list(value.values()) == [f"{deploy.request_log_dir}/{cfg.model_name}"]
    skew = params["skew"]["runtimeValue"]["constantValue"]
    assert json.loads(next(iter(skew.values()))) == cfg.validation.skew


def test_images_and_weights_must_be_urls_the_containers_can_read(deploy, tmp_path):
    """The digits config points at this machine's folder and no weights: refused, naming the
    field; with the images and a weights file on the cluster's storage it compiles, and
    ExampleGen and the Trainer read those URLs."""
    digits = config_lib.load(os.path.join(ROOT, "pipeline", "configs", "digits.yaml"),
                             check_data=False)
    with pytest.raises(config_lib.ConfigError, match=r"digits.yaml: data.images: .* local "
                                                     r"folder.*gs://"):
        kfp_compile.compile_pipeline(digits, deploy, str(tmp_path / "a.yaml"))
    local_weights = dataclasses.replace(
        digits, images_dir="gs://bucket/digits/images", model=dataclasses.replace(
            digits.model, image=dataclasses.replace(digits.model.image, weights="w.h5")))
    with pytest.raises(config_lib.ConfigError, match="model.backbone.weights: w.h5 is a local"):
        kfp_compile.compile_pipeline(local_weights, deploy, str(tmp_path / "b.yaml"))
    remote = dataclasses.replace(local_weights, model=dataclasses.replace(
        digits.model, image=dataclasses.replace(digits.model.image,
                                                weights="gs://bucket/mobilenet_v2.h5")))
    _, spec = _compile(remote, deploy, tmp_path)
    text = json.dumps(spec)
    assert "gs://bucket/digits/images" in text and "gs://bucket/mobilenet_v2.h5" in text


def test_parquet_data_compiles_to_the_parquet_example_gen(cfg, deploy, tmp_path):
    """`data.parquet`: the compiled pipeline reads the data root with ParquetExampleGen (the
    image runs components.parquet_example_gen), with the config's missing-value markers."""
    parquet = dataclasses.replace(cfg, data_format="parquet", data_path="gs://b/taxi/")
    _, spec = _compile(parquet, deploy, tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert "ParquetExampleGen" in tasks and "CsvExampleGen" not in tasks
    text = json.dumps(spec)
    assert "components.parquet_example_gen.Executor" in text
    assert all(m in text for m in cfg.missing_values if m)


def test_the_pusher_waits_for_the_infra_check_in_the_pipeline_image(compiled, cfg, deploy):
    """On Kubeflow too, every candidate answers real requests in a model server before the
    push: the InfraCheck runs in the pipeline image (which carries tensorflow_model_server,
    tests/test_parity.py), on the Trainer's model beside the Evaluator (as TFX's InfraValidator),
    with the config's settings."""
    _, spec = compiled
    deps = _deps(spec)
    assert {"InfraCheck", "Evaluator"} <= set(deps["Pusher"])
    assert "Trainer" in deps["InfraCheck"] and "Evaluator" not in deps["InfraCheck"]
    assert _executor_args(spec, "InfraCheck")["image"] == deploy.image
    task = spec["root"]["dag"]["tasks"]["InfraCheck"]["inputs"]["parameters"]
    value = lambda name: task[name]["runtimeValue"]["constantValue"]  # noqa: E731
    assert int(value("examples_per_request")["intValue"]) == cfg.infra_check_examples
    assert int(value("timeout_seconds")["intValue"]) == cfg.infra_check_timeout_s


def test_the_scoring_stage_compiles_after_the_pusher_with_urls_only(cfg, deploy, tmp_path):
    local = dataclasses.replace(cfg, scoring_data="new.csv", scoring_output="gs://b/s.parquet")
    with pytest.raises(config_lib.ConfigError, match=r"scoring\.data: .*new\.csv is a local "
                                                     r"path.*gs://"):
        kfp_compile.compile_pipeline(local, deploy, str(tmp_path / "a.yaml"))
    remote = dataclasses.replace(local, scoring_data="gs://b/new/")
    _, spec = _compile(remote, deploy, tmp_path)
    assert "Pusher" in _deps(spec)["BatchScoring"]
    assert _executor_args(spec, "BatchScoring")["image"] == deploy.image
    assert "gs://b/new/" in json.dumps(spec["root"]["dag"]["tasks"]["BatchScoring"])


def test_transform_writes_no_analyzer_cache_and_only_the_trainers_splits(compiled):
    """Nothing reads an analyzer cache (the pipeline wires no `analyzer_cache` input) or the
    test split's transformed examples (the Evaluator reads raw examples): Transform writes
    neither, here as in the local run (the same pipeline_lib.transform_component)."""
    _, spec = compiled
    comp = next(k for k in spec["components"] if k.startswith("Transform"))
    assert "updated_analyzer_cache" not in spec["components"][comp]["outputDefinitions"][
        "artifacts"]
    assert set(spec["components"][comp]["outputDefinitions"]["artifacts"]) >= {
        "transform_graph", "transformed_examples"}
    splits = json.loads(_exec_param(spec, comp, "splits_config"))
    assert splits == {"analyze": ["train"], "transform": ["train", "validation"]}
