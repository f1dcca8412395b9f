"""Compile the headwise pipeline for Kubeflow Pipelines v2, and render the serving manifests.

The pipeline is the very `create_pipeline` that `headwise run` executes locally; only the
paths, the image and the Beam arguments come from a small deploy config
(`kubeflow/deploy.yaml`). KubeflowV2DagRunner writes a KFP v2 PipelineSpec YAML that
`kfp.Client().create_run_from_pipeline_package` accepts. The Kubernetes manifests serve the
pushed model with the official `tensorflow/serving` image (Deployment + Service) or with
KServe (InferenceService); the model name comes from the heads config.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

from headwise import config as config_lib
from headwise.config import ConfigError, PipelineConfig, _Fields
from headwise.versions import MODEL_CONFIG

IMAGE_PROJECT_ROOT = "/pipeline"  # where the Dockerfile puts the project inside the image
SERVING_IMAGE = "tensorflow/serving:2.16.1"
GRPC_PORT, REST_PORT = 8500, 8501
GATE_TASK = "DataValidationGate"


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    pipeline_root: str  # e.g. gs://bucket/headwise/pipelines
    data_root: str  # the directory of the data files (CSV or Parquet), e.g. gs://bucket/headwise/data/taxi
    serving_model_dir: str  # where Pusher writes versions, e.g. gs://bucket/headwise/serving
    image: str  # the pipeline image (Dockerfile), e.g. us-docker.pkg.dev/p/r/headwise:0.1.0
    beam_args: tuple[str, ...] = ()
    distribution_strategy: str = "none"  # Trainer: none | mirrored | multi_worker_mirrored
    namespace: str = "headwise"
    serving_replicas: int = 2
    # Where request logs (PredictionLog TFRecords) land, <dir>/<model_name>/: the skew check's
    # baseline. Empty: no skew check on the cluster.
    request_log_dir: str = ""
    source: str = "<deploy>"


STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")


def load_deploy_config(path: str) -> DeployConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"deploy config not found: {path}") from None
    f = _Fields(path, "", raw, ("pipeline_root", "data_root", "serving_model_dir", "image",
                                "beam_args", "distribution_strategy", "namespace",
                                "serving_replicas", "request_log_dir"))
    beam_args = f.get("beam_args", list, [])
    if not all(isinstance(a, str) and a.startswith("--") for a in beam_args):
        f.fail(f"expected a list of '--flag=value' strings, got {beam_args!r}", "beam_args")
    return DeployConfig(
        pipeline_root=f.get("pipeline_root", str), data_root=f.get("data_root", str),
        serving_model_dir=f.get("serving_model_dir", str), image=f.get("image", str),
        request_log_dir=f.get("request_log_dir", str, ""),
        beam_args=tuple(beam_args),
        distribution_strategy=f.choice("distribution_strategy", STRATEGIES, "none",
                                       what="distribution strategy"),
        namespace=f.get("namespace", str, "headwise"),
        serving_replicas=f.get("serving_replicas", int, 2), source=path)


def image_schema_path(cfg: PipelineConfig, repo_root: str) -> str | None:
    """The curated schema's path inside the pipeline image."""
    local = cfg.schema_path()
    if local is None:
        return None
    return os.path.join(IMAGE_PROJECT_ROOT, os.path.relpath(local, repo_root))


def check_remote_paths(cfg: PipelineConfig) -> None:
    """ExampleGen and Trainer read the images folder and a weights file, BatchScoring its data
    and output, in their containers, where this machine's paths do not exist: on Kubeflow they
    must be URLs (gs://...)."""
    for key, path in (("data", cfg.scoring_data), ("output", cfg.scoring_output)):
        if path is not None and "://" not in cfg.resolve_file(path):
            raise ConfigError(f"{cfg.source}: scoring.{key}: {cfg.resolve_file(path)} is a local "
                              "path, which the pipeline's containers cannot reach; set it to a "
                              "URL (gs://bucket/...)")
    if cfg.image_features and "://" not in cfg.resolve_images_dir():
        raise ConfigError(f"{cfg.source}: data.images: {cfg.resolve_images_dir()} is a local "
                          "folder, which the pipeline's containers cannot read; copy the images "
                          "to the cluster's storage and set data.images: gs://bucket/images")
    image = cfg.model.image
    if image is not None and image.weights not in ("imagenet", "none") and \
            "://" not in image.weights:
        raise ConfigError(f"{cfg.source}: model.backbone.weights: {image.weights} is a local "
                          "file, which the Trainer's container cannot read; set it to a URL "
                          "(gs://bucket/weights.h5)")


def compile_pipeline(cfg: PipelineConfig, deploy: DeployConfig, output_path: str) -> str:
    """Write the KFP v2 PipelineSpec YAML of `create_pipeline(cfg)` for this deployment."""
    from tfx import v1 as tfx

    from pipeline import pipeline as pipeline_lib

    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    check_remote_paths(cfg)
    p = pipeline_lib.create_pipeline(
        cfg,
        pipeline_root=deploy.pipeline_root,
        data_root=deploy.data_root,
        serving_dir=f"{deploy.serving_model_dir.rstrip('/')}/{cfg.model_name}",
        schema_file=image_schema_path(cfg, repo_root),
        beam_pipeline_args=deploy.beam_args,
        distribution_strategy=deploy.distribution_strategy,
        request_log_dir=(f"{deploy.request_log_dir.rstrip('/')}/{cfg.model_name}"
                         if deploy.request_log_dir else ""),
    )
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=deploy.image),
        output_dir=os.path.dirname(os.path.abspath(output_path)),
        output_filename=os.path.basename(output_path))
    runner.run(p, write_out=True)
    # The YAML form holds the PipelineSpec alone; KFP reads its pipeline root from
    # defaultPipelineRoot when a run is created without one.
    with open(output_path, encoding="utf-8") as fh:
        text = fh.read()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    spec = yaml.safe_load(text)
    spec["defaultPipelineRoot"] = deploy.pipeline_root
    # The gate's baselines (the served version, the request logs) are not among its inputs:
    # a cached verdict could be stale, so KFP must always run it (it takes seconds).
    spec["root"]["dag"]["tasks"][GATE_TASK]["cachingOptions"] = {"enableCache": False}
    with open(output_path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(header)
        yaml.safe_dump(spec, fh, sort_keys=True)
    os.replace(output_path + ".tmp", output_path)
    return output_path


def serving_manifests(cfg: PipelineConfig, deploy: DeployConfig) -> list[dict[str, Any]]:
    """Deployment + Service for the official TF Serving image, serving the version the
    Pusher's model config names."""
    name = f"{cfg.model_name.replace('_', '-')}-serving"
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "headwise"}
    base_path = f"{deploy.serving_model_dir.rstrip('/')}/{cfg.model_name}"
    container = {
        "name": "tensorflow-serving",
        "image": SERVING_IMAGE,
        # The model config the Pusher writes with every push names the one complete version:
        # TF Serving's own `latest` policy would load any numeric directory, a version still
        # being copied into the bucket among them (headwise.versions). It exists from the
        # first push on; until then the server restarts.
        "args": [f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
                 f"--model_config_file={base_path}/{MODEL_CONFIG}",
                 "--model_config_file_poll_wait_seconds=30",
                 "--file_system_poll_wait_seconds=30"],
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT},
                  {"name": "http", "containerPort": REST_PORT}],
        # Ready once the model's latest version is AVAILABLE; alive while gRPC answers.
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{cfg.model_name}",
                                       "port": REST_PORT},
                           "initialDelaySeconds": 5, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": GRPC_PORT},
                          "initialDelaySeconds": 15, "periodSeconds": 20},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                      "limits": {"cpu": "2", "memory": "2Gi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": deploy.namespace, "labels": labels},
        "spec": {
            "replicas": deploy.serving_replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                        "fsGroup": 1000},
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": deploy.namespace, "labels": labels},
        "spec": {"selector": labels, "ports": [
            {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT},
            {"name": "http", "port": REST_PORT, "targetPort": REST_PORT}]},
    }
    return [deployment, service]


def inference_service(cfg: PipelineConfig, deploy: DeployConfig) -> dict[str, Any]:
    """The KServe alternative: a TensorFlow predictor over the same model directory."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": cfg.model_name.replace("_", "-"), "namespace": deploy.namespace},
        "spec": {"predictor": {
            "minReplicas": 1, "maxReplicas": deploy.serving_replicas,
            "model": {
                "modelFormat": {"name": "tensorflow"},
                "storageUri": f"{deploy.serving_model_dir.rstrip('/')}/{cfg.model_name}",
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                              "limits": {"cpu": "2", "memory": "2Gi"}},
            },
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        }},
    }


def write_manifests(cfg: PipelineConfig, deploy: DeployConfig, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, docs in (("serving.yaml", serving_manifests(cfg, deploy)),
                       ("inferenceservice.yaml", [inference_service(cfg, deploy)])):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump_all(docs, fh, sort_keys=False)
        paths.append(path)
    return paths


def compile_all(config_path: str, deploy_path: str, out_dir: str) -> list[str]:
    cfg = config_lib.load(config_path, check_data=False)
    deploy = load_deploy_config(deploy_path)
    spec = compile_pipeline(cfg, deploy, os.path.join(out_dir, f"{cfg.name}_pipeline.yaml"))
    return [spec, *write_manifests(cfg, deploy, out_dir)]
