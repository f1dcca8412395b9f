"""The official TFX Chicago Taxi example pipeline (the one the `tfx` package ships,
tfx/examples/chicago_taxi_pipeline/taxi_pipeline_native_keras.py) as shipped: its own
`_create_pipeline`, module file, data and Beam arguments, run with LocalDagRunner instead of
BeamDagRunner and with paths under --work-dir instead of $HOME. The reference the pipeline-cost
benchmark compares `make run` with.

    python -m benchmarks.official_taxi --work-dir W [--beam-arg=--direct_running_mode=in_memory ...]

`--beam-arg` replaces the example's Beam arguments (multi_processing as shipped), so that the
pipeline-cost benchmark can also compare it with headwise's own Beam mode.
"""

from __future__ import annotations

import argparse
import os
import sys

PIPELINE_NAME = "chicago_taxi_native_keras"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.official_taxi")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--beam-arg", action="append",
                        help="replace the example's Beam arguments (default: as shipped)")
    args = parser.parse_args(argv)
    from tfx import v1 as tfx
    from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as taxi

    from pipeline import local_runner

    work = os.path.abspath(args.work_dir)
    example_dir = os.path.dirname(taxi.__file__)
    p = taxi._create_pipeline(  # noqa: SLF001 - the example's own pipeline definition
        pipeline_name=PIPELINE_NAME, pipeline_root=os.path.join(work, "root"),
        data_root=os.path.join(example_dir, "data", "simple"),
        module_file=os.path.join(example_dir, "taxi_utils_native_keras.py"),
        serving_model_dir=os.path.join(work, "serving"),
        metadata_path=metadata_path(work),
        beam_pipeline_args=args.beam_arg or taxi._beam_pipeline_args)  # noqa: SLF001
    with local_runner.neutral_argv():
        tfx.orchestration.LocalDagRunner().run(p)
    return 0


def metadata_path(work_dir: str) -> str:
    return os.path.join(os.path.abspath(work_dir), "metadata.db")


if __name__ == "__main__":
    sys.exit(main())
