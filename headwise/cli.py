"""The `headwise` command line. Entry points only parse flags; the work lives in libraries."""

from __future__ import annotations

import argparse
import os
import sys

# Before TensorFlow is imported anywhere: Keras 2 for TFX 1.16, and a quieter C++ log.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_run(args: argparse.Namespace) -> int:
    from headwise import config as config_lib

    try:
        cfg = config_lib.load(args.config)
    except config_lib.ConfigError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    from pipeline import local_runner

    summary = local_runner.run(
        cfg, args.output_dir, train_steps=args.train_steps, eval_steps=args.eval_steps,
        enable_cache=not args.no_cache)
    print()
    print(summary.table())
    return 0 if summary.pushed or summary.blessed is not False else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headwise", description="TFX pipelines for shared-backbone multi-head models.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline locally (LocalDagRunner)")
    run.add_argument("--config", required=True, help="heads config YAML")
    run.add_argument("--output-dir", default="outputs",
                     help="pipeline root, metadata.db and pushed models go here")
    run.add_argument("--train-steps", type=int, help="override trainer.train_steps")
    run.add_argument("--eval-steps", type=int, help="override trainer.eval_steps")
    run.add_argument("--no-cache", action="store_true", help="rerun every component")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
