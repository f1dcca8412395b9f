"""TFX Trainer entry point: `run_fn` trains the multi-head model on Transform's output and
exports it (see trainer.export for the signatures)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from headwise import config as config_lib
from headwise import contract
from headwise.config import model as model_config
from trainer import callbacks as callbacks_lib
from trainer import export as export_lib
from trainer import heads as heads_lib
from trainer import model as model_lib


def _as_matrix(label: tf.Tensor) -> tf.Tensor:
    """[batch] -> [batch, 1]; a multilabel head's [batch, classes] stays as it is."""
    return label[:, None] if label.shape.rank == 1 else label


def input_fn(file_pattern, data_accessor, tft_output: tft.TFTransformOutput,
             cfg: config_lib.PipelineConfig, batch_size: int) -> tf.data.Dataset:
    """Batches of (features, {head: label}, {head: weight}); repeats forever, shuffled."""
    ds = data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle_seed=cfg.trainer.seed),
        tft_output.transformed_metadata.schema)

    def split(t):
        labels = {h.name: _as_matrix(t[heads_lib.label_key(h.name)]) for h in cfg.heads}
        weights = {h.name: t[heads_lib.weight_key(h.name)] for h in cfg.heads}
        return export_lib.model_features(cfg, t), labels, weights

    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def count_records(file_patterns: list[str]) -> int:
    """Examples in Transform's gzipped TFRecord files (the split sizes the budget is planned
    from; a count, no parsing: about a second per 100k examples)."""
    files = [f for p in file_patterns for f in tf.io.gfile.glob(p)]
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=4)
    return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def learned_classes(cfg: config_lib.PipelineConfig, tft_output: tft.TFTransformOutput
                    ) -> dict[str, list[str]]:
    """The classes Transform learned for each head that learns them, in output order."""
    return {h.name: [v.decode("utf-8") if isinstance(v, bytes) else v
                     for v in tft_output.vocabulary_by_name(contract.classes_vocabulary(h.name))]
            for h in cfg.heads if h.learns_classes}


def _strategy(name: str) -> tf.distribute.Strategy:
    """The Trainer's distribution strategy (deploy config); `none` trains on one device."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _sharded(ds: tf.data.Dataset, file_patterns: list[str],
             strategy: tf.distribute.Strategy) -> tf.data.Dataset:
    """How the workers split a dataset: by file where there is a file for each (tf.data's
    default), else by example (each reads every file and keeps its share): a small Transform
    output is a single file."""
    files = sum(len(tf.io.gfile.glob(p)) for p in file_patterns)
    if files >= strategy.num_replicas_in_sync:
        return ds
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


@contextlib.contextmanager
def _outputs(fn_args, chief: bool):
    """(serving_model_dir, model_run_dir) this process writes to. Every worker of a
    multi-worker run must save the model (saving runs collective ops), but only the chief
    writes the Trainer's outputs: the others save into a scratch folder that is removed after
    (TensorFlow's multi-worker guide, "Model saving and loading")."""
    if chief:
        yield fn_args.serving_model_dir, fn_args.model_run_dir
        return
    scratch = tempfile.mkdtemp(prefix="headwise-worker-")
    try:
        yield os.path.join(scratch, "model"), os.path.join(scratch, "run")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        # The executor checks that the model folder exists in every process: the chief writes
        # it on the same (shared) file system, maybe a moment later.
        tf.io.gfile.makedirs(fn_args.serving_model_dir)


TRAINING_SUMMARY = "training_summary.json"  # in the Trainer's ModelRun folder


def write_training_summary(model_run_dir: str, plan: model_config.Plan, history,
                           fit_seconds: float, heads_stopped: dict[str, int] | None = None
                           ) -> None:
    """What the Trainer did, next to its TensorBoard logs: the plan, the epochs it ran, the
    seconds spent in Keras's fit (the rest of the Trainer's time is fixed cost: start-up,
    reading Transform's output, building and exporting), and after which epoch each head that
    did stopped shaping the backbone (`trainer.head_stopping`)."""
    epochs_run = len((history.history if history is not None else {}).get("loss", []))
    out = {"plan": dataclasses.asdict(plan), "epochs_run": epochs_run,
           "fit_seconds": fit_seconds, "heads_stopped": dict(heads_stopped or {})}
    tf.io.gfile.makedirs(model_run_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, TRAINING_SUMMARY), "w") as fh:
        fh.write(json.dumps(out, indent=1))


def fine_tune(model: model_lib.MultiHeadModel, schedule, epochs: int,
              strategy: tf.distribute.Strategy, fit: dict):
    """`model.backbone.fine_tune`: `after_epochs` epochs with the image application frozen, then
    its top `layers` layers unfrozen and the rest of the epochs at the schedule's learning
    rate."""
    frozen = min(schedule.after_epochs, epochs)
    history = model.fit(epochs=frozen, **fit)
    if frozen >= epochs:
        logging.warning("model.backbone.fine_tune.after_epochs (%d) >= the run's %d epochs: "
                        "the image application stayed frozen", schedule.after_epochs, epochs)
        print(f"  fine-tune: after_epochs {schedule.after_epochs} >= {epochs} epochs in this "
              "run; the image application stayed frozen", flush=True)
        return history
    with strategy.scope():
        unfrozen = model_lib.unfreeze_images(model, schedule.layers)
        model_lib.compile_model(model, schedule.learning_rate, model.weight_decay)
    print(f"  fine-tune: epoch {frozen + 1}/{epochs} on, the top {schedule.layers} layers of "
          f"the image application train ({unfrozen:,} weights) at learning rate "
          f"{schedule.learning_rate:g}", flush=True)
    later = model.fit(initial_epoch=frozen, epochs=epochs, **fit)
    for key, values in later.history.items():
        history.history.setdefault(key, []).extend(values)
    return history


def run_fn(fn_args: FnArgs) -> None:
    # First: a multi-worker strategy configures the collective ops before any other TF op.
    strategy = _strategy(fn_args.custom_config.get("distribution_strategy", "none"))
    cfg = config_lib.from_json(fn_args.custom_config[config_lib.HEADS_CONFIG_KEY])
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    cfg = cfg.with_learned_classes(learned_classes(cfg, tft_output))
    keras.utils.set_random_seed(cfg.trainer.seed)
    train_rows = count_records(fn_args.train_files)
    schedule = cfg.model.image.fine_tune if cfg.model.image else None
    plan = model_config.plan(cfg.trainer, train_rows,
                             count_records(fn_args.eval_files), fn_args.train_steps or None,
                             fn_args.eval_steps or None, restarts=schedule is None)
    print(f"  training plan: {plan.why}; {plan.steps_per_epoch} steps per epoch, "
          f"{plan.validation_steps} validation batches, early stopping after "
          f"{plan.patience or 'no'} epochs without improvement", flush=True)
    batch = plan.batch_size
    train = input_fn(fn_args.train_files, fn_args.data_accessor, tft_output, cfg, batch)
    evals = input_fn(fn_args.eval_files, fn_args.data_accessor, tft_output, cfg, batch)

    stats = model_lib.regression_stats(cfg, tft_output)
    for head, s in stats.items():
        logging.info("head %s: label mean %.4g, std %.4g (from Transform)", head, s["mean"],
                     s["std"])
    if strategy.num_replicas_in_sync > 1:
        train, evals = (_sharded(ds, files, strategy) for ds, files in
                        ((train, fn_args.train_files), (evals, fn_args.eval_files)))
    # The chief (or the one process of a run without a cluster) writes the outputs.
    with _outputs(fn_args, strategy.extended.should_checkpoint) as (serving_model_dir,
                                                                     model_run_dir):
        with strategy.scope():
            model = model_lib.build_model(cfg, model_lib.feature_cardinalities(cfg, tft_output),
                                          stats, total_steps=plan.total_steps,
                                          train_rows=train_rows)

        epochs = plan.epochs
        criterion = callbacks_lib.StoppingCriterion({h.name: h.loss_weight for h in cfg.heads},
                                                    cfg.trainer.early_stopping_on)
        callbacks = [criterion,  # first: the callbacks after it see (and TensorBoard plots) it
                     keras.callbacks.TensorBoard(log_dir=model_run_dir),
                     callbacks_lib.EpochSummary([h.name for h in cfg.heads], epochs),
                     callbacks_lib.StopOnNonFinite(cfg),
                     *model.balancing_callbacks()]
        head_stopping = None
        if plan.patience and all(h.stoppable for h in model.heads.values()):
            head_stopping = callbacks_lib.HeadStopping([h.name for h in cfg.heads],
                                                       plan.patience, plan.epochs)
            callbacks.append(head_stopping)
        if plan.patience:
            # The shared backbone overfits small data; keep the weights of the best epoch. The
            # criterion is comparable across epochs under every balancing (StoppingCriterion).
            callbacks.append(callbacks_lib.RestartingEarlyStopping(
                plan.epochs, plan.cycles, monitor=criterion.KEY, patience=plan.patience,
                restore_best_weights=True, verbose=1))
            epochs = plan.epochs * plan.cycles
        fit = dict(x=train, steps_per_epoch=plan.steps_per_epoch,
                   validation_data=evals, validation_steps=plan.validation_steps, verbose=0,
                   callbacks=callbacks)
        started = time.monotonic()
        if schedule is None:
            history = model.fit(epochs=epochs, **fit)
        else:
            history = fine_tune(model, schedule, epochs, strategy, fit)
        write_training_summary(model_run_dir, plan, history, time.monotonic() - started,
                               head_stopping.stopped if head_stopping else {})
        export_lib.save(model, cfg, tft_output, serving_model_dir)
        logging.info("saved the %d-head model to %s", len(cfg.heads),
                     os.path.abspath(serving_model_dir))
        if strategy.num_replicas_in_sync > 1:
            print(f"  trained with {strategy.num_replicas_in_sync} replicas in sync "
                  f"({fn_args.custom_config.get('distribution_strategy')})", flush=True)
