"""`headwise bench` / `make bench`: every benchmark in one run on one machine, results to
benchmarks/results/ (one JSON per benchmark, SUMMARY.md, summary.png).

    full  (--seeds 3): multi-head vs single-task, every backbone x loss balancing, on taxi and
                       penguins, and loss normalisation with missing labels, at the configs' steps;
                       pipeline cost vs the official taxi example, scaling 1x/10x/50x and Beam
                       modes, census-income at full size (~15 min), serving latency, load test
                       with a version push.  ~55 min on 2 cores;
                       images (digits: rotation pretraining, 3 arms x 3 seeds, CPU throughput)
                       ~35 min more.
    quick (--quick):   one seed at 100 steps, no official example, scaling 1x/2x, a shorter
                       load test, a 40-step pretraining. ~9 minutes, images ~12 more; for checking
                       that everything runs, not for numbers.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

from benchmarks import common

ALL = ("quality", "recipe", "multihead", "pipeline", "scaling", "census", "load", "hostile",
       "scoring", "datasets", "images")


def _plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("multihead", "cost", "pipeline", "scaling")
              if k in results or (k == "cost" and "multihead" in results)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.2), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key in ("multihead", "cost"):
            from benchmarks import multihead

            mh = results["multihead"]
            c = multihead.compare(next(iter(mh["datasets"].values())) if "datasets" in mh
                                  else mh)
        if key == "multihead":
            names = [h["head"] for h in c["heads"]]
            rel = []
            for h in c["heads"]:
                m, s = h["multi"][0], h["single"][0]
                rel.append(m / s if h["higher_is_better"] else s / m)
            ax.bar(names, rel, color=["tab:green" if r >= 1 else "tab:red" for r in rel])
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_ylim(min(0.8, min(rel) - 0.02), max(1.1, max(rel) + 0.02))
            ax.set_title("quality: multi-head / single-task\n(main metric, >1 better)")
            ax.tick_params(axis="x", rotation=30)
        elif key == "cost":
            labels = {"train_s": "train time", "params": "parameters",
                      "saved_model_bytes": "SavedModel", "serving_p50": "serve p50",
                      "latency_ms": "serve p50"}
            ratios = c["ratios"]
            ax.bar([labels[k] for k in ratios], list(ratios.values()), color="tab:blue")
            limit = c["goal"]["budget"]
            ax.axhline(limit, color="tab:red", ls="--", lw=1, label=f"goal {limit:.2f}")
            ax.set_title("cost: multi-head / all single-task models")
            ax.legend()
        elif key == "pipeline":
            p = results["pipeline"]
            runs = [("headwise_first", "headwise\n(5 heads)"),
                    ("official_taxi_in_memory", "official taxi\n(1 head)"),
                    ("headwise_gate_change", "gate-only\nrerun"),
                    ("headwise_noop", "no-op\nrerun")]
            runs = [(k, label) for k, label in runs if k in p]
            ax.bar([label for _, label in runs], [p[k]["wall_s"] for k, _ in runs],
                   color=["tab:gray" if k.startswith("official") else "tab:blue"
                          for k, _ in runs])
            ax.set_ylabel("wall time (s)")
            ax.set_title("pipeline wall time")
        else:
            s = results["scaling"]["factors"]
            ks = sorted(s, key=int)
            rows = [s[k]["rows"] for k in ks]
            ax.plot(rows, [s[k]["transform"]["seconds"] for k in ks], "o-", label="Transform")
            ax.plot(rows, [s[k]["trainer"]["seconds"] for k in ks], "s-",
                    label="Trainer (1 epoch)")
            if all("evaluator" in s[k] for k in ks):
                ax.plot(rows, [s[k]["evaluator"]["seconds"] for k in ks], "^-",
                        label="Evaluator")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("rows")
            ax.set_ylabel("seconds")
            ax.set_title("scaling with data")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


_SECTIONS = [  # (results file, title, summary module[:function], default `summary`)
    ("quality", "Model quality: every head against a per-head gradient-boosted model",
     "benchmarks.quality"),
    ("recipe", "The recipe, part by part (validation split)", "benchmarks.quality:recipe_summary"),
    ("multihead", "Multi-head vs one model per head", "benchmarks.multihead"),
    ("serving", "Serving latency and throughput (gRPC, loopback)", "benchmarks.serving"),
    ("pipeline_cost", "Pipeline cost", "benchmarks.pipeline_cost"),
    ("scaling", "Scaling with data", "benchmarks.scaling"),
    ("census", "Census-income at full size (200k rows)", "benchmarks.census"),
    ("load", "Serving under load, with a version push", "benchmarks.load"),
    ("hostile", "Serving against hostile clients (REST and gRPC)", "benchmarks.hostile"),
    ("scoring", "Batch scoring (`headwise score`)", "benchmarks.scoring"),
    ("datasets", "Other datasets, end to end", "benchmarks.datasets"),
    ("images", "Images: a backbone pretrained without a download (digits)", "benchmarks.images"),
]


def render(results_dir: str) -> str:
    """SUMMARY.md and summary.png from the JSON results in results_dir (also after editing a
    summary function: `headwise bench --render` re-renders without measuring again)."""
    import importlib

    def load_json(name: str):
        path = os.path.join(results_dir, f"{name}.json")
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    m = load_json("machine") or common.machine()
    quick = m.get("mode") == "quick"
    parts = [
        "# Benchmark results", "",
        f"Run {m.get('finished', '?')} ({m.get('mode', '?')} mode, {m.get('seconds', 0):.0f} s) "
        f"on {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}. "
        f"Regenerate with `make bench`"
        f"{' (this was --quick: numbers are only a smoke check)' if quick else ''}."
        + (f" {m['note']}." if m.get("note") else ""), ""]
    results = {}
    for name, title, module in _SECTIONS:
        r = load_json(name)
        if r is None:
            continue
        results[name] = r
        module, _, function = module.partition(":")
        summarize = getattr(importlib.import_module(module), function or "summary")
        parts += [f"## {title}", "", summarize(r), ""]
    text = "\n".join(parts)
    with open(os.path.join(results_dir, "SUMMARY.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    if "quality" in results and os.path.abspath(results_dir) == os.path.abspath(common.RESULTS):
        from benchmarks import quality

        quality.render_readme(os.path.join(common.ROOT, "README.md"), results["quality"])
    if os.path.abspath(results_dir) == os.path.abspath(common.RESULTS):
        from benchmarks import performance

        performance.render_readme(os.path.join(common.ROOT, "README.md"),
                                  results.get("pipeline_cost"), results.get("scaling"),
                                  results.get("census"))
    panels = {"multihead": results.get("multihead"), "pipeline": results.get("pipeline_cost"),
              "scaling": results.get("scaling")}
    _plot({k: v for k, v in panels.items() if v is not None},
          os.path.join(results_dir, "summary.png"))
    return text


def main(quick: bool = False, only: list[str] | None = None, seeds: int = 3,
         config: str = "pipeline/configs/taxi.yaml", work_dir: str = "outputs/bench",
         ablations: list[str] | None = None, datasets: list[str] | None = None,
         first_seed: int = 1) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from benchmarks import quality
    from headwise import config as config_lib

    unknown = set(ablations or ()) - set(quality.ABLATIONS)
    if unknown:
        print(f"headwise: error: --ablations: unknown part(s) {sorted(unknown)}; choose from "
              f"{', '.join(quality.ABLATIONS)}", file=sys.stderr)
        return 2

    config = os.path.abspath(config)
    cfg = config_lib.load(config)
    work_dir = os.path.abspath(work_dir)
    chosen = only or list(ALL)
    results: dict = {}
    started = time.monotonic()
    mode = "quick" if quick else "full"
    print(f"headwise bench ({mode}): {', '.join(chosen)}; work dir {work_dir}", flush=True)

    if "quality" in chosen:
        print("[quality] every head against a per-head HistGradientBoosting model", flush=True)
        quality_seeds = [1] if quick else list(range(1, max(seeds, 5) + 1))
        if datasets:
            with open(os.path.join(common.RESULTS, "quality.json"), encoding="utf-8") as fh:
                previous = json.load(fh)
            try:
                r = quality.rerun(previous, os.path.join(work_dir, "quality"), datasets,
                                  quality_seeds)
            except ValueError as e:
                print(f"headwise: error: {e}", file=sys.stderr)
                return 2
        else:
            r = quality.run(os.path.join(work_dir, "quality"), seeds=quality_seeds, quick=quick)
        results["quality"] = r
        common.write_json("quality", r)
    if "recipe" in chosen:
        print("[recipe] each part of the recipe against what it replaced (validation split)",
              flush=True)
        previous = results.get("quality")
        if previous is None and os.path.exists(os.path.join(common.RESULTS, "quality.json")):
            with open(os.path.join(common.RESULTS, "quality.json"), encoding="utf-8") as fh:
                previous = json.load(fh)
        r = quality.run_ablations(os.path.join(work_dir, "recipe"),
                                  seeds=[1] if quick else list(range(first_seed,
                                                                     first_seed + seeds)),
                                  quality_results=previous,
                                  names=tuple(ablations or quality.ABLATIONS))
        results["recipe"] = r
        common.write_json("recipe", r)
    if "multihead" in chosen:
        from benchmarks import multihead

        print("[multihead] multi-head vs one model per head", flush=True)
        others = tuple(c for c in multihead.CONFIGS
                       if os.path.abspath(os.path.join(common.ROOT, c)) != config)
        r = multihead.run(os.path.join(work_dir, "multihead"),
                          seeds=[1] if quick else list(range(1, seeds + 1)),
                          train_steps=100 if quick else None, quick=quick,
                          configs=(config, *others))
        results["multihead"] = r
        common.write_json("multihead", r)
        common.write_json("serving", r["datasets"][cfg.name]["serving"])
    if "pipeline" in chosen and not quick:
        from benchmarks import pipeline_cost

        print("[pipeline] make run vs the official TFX taxi example", flush=True)
        r = pipeline_cost.run(config, os.path.join(work_dir, "pipeline"))
        results["pipeline"] = r
        common.write_json("pipeline_cost", r)
    if "scaling" in chosen:
        from benchmarks import scaling

        print("[scaling] Transform, Trainer and Evaluator on copies of the data", flush=True)
        r = scaling.run(config, os.path.join(work_dir, "scaling"),
                        factors=[1, 2] if quick else [1, 10, 50],
                        mode_factor=None if quick else 10)
        results["scaling"] = r
        common.write_json("scaling", r)
    if "census" in chosen and not quick:
        from benchmarks import census

        print("[census] census-income's 200k rows: check, schema, a first run, Transform's "
              "TF1 and TF2 modes", flush=True)
        r = census.run(os.path.join(work_dir, "census"))
        results["census"] = r
        common.write_json("census", r)
    if "load" in chosen:
        from benchmarks import load

        print("[load] 16 clients, malformed requests, a version pushed mid-run", flush=True)
        # The multi-head model this (or an earlier) bench trained, else the one make run pushed.
        model_dir = os.path.join(work_dir, "multihead", cfg.name, "serving", cfg.model_name)
        if "multihead" not in results and not os.path.isdir(model_dir):
            model_dir = os.path.join(common.ROOT, "outputs", "serving", cfg.model_name)
        r = load.run(model_dir, cfg.resolve_data(),
                     os.path.join(work_dir, "load"), total=4000 if quick else 20_000)
        results["load"] = r
        common.write_json("load", r)

    if "hostile" in chosen:
        from benchmarks import hostile

        print("[hostile] slow, oversized and flooding clients over REST and gRPC", flush=True)
        model_dir = os.path.join(work_dir, "multihead", cfg.name, "serving", cfg.model_name)
        if "multihead" not in results and not os.path.isdir(model_dir):
            model_dir = os.path.join(common.ROOT, "outputs", "serving", cfg.model_name)
        r = hostile.run(model_dir, cfg.resolve_data(), os.path.join(work_dir, "hostile"))
        results["hostile"] = r
        common.write_json("hostile", r)

    if "scoring" in chosen:
        from benchmarks import scoring

        print("[scoring] headwise score on the data copied 1x and 10x", flush=True)
        model_dir = os.path.join(work_dir, "multihead", cfg.name, "serving", cfg.model_name)
        if not os.path.isdir(model_dir):
            model_dir = os.path.join(common.ROOT, "outputs", "serving", cfg.model_name)
        r = scoring.run(model_dir, cfg.resolve_data(), os.path.join(work_dir, "scoring"),
                        factors=(1, 2) if quick else (1, 10), multi_factor=None if quick else 10)
        results["scoring"] = r
        common.write_json("scoring", r)

    if "datasets" in chosen:
        from benchmarks import datasets

        print("[datasets] headwise run on every other shipped dataset config", flush=True)
        r = datasets.run(os.path.join(work_dir, "datasets"))
        results["datasets"] = r
        common.write_json("datasets", r)

    if "images" in chosen:
        from benchmarks import images

        print("[images] digits: rotation-pretrained MobileNetV2 frozen / fine-tuned vs from "
              "scratch; training and serving images/s", flush=True)
        r = images.run(os.path.join(work_dir, "images"),
                       seeds=[1] if quick else list(range(1, seeds + 1)), quick=quick)
        results["images"] = r
        common.write_json("images", r)

    common.write_json("machine", {**common.machine(), "mode": mode,
                                  "finished": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                                  "seconds": time.monotonic() - started})
    text = render(common.RESULTS)
    print(text)
    print(f"headwise bench: wrote {common.RESULTS}/ in {time.monotonic() - started:.0f} s")
    return 0
