"""The penguins data through the pipeline's own ExampleGen, ImportSchemaGen, StatisticsGen and
Transform, with the Beam args given: the Beam-mode comparison (test_beam_modes.py) and the
multi-worker Trainer (test_multi_worker.py) start from it. Penguins: 344 rows, numbers, text,
NA markers, three label types."""

from __future__ import annotations

import glob
import os

from headwise import config as config_lib
from pipeline import local_runner
from pipeline import pipeline as pipeline_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENGUINS = os.path.join(ROOT, "pipeline", "configs", "penguins.yaml")
IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def run(work: str, beam_args: list[str]) -> str:
    """Run the four components into work/; the pipeline root."""
    from tfx import v1 as tfx

    cfg = config_lib.load(PENGUINS)
    data_root = os.path.join(work, "data")
    local_runner.stage_data(cfg, data_root)
    example_gen = pipeline_lib.example_gen_component(cfg, data_root)
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=local_runner.stage_schema(cfg, os.path.join(work, "schema")))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  schema=schema_gen.outputs["schema"])
    transform = pipeline_lib.transform_component(cfg, example_gen.outputs["examples"],
                                                 schema_gen.outputs["schema"])
    root = os.path.join(work, "root")
    p = tfx.dsl.Pipeline(
        pipeline_name="penguins_components", pipeline_root=root, enable_cache=False,
        components=[example_gen, schema_gen, statistics_gen, transform],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(work, "metadata.db")),
        beam_pipeline_args=local_runner.local_beam_args(beam_args))
    with local_runner.neutral_argv():
        tfx.orchestration.LocalDagRunner().run(p)
    return root


def output(root: str, component: str, key: str) -> str:
    """The one output folder of component's `key` under the pipeline root."""
    [uri] = glob.glob(os.path.join(root, component, key, "*"))
    return uri
