"""One process of the Trainer, as a training cluster runs it: TFX's own Trainer executor
(`GenericExecutor`, what the Trainer component and Vertex AI's training runs call on every
worker) with the pipeline's run_fn, on a finished Transform's outputs. TF_CONFIG, set by the
caller, makes it one worker of a multi-worker cluster.

    python -m tests.trainer_worker --root PIPELINE_ROOT --out DIR --strategy S [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True, help="the pipeline root Transform ran in")
    parser.add_argument("--config", required=True, help="the heads config")
    parser.add_argument("--out", required=True, help="the Model and ModelRun artifacts' folder")
    parser.add_argument("--strategy", default="none")
    args = parser.parse_args()

    from tfx.components.trainer import executor as trainer_executor
    from tfx.proto import trainer_pb2
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.utils import json_utils, proto_utils

    from headwise import config as config_lib
    from headwise.config import Scope
    from headwise.config import data as data_config
    from pipeline import pipeline as pipeline_lib
    from tests import penguins_components

    def artifact(cls, uri, splits=None):
        a = cls()
        a.uri = uri
        if splits:
            a.split_names = artifact_utils.encode_split_names(list(splits))
        return a

    cfg = config_lib.load(args.config)
    examples = penguins_components.output(args.root, "Transform", "transformed_examples")
    inputs = {
        "examples": [artifact(standard_artifacts.Examples, examples,
                              sorted(d[len("Split-"):] for d in os.listdir(examples)))],
        "transform_graph": [artifact(standard_artifacts.TransformGraph,
                                     penguins_components.output(args.root, "Transform",
                                                                "transform_graph"))],
        "schema": [artifact(standard_artifacts.Schema,
                            penguins_components.output(args.root, "ImportSchemaGen", "schema"))],
    }
    outputs = {"model": [artifact(standard_artifacts.Model, os.path.join(args.out, "model"))],
               "model_run": [artifact(standard_artifacts.ModelRun,
                                      os.path.join(args.out, "model_run"))]}
    properties = {
        "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(
            splits=[data_config.TRAIN])),
        "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(
            splits=[data_config.VALIDATION])),
        "run_fn": pipeline_lib.RUN_FN,
        "custom_config": json_utils.dumps({
            config_lib.HEADS_CONFIG_KEY: config_lib.to_json(cfg, Scope.TRAINING),
            "distribution_strategy": args.strategy}),
    }
    trainer_executor.GenericExecutor().Do(inputs, outputs, properties)
    print("TF_CONFIG task:", json.loads(os.environ.get("TF_CONFIG", "{}")).get("task"))


if __name__ == "__main__":
    main()
