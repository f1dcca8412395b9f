"""What part of the config crosses into which TFX component.

`Scope.FULL` is the whole config: the data gate and the Evaluator read it. `Scope.TRAINING` is
what Transform and Trainer read: the config without the keys in `TRAINING_EXCLUDED`. TFX caches
Transform and Trainer on their inputs, so everything that is not in the training scope can be
edited without re-running them (editing a gate must not retrain).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping

from headwise import gates


class Scope(str, enum.Enum):
    TRAINING = "training"  # Transform and Trainer: no gates, no data contract, no push settings
    FULL = "full"  # everything: the data gate and the Evaluator

    def covers(self, other: Scope) -> bool:
        """Whether a config of this scope holds everything that `other` needs."""
        return self is Scope.FULL or self is other


class _Excluded(Mapping[str, str]):
    """TRAINING_EXCLUDED: computed on each read, so that the gates' keys are the gate
    registry's."""

    def _paths(self) -> dict[str, str]:
        per_metric = [g.title for g in gates.GATES.values() if g.keys]
        return {
            "heads[*].thresholds": f"Evaluator: the gates set per metric ({', '.join(per_metric)})",
            "heads[*].gate": "Evaluator: whether the head's gates block the push",
            **{f"heads[*].{k}": f"Evaluator: the {g.title} gate"
               for g in gates.GATES.values() for k in g.head_keys},
            **_OTHERS}

    def __getitem__(self, path: str) -> str:
        return self._paths()[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths())

    def __len__(self) -> int:
        return len(self._paths())

    def __repr__(self) -> str:
        return repr(self._paths())


_OTHERS: Mapping[str, str] = {
    "validation": "the data contract: ImportSchemaGen (the curated schema path; Transform gets "
                  "the schema as an artifact), `headwise schema` (the slacks) and "
                  "DataValidationGate (drift, skew, skew_min_examples)",
    "evaluation": "Evaluator: the slices its metrics are also computed on",
    "serving": "Pusher and deployment: the served model's name, the versions kept",
    "beam_args": "runners: every Beam component's beam_pipeline_args, never read from the "
                 "config by user code",
    "scoring": "BatchScoring: the rows scored with every head after a push",
}

#: The config keys that no code run by Transform or Trainer (trainer/, headwise/) reads, as paths
#: into the YAML form (`heads[*].x`: key x of every head), with who reads them instead. `to_raw`
#: leaves them out of a TRAINING-scope config, and `from_json` refuses a TRAINING-scope payload
#: that carries one. Keys that stay: name (the Keras model's and model_info's name), data.csv (a
#: required key; the data itself reaches Transform as examples), features, heads (but for the
#: ones below), model, trainer. A key may be added here only once nothing under trainer/ or the
#: headwise modules that trainer/ imports reads its PipelineConfig field. The gates' keys come
#: from the gate registry (`headwise.gates.GATES`), read each time: a new gate's keys are
#: excluded without being listed here.
TRAINING_EXCLUDED: Mapping[str, str] = _Excluded()
