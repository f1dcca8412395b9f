"""Images on the digits config: does a pretrained image backbone help, and what do images cost on
a CPU? There are no ImageNet weights here and nothing is downloaded, so the pretrained weights
are made here, honestly labelled:

1. Pretraining (`pretrain`, in its own process): the config's application (MobileNetV2, its alpha
   and input size, no top, average pooling, the application's preprocess_input inside the model
   as trainer.images.ImageEncoder runs it) learns self-supervised rotation prediction (Gidaris et
   al., ICLR 2018: which of 0/90/180/270 degrees was an image rotated by) on random square crops
   of scikit-learn's two bundled photos (china.jpg, flower.jpg: `load_sample_images`, offline),
   resized to the feature's size as RGB in [0, 255]. The crops come from the left two thirds of
   each photo; the pretext accuracy is measured on crops of the right third, never trained on.
   The application (no head) is saved with `save_weights` to an .h5 file: transfer from natural
   photos to handwritten digits, not ImageNet.
2. Quality: one TFX run (benchmarks.multihead.run_dataset), one Transform, three arms at each
   seed (benchmarks.pipelines.image_arm): `image:none` (random initialisation, everything trains:
   the config as shipped), `image:frozen` (the pretrained file, frozen), `image:finetune` (the
   file, frozen for half the epochs, then the top layers at a tenth of the learning rate). Every
   head's metrics on the test split, Trainer wall time, parameters.
3. Cost on the CPU, each in its own process so that each peak memory is its own
   (`train-rate`, `serve-rate`): training images/s with the frozen and with the trainable
   application (the Trainer's input function on Transform's output, images decoded in it, and
   the Trainer's model; the median of per-step rates after a warm-up that pays the tracing), and
   `examples` signature images/s in process on 1 and on 64 serialized tf.Examples holding the
   digits' PNG bytes (decoding included; the median of timed calls after warm-up).

Children: python -m benchmarks.images {pretrain,train-rate,serve-rate} ... --result R.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

from benchmarks import common
from benchmarks import pipelines as bench_pipelines
from headwise import contract

# benchmarks.multihead (TFX, TFMA) is imported where it is used: the measured children import
# only what they measure, so that their peak memory is theirs.

CONFIG = "pipeline/configs/digits.yaml"
ARMS = tuple(f"image:{a}" for a in bench_pipelines.IMAGE_ARMS)
ARM_LABELS = {"image:none": "from scratch, all trainable: the shipped config",
              "image:frozen": "pretrained file, frozen",
              "image:finetune": "pretrained file, fine-tuned"}
WEIGHTS_NAME = "rotation_pretrained.h5"
PHOTOS = ("china.jpg", "flower.jpg")  # sklearn.datasets.load_sample_images, in this order
ROTATIONS = 4  # 0, 90, 180, 270 degrees counterclockwise: the label is the multiple of 90
HELD_OUT_SHARE = 1 / 3  # the right third of each photo: pretext accuracy only, never trained on
MIN_SIDE = 16  # crop sides in pixels, log-uniform from here to the held-out strip's width


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much of each measurement a mode runs."""

    crops: int  # training crops, plus as many mirrored copies
    held_out_crops: int
    pretext_steps: int  # batches of 16 crops x 4 rotations
    train_steps: int | None  # the quality Trainers' budget; None: the config's
    rate_warmup: int  # training steps before the timed ones (tracing)
    rate_steps: int
    serve_warmup: int
    serve_calls: int


FULL = Settings(crops=1024, held_out_crops=256, pretext_steps=1200, train_steps=None,
                rate_warmup=10, rate_steps=60, serve_warmup=10, serve_calls=100)
QUICK = Settings(crops=128, held_out_crops=64, pretext_steps=40, train_steps=100,
                 rate_warmup=3, rate_steps=10, serve_warmup=3, serve_calls=20)
PRETEXT_LEARNING_RATE = 2e-3  # Adam, cosine decay to 0 over the steps
PRETEXT_CROPS_PER_BATCH = 16  # x ROTATIONS = 64 images per step, as the digits config's batch
PRETEXT_SEED = 0
SERVE_BATCHES = (1, 64)


# ------------------------------------------------------------------ pretext data (pure numpy)


def split_columns(width: int, held_out: float = HELD_OUT_SHARE
                  ) -> tuple[tuple[int, int], tuple[int, int]]:
    """(training columns, held-out columns) of a photo `width` pixels wide: [0, cut), [cut,
    width), the held-out strip on the right."""
    cut = int(round(width * (1 - held_out)))
    return (0, cut), (cut, width)


def crop_boxes(height: int, columns: tuple[int, int], n: int, min_side: int, max_side: int,
               rng: np.random.Generator) -> np.ndarray:
    """n square boxes [n, 3] (top, left, side) inside rows [0, height) and `columns`; sides
    log-uniform in [min_side, max_side], capped by the region."""
    c0, c1 = columns
    hi = min(max_side, height, c1 - c0)
    if not 1 <= min_side <= hi:
        raise ValueError(f"crop sides [{min_side}, {max_side}] do not fit a {height} x "
                         f"{c1 - c0} region")
    sides = np.rint(np.exp(rng.uniform(np.log(min_side), np.log(hi), n))).astype(int)
    sides = np.clip(sides, min_side, hi)
    tops = rng.integers(0, height - sides + 1)
    lefts = c0 + rng.integers(0, c1 - c0 - sides + 1)
    return np.stack([tops, lefts, sides], axis=1)


def max_crop_side(photos: list[np.ndarray]) -> int:
    """The largest crop side: the narrowest held-out strip's width, so that training and
    held-out crops come from one distribution of sizes."""
    c0, c1 = split_columns(min(p.shape[1] for p in photos))[1]
    return min(c1 - c0, *(p.shape[0] for p in photos))


def crops(photos: list[np.ndarray], n: int, held_out: bool, size: tuple[int, int],
          channels: int, rng: np.random.Generator) -> np.ndarray:
    """n crops uint8 [n, height, width, channels] from photos chosen at random: a random square
    of the training (or held-out) columns, resized to `size` as trainer.images.decode would
    hand the model an image of that size (PIL's bilinear resize, which also averages when it
    shrinks, so a large crop is not aliased noise)."""
    from PIL import Image

    max_side = max_crop_side(photos)
    which = rng.integers(0, len(photos), n)
    out = np.empty((n, *size, channels), np.uint8)
    for p, photo in enumerate(photos):
        index = np.flatnonzero(which == p)
        columns = split_columns(photo.shape[1])[1 if held_out else 0]
        boxes = crop_boxes(photo.shape[0], columns, len(index), MIN_SIDE, max_side, rng)
        for i, (top, left, side) in zip(index, boxes, strict=True):
            image = Image.fromarray(photo[top:top + side, left:left + side])
            image = image.convert("L" if channels == 1 else "RGB")
            image = image.resize((size[1], size[0]), Image.BILINEAR)
            out[i] = np.asarray(image).reshape(*size, channels)
    return out


def rotations(images: np.ndarray) -> np.ndarray:
    """[n, s, s, c] -> [n, 4, s, s, c]: [:, k] is each image rotated by k x 90 degrees
    counterclockwise (np.rot90), whose pretext label is k."""
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"rotation needs square images, got {images.shape[1:3]}")
    return np.stack([np.rot90(images, k, axes=(1, 2)) for k in range(ROTATIONS)], axis=1)


def rotation_labels(n: int) -> np.ndarray:
    """The labels of rotations(...) flattened to [n * 4]: 0, 1, 2, 3, 0, 1, ..."""
    return np.tile(np.arange(ROTATIONS), n)


# ------------------------------------------------------------------ arithmetic (pure)


def step_rates(step_ends: list[float], batch: int) -> dict[str, float]:
    """Training throughput from the end times (s) of consecutive steps, all after the warm-up:
    the median of the per-step rates batch / (t_i - t_(i-1)) (steady state; a slow step, such
    as Python's garbage collection, moves it little), and the rate over the whole window."""
    t = np.asarray(step_ends, float)
    if t.size < 2:
        raise ValueError("need the end times of at least two steps")
    dt = np.diff(t)
    return {"images_per_s": float(np.median(batch / dt)),
            "images_per_s_window": float(batch * dt.size / (t[-1] - t[0])),
            "step_ms_p50": float(np.median(dt) * 1e3), "steps": int(dt.size), "batch": batch}


def call_rates(call_s: list[float], batch: int) -> dict[str, float]:
    """Serving throughput from timed calls of `batch` examples each: images/s at the median
    call, and its latency percentiles (ms)."""
    p = common.percentiles(call_s)
    return {**p, "images_per_s": float(batch / np.median(call_s)), "batch": batch}


def arm_stats(quality: dict) -> dict[str, dict]:
    """Per arm: every head metric, Trainer wall seconds and the parameters as (mean, std over
    seeds); the main metric's verdict against `image:none` (from scratch) per head."""
    from benchmarks import multihead

    models = quality["models"]
    seeds = len(quality["seeds"])
    out: dict[str, dict] = {}
    for arm, per_seed in models.items():
        runs = list(per_seed.values())
        out[arm] = {
            "metrics": {h["name"]: {m: multihead._stats([r["metrics"][h["name"]][m]
                                                          for r in runs])
                                    for m in h["metrics"]}
                        for h in quality["heads"]},
            "train_s": multihead._stats([r["train_s"] for r in runs]),
            "params": multihead._stats([r["params"] for r in runs])}
    base = "image:none"
    for arm, s in out.items():
        if arm == base or base not in out:
            continue
        s["vs_none"] = {h["name"]: multihead.verdict(
            s["metrics"][h["name"]][h["main"]], out[base]["metrics"][h["name"]][h["main"]],
            _higher_is_better(h), seeds) for h in quality["heads"]}
    return out


def _higher_is_better(head: dict) -> bool:
    from headwise import tasks

    return tasks.get(head["task"]).metric(head["main"]).higher_is_better


# ------------------------------------------------------------------ the summary


def _pm(v: tuple[float, float] | list[float]) -> str:
    return "{:.4g} ± {:.2g}".format(*v)


def quality_table(results: dict) -> str:
    """One row per arm: each head metric (mean ± std; the main metric marked better / worse
    than from scratch beyond the seeds' noise), Trainer seconds, parameters."""
    q = results["quality"]
    stats = arm_stats(q)
    heads = q["heads"]
    header = ["arm"] + [f"{h['name']} {m}" for h in heads for m in h["metrics"]] + [
        "Trainer s", "parameters (total / trainable)"]
    rows = []
    for arm in q["variants"]:
        s = stats[arm]
        cells = []
        for h in heads:
            for m in h["metrics"]:
                mark = ""
                if m == h["main"] and "vs_none" in s:
                    mark = {"better": " **better**", "worse": " worse"}.get(
                        s["vs_none"][h["name"]], "")
                cells.append(_pm(s["metrics"][h["name"]][m]) + mark)
        p = results.get("params", {}).get(arm)
        params = f"{p['total']:,} / {p['trainable']:,}" if p else f"{s['params'][0]:,.0f}"
        rows.append([f"{arm} ({ARM_LABELS.get(arm, arm)})"] + cells + [_pm(s["train_s"]),
                                                                        params])
    return common.md_table(header, rows)


def cost_table(results: dict) -> str:
    t = results["throughput"]
    rows = []
    for key, label in (("frozen", "train, frozen application (pretrained file)"),
                       ("trainable", "train, trainable application (from scratch)")):
        r = t["train"][key]
        rows.append([label, r["batch"], r["images_per_s"], r["step_ms_p50"],
                     r["peak_rss_mib"]])
    for r in sorted(t["serve"].values(), key=lambda v: v["batch"]):
        rows.append([f"serve `examples` in process, {r['batch']} PNG example"
                     + ("s" if r["batch"] > 1 else ""), r["batch"], r["images_per_s"],
                     r["p50_ms"], r["peak_rss_mib"]])
    return common.md_table(["measurement", "batch", "images/s", "p50 ms (step or call)",
                            "peak RSS MiB"], rows)


def summary(results: dict) -> str:
    q, p = results["quality"], results["pretrain"]
    m = results.get("machine", {})
    quick = results.get("mode") == "quick"
    text = ("**What \"pretrained\" means here:** no ImageNet (not on this machine, nothing is "
            f"downloaded). The config's {p['application']} (alpha {p['alpha']}, "
            f"{p['size'][0]}x{p['size'][1]} {'grey' if p.get('channels') == 1 else 'RGB'}, "
            "no top) was trained here on self-supervised "
            "rotation prediction (which of 0/90/180/270 degrees; Gidaris et al., ICLR 2018) on "
            f"{p['train_examples']:,} examples ({p['train_crops']:,} random crops of "
            f"scikit-learn's two bundled photos, {', '.join(PHOTOS)}, half of them mirrored "
            f"copies, each in the 4 rotations), {p['steps']} steps of {p['batch']}, in "
            f"{p['train_s']:.0f} s"
            + (f" (the process: {p['wall_s']:.0f} s, peak {p['peak_rss_mib']:,.0f} MiB)"
               if "wall_s" in p else "")
            + ": transfer from two natural photos to handwritten digits. "
            f"Pretext accuracy on crops of the photos' right third, never trained on: "
            f"**{p['held_out_accuracy']:.3f}** (chance 0.25; {p['held_out_examples']:,} "
            f"examples); on its training crops {p['train_accuracy']:.3f}.\n\n")
    if quick:
        text += ("(quick mode: one seed, short training: a smoke check, not numbers. A "
                 f"{p['steps']}-step pretext file is close to its random initialisation, and "
                 "batch normalisation on its statistics gives the frozen arms nearly constant "
                 "features: they learn little here.)\n\n")
    text += (f"Quality on the {q['split']} split of `{results['config']}`, mean ± std over seeds "
             f"{q['seeds']} ({q['train_steps']} steps, early stopping as configured; one "
             "Transform, the three arms trained in one TFX run). **better**/worse: the main "
             "metric beyond the seeds' noise (the larger std) against from scratch. Trainer s: "
             "the Trainer component's wall time (ML Metadata; its export included). Parameters "
             "of the first seed's SavedModel (trainable: what the Trainer ended with):\n\n")
    text += quality_table(results)
    text += ("\n\nCost on the CPU, each measurement in its own process (peak RSS of that "
             f"process), on {m.get('cpus', '?')} CPUs ({m.get('processor', '?')}, "
             f"{m.get('platform', '?')}). Training: the Trainer's input function (PNG decode "
             "included) and model, median of per-step rates after a warm-up; serving: the "
             "`image:none` model of the first seed (every arm serves the same graph), median "
             "call:\n\n")
    text += cost_table(results)
    return text


# ------------------------------------------------------------------ children (TensorFlow)


def pretrain(config: str, out: str, s: Settings, seed: int = PRETEXT_SEED) -> dict:
    """Rotation pretext training of the config's application; saves its weights (no head) to
    `out` and checks that the Trainer's loader reads them back."""
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.datasets import load_sample_images

    from headwise import config as config_lib
    from headwise.config.model import NO_WEIGHTS
    from trainer import images as images_lib

    cfg = config_lib.load(config)
    feature = cfg.image_features[0]
    image = dataclasses.replace(cfg.model.image, weights=NO_WEIGHTS, trainable=True,
                                fine_tune=None)
    sample = load_sample_images()
    names = [os.path.basename(f) for f in sample.filenames]
    photos = [sample.images[names.index(n)] for n in PHOTOS]
    rng = np.random.default_rng(seed)
    train = crops(photos, s.crops, False, feature.size, feature.channels, rng)
    train = np.concatenate([train, train[:, :, ::-1]])  # mirrored copies: upright stays upright
    held = crops(photos, s.held_out_crops, True, feature.size, feature.channels, rng)
    train4, held4 = rotations(train), rotations(held)

    keras.utils.set_random_seed(seed)
    app = images_lib.load_application(image, feature)
    # As the Trainer builds it from scratch: Keras's 0.999 would leave the moving statistics
    # near their initial values after a thousand steps, and the frozen arm runs batch
    # normalisation on exactly these statistics.
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = images_lib.SCRATCH_BN_MOMENTUM
    inputs = keras.Input((*feature.size, feature.channels), dtype=tf.float32)
    x = images_lib.APPLICATIONS[image.application][1](inputs)
    outputs = keras.layers.Dense(ROTATIONS, activation="softmax", name="rotation")(app(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
                      PRETEXT_LEARNING_RATE, s.pretext_steps)),
                  "sparse_categorical_crossentropy", ["accuracy"])

    k = PRETEXT_CROPS_PER_BATCH
    shape = (*feature.size, feature.channels)
    ds = (tf.data.Dataset.from_tensor_slices(train4).shuffle(len(train4), seed=seed).repeat()
          .batch(k, drop_remainder=True)
          .map(lambda b: (tf.cast(tf.reshape(b, (-1, *shape)), tf.float32),
                          tf.constant(rotation_labels(k))))
          .prefetch(2))
    start = time.perf_counter()
    history = model.fit(ds, steps_per_epoch=s.pretext_steps, epochs=1, verbose=0)
    train_s = time.perf_counter() - start

    def accuracy(x4: np.ndarray) -> float:  # inference mode: the moving statistics
        x = x4.reshape(-1, *shape).astype(np.float32)
        return float(model.evaluate(x, rotation_labels(len(x4)), batch_size=256,
                                    verbose=0)[1])

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    app.save_weights(out)
    images_lib.load_application(dataclasses.replace(image, weights=out), feature, out)
    return {"application": image.application, "alpha": image.alpha,
            "size": list(feature.size), "channels": feature.channels, "photos": list(PHOTOS),
            "task": "rotation 0/90/180/270", "seed": seed, "steps": s.pretext_steps,
            "batch": k * ROTATIONS, "learning_rate": PRETEXT_LEARNING_RATE,
            "crop_sides": [MIN_SIDE, max_crop_side(photos)],
            "train_crops": len(train), "train_examples": len(train) * ROTATIONS,
            "held_out_crops": len(held), "held_out_examples": len(held) * ROTATIONS,
            "held_out": "crops of the right third of each photo, never trained on",
            "train_s": train_s, "final_loss": float(history.history["loss"][-1]),
            "held_out_accuracy": accuracy(held4),
            "train_accuracy": accuracy(train4[:s.held_out_crops]),
            "weights_file": os.path.abspath(out), "weights_bytes": os.path.getsize(out)}


class _Accessor:
    """What the Trainer's fn_args.data_accessor does for Transform's tf.Example output."""

    @staticmethod
    def tf_dataset_factory(file_pattern, options, schema):
        from tfx_bsl.public import tfxio

        return tfxio.TFExampleRecord(file_pattern, schema=schema).TensorFlowDataset(options)


def train_rate(config: str, arm: str, weights: str | None, transform_graph: str,
               transformed_examples: str, s: Settings, seed: int = 1) -> dict:
    """Training images/s of an arm's model on Transform's train split, through the Trainer's
    own input function and model."""
    import tensorflow_transform as tft
    import tf_keras as keras

    from headwise import config as config_lib
    from headwise.config import data as data_config
    from trainer import model as model_lib
    from trainer import run as run_lib

    cfg = bench_pipelines.variant_config(config_lib.load(config), arm, seed,
                                         image_weights=weights)
    tft_output = tft.TFTransformOutput(transform_graph)
    cfg = cfg.with_learned_classes(run_lib.learned_classes(cfg, tft_output))
    keras.utils.set_random_seed(seed)
    batch = cfg.trainer.batch_size
    files = [os.path.join(transformed_examples, f"Split-{data_config.TRAIN}", "*")]
    ds = run_lib.input_fn(files, _Accessor(), tft_output, cfg, batch)
    model = model_lib.build_model(cfg, model_lib.feature_cardinalities(cfg, tft_output),
                                  model_lib.regression_stats(cfg, tft_output))

    class StepEnds(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    callbacks = list(model.balancing_callbacks())
    model.fit(ds, steps_per_epoch=s.rate_warmup, epochs=1, verbose=0, callbacks=callbacks)
    ends = StepEnds()
    model.fit(ds, steps_per_epoch=s.rate_steps + 1, epochs=1, verbose=0,
              callbacks=[*callbacks, ends])
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {**step_rates(ends.ends, batch), "arm": arm, "warmup_steps": s.rate_warmup,
            "params": int(model.count_params()), "trainable_params": trainable}


def serving_examples(config: str, model_dir: str, n: int) -> list[bytes]:
    """n serialized tf.Examples as a client sends them: the first n rows of the config's CSV
    with each image feature's PNG bytes read from data.images (headwise.examples)."""
    import csv
    import itertools

    from headwise import config as config_lib
    from headwise import examples as examples_lib

    cfg = config_lib.load(config)
    info = examples_lib.read_model_info(model_dir)
    with open(cfg.resolve_data(), newline="", encoding="utf-8") as fh:
        rows = list(itertools.islice(csv.DictReader(fh), n))
    return examples_lib.to_examples(rows, info["features"], info.get("images", {}),
                                    base_dir=cfg.resolve_images_dir())


def serve_rate(config: str, model_dir: str, batch: int, s: Settings) -> dict:
    """The `examples` signature's images/s in process on `batch` serialized PNG examples."""
    import tensorflow as tf

    serialized = serving_examples(config, model_dir, batch)
    start = time.perf_counter()
    loaded = tf.saved_model.load(model_dir)  # kept: its signatures do not hold it alive
    fn = loaded.signatures[contract.EXAMPLES_SIGNATURE]
    load_s = time.perf_counter() - start
    x = tf.constant(serialized)
    calls = common.time_calls(lambda: fn(examples=x), s.serve_calls, warmup=s.serve_warmup)
    return {**call_rates(calls, batch), "load_s": load_s,
            "example_bytes_mean": float(np.mean([len(e) for e in serialized]))}


def saved_params(model_dir: str) -> dict[str, int]:
    """All and trainable parameters of an exported model."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)

    def count(variables) -> int:
        return int(sum(np.prod(v.shape) for v in variables))
    # The model's own variables (Keras saves them as attributes of the model object), not the
    # signatures' and the Transform layer's.
    return {"total": count(loaded.variables), "trainable": count(loaded.trainable_variables)}


# ------------------------------------------------------------------ orchestration


def _child(task: list[str], out_dir: str, name: str) -> dict:
    """Run `python -m benchmarks.images <task>` measured; its result with the process's wall
    seconds and peak RSS."""
    os.makedirs(out_dir, exist_ok=True)
    result = os.path.join(out_dir, f"{name}.json")
    measured = common.run_measured(
        [common.python(), "-m", "benchmarks.images", *task, "--result", result],
        env=common.child_env(), cwd=common.ROOT, log_path=os.path.join(out_dir, f"{name}.log"))
    with open(result, encoding="utf-8") as fh:
        out = json.load(fh)
    return {**out, "wall_s": measured["wall_s"], "peak_rss_mib": measured["peak_rss_mib"]}


def run(work_dir: str, seeds: list[int], quick: bool) -> dict:
    from benchmarks import multihead
    from headwise import config as config_lib
    from headwise import datasets
    from pipeline import summary as summary_lib

    s = QUICK if quick else FULL
    mode = "quick" if quick else "full"
    datasets.write_digits(os.path.join(common.ROOT, datasets.DIGITS_DIR))  # no-op when there
    config = os.path.join(common.ROOT, CONFIG)
    config_lib.load(config)
    os.makedirs(work_dir, exist_ok=True)
    pre_dir = os.path.join(work_dir, "pretrain")
    weights = os.path.join(pre_dir, WEIGHTS_NAME)
    print(f"  pretraining {WEIGHTS_NAME}: rotation prediction on crops of {', '.join(PHOTOS)} "
          f"({s.pretext_steps} steps; log: {pre_dir}/pretrain.log) ...", flush=True)
    pre = _child(["pretrain", "--config", config, "--out", weights, "--mode", mode],
                 pre_dir, "pretrain")
    print(f"    held-out rotation accuracy {pre['held_out_accuracy']:.3f} (chance 0.25), "
          f"{pre['train_s']:.0f} s training, peak {pre['peak_rss_mib']:,.0f} MiB", flush=True)

    quality_dir = os.path.join(work_dir, "quality")
    quality = multihead.run_dataset(config, quality_dir, seeds, s.train_steps, list(ARMS),
                                    serving=False, image_weights=weights)
    params = {arm: saved_params(quality["models"][arm][seeds[0]]["model_dir"]) for arm in ARMS}

    runs = summary_lib.component_runs(bench_pipelines.metadata_path(quality_dir),
                                      bench_pipelines.PIPELINE_NAME)
    transform = runs["Transform"].outputs
    rate_dir = os.path.join(work_dir, "rates")
    train = {}
    for key, arm in (("frozen", "image:frozen"), ("trainable", "image:none")):
        print(f"  training throughput, {key} application ...", flush=True)
        train[key] = _child(["train-rate", "--config", config, "--arm", arm, "--weights",
                             weights, "--transform-graph", transform["TransformGraph"][0],
                             "--examples", transform["Examples"][0], "--mode", mode],
                            rate_dir, f"train_{key}")
        print(f"    {train[key]['images_per_s']:,.0f} images/s, peak "
              f"{train[key]['peak_rss_mib']:,.0f} MiB", flush=True)
    serve_dir = quality["models"]["image:none"][seeds[0]]["model_dir"]
    serve = {}
    for batch in SERVE_BATCHES:
        print(f"  serving throughput, {batch} example(s) per call ...", flush=True)
        serve[f"batch{batch}"] = r = _child(
            ["serve-rate", "--config", config, "--model-dir", serve_dir, "--batch", str(batch),
             "--mode", mode], rate_dir, f"serve_{batch}")
        print(f"    {r['images_per_s']:,.0f} images/s (p50 {r['p50_ms']:.1f} ms), peak "
              f"{r['peak_rss_mib']:,.0f} MiB", flush=True)
    return {"config": CONFIG, "mode": mode, "machine": common.machine(),
            "settings": dataclasses.asdict(s), "pretrain": pre, "quality": quality,
            "params": params, "arms": arm_stats(quality),
            "throughput": {"train": train, "serve": serve, "serve_model_dir": serve_dir}}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.images")
    sub = parser.add_subparsers(dest="task", required=True)
    pre = sub.add_parser("pretrain")
    pre.add_argument("--out", required=True, help="the .h5 weights file to write")
    rate = sub.add_parser("train-rate")
    rate.add_argument("--arm", required=True, choices=ARMS)
    rate.add_argument("--weights")
    rate.add_argument("--transform-graph", required=True)
    rate.add_argument("--examples", required=True, help="Transform's transformed examples")
    serve = sub.add_parser("serve-rate")
    serve.add_argument("--model-dir", required=True)
    serve.add_argument("--batch", type=int, required=True)
    for p in (pre, rate, serve):
        p.add_argument("--config", default=os.path.join(common.ROOT, CONFIG))
        p.add_argument("--mode", choices=["full", "quick"], default="full")
        p.add_argument("--result", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    s = QUICK if args.mode == "quick" else FULL
    if args.task == "pretrain":
        out = pretrain(args.config, args.out, s)
    elif args.task == "train-rate":
        out = train_rate(args.config, args.arm, args.weights, args.transform_graph,
                         args.examples, s)
    else:
        out = serve_rate(args.config, args.model_dir, args.batch, s)
    with open(args.result, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
