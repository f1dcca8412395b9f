"""A Trainer module for the infra check's tests: the real `trainer.run.run_fn`, after which one
signature of the exported model gets another method name. TFMA computes its metrics all the
same (it runs the model's own functions), so the Evaluator blesses the model; TF Serving's
Classify and Regress refuse the signature ("Expected classification signature method_name to
be ..."), as they would a model exported by hand with the wrong SignatureDef."""

from __future__ import annotations

import os

from headwise import contract

SAVED_MODEL = "saved_model.pb"


def corrupt_method(model_dir: str, signature: str | None = None,
                   method: str = contract.PREDICT_METHOD) -> str:
    """Give `signature` (default: the first classify_/regress_ signature, by name) the method
    `method`, in place; returns the signature's name."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(model_dir, SAVED_MODEL)
    with open(path, "rb") as fh:
        saved = saved_model_pb2.SavedModel.FromString(fh.read())
    signatures = saved.meta_graphs[0].signature_def
    signature = signature or min(s for s in signatures if s.startswith(
        (contract.CLASSIFY_PREFIX, contract.REGRESS_PREFIX)))
    signatures[signature].method_name = method
    with open(path, "wb") as fh:
        fh.write(saved.SerializeToString())
    return signature


def run_fn(fn_args) -> None:
    from trainer import run as run_lib

    run_lib.run_fn(fn_args)
    corrupt_method(fn_args.serving_model_dir)
