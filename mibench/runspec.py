"""What one run is: ``RunSpec``, its identity (the run id) and the seam to its kind of estimator.

A run's identity (``RunSpec.run_id``) is what is trained and evaluated. The grids a run
belongs to are labels, and output options (``save_model``, ``log_every``) do not make a run new:
two grids that meet on one configuration train it once. Rows of an older schema get the id
their spec has now (``upgrade_row``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol

from .distributions import TASK_FAMILIES
from .estimators import EstimatorSpec
from .results import PROTOCOL_DEFAULTS, SCHEMA_VERSION
from .sample import SampleSpec

# Run options added after the first results were recorded: they enter the identity only when set,
# so adding an option leaves the ids of existing runs as they were.
_IDENTITY_WHEN_SET = {"batch_seeds": False, "precision": "fp32", "n_samples": None, "eval_n_samples": None,
                      **PROTOCOL_DEFAULTS}


class RunEstimator(Protocol):
    """The seam between a run and its kind: what each estimator spec of a run implements.

    ``EstimatorSpec`` (a critic trained by mibench's loop, mibench's or another library's) and
    ``SampleSpec`` (one estimate on a sample) are the two kinds; ``mibench.runner.RUNNERS`` runs
    each ``kind``. A spec says which fields of its run make the run what it is (``RUN_FIELDS``,
    beside the task, the seed-independent options set away from their defaults, and its own
    ``identity``) and which columns of the row it fills (``row_columns``)."""

    kind: ClassVar[str]
    RUN_FIELDS: ClassVar[tuple[str, ...]]

    def to_dict(self) -> dict[str, Any]: ...

    def identity(self, batch_size: int | None) -> dict[str, Any]: ...

    def row_columns(self, run: "RunSpec") -> dict[str, Any]: ...

    def n_negatives(self, batch_size: int) -> int: ...


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run, plus the labels it carries; plain values throughout
    so that it round-trips through JSON. ``steps`` is final (epochs are converted in ``expand``).
    The training fields are None for a run that trains nothing (a sample estimator's)."""

    preset: str
    grids: tuple[str, ...]              # labels: the grids of the preset this run belongs to
    family: str
    task_params: tuple[tuple[str, Any], ...]
    estimator: EstimatorSpec | SampleSpec   # the kind of run (``RunEstimator``) and what it estimates with
    device: str
    seed: int
    batch_size: int | None = None
    steps: int | None = None
    lr: float | None = None
    eval_batches: int | None = None
    eval_batch_size: int | None = None
    log_every: int | None = None        # output: how often the training estimate is traced
    staircase: tuple[float, ...] = ()   # MI levels (nats) stepped through evenly over the steps
    epochs: float | None = None         # label: the budget as given, when given in epochs
    save_model: bool = False            # output: keep the weights (and embeddings) of the run
    batch_seeds: bool = False           # train with its sibling seeds as one batched model
    precision: str = "fp32"             # "bf16": the training forward under bfloat16 autocast
    n_samples: int | None = None        # train on a fixed sample of this many pairs (else a stream)
    eval_n_samples: int | None = None   # ... and estimate on a fixed held-out sample of this many
    # The training protocol: evaluate on the held-out data every eval_every steps, stop after
    # patience evaluations in a row without a new best, report the "final" or the "best" estimate
    eval_every: int | None = None
    patience: int | None = None
    report: str = "final"
    standardize: bool = False           # standardise both fixed samples with their union's statistics
    batches: str = "epochs"             # how batches come from a fixed sample: "epochs" or "independent"

    @property
    def grid(self) -> str:
        return self.grids[0] if self.grids else ""

    @property
    def n_negatives(self) -> int:
        return self.estimator.n_negatives(self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(grids=list(self.grids), task_params=dict(self.task_params), estimator=self.estimator.to_dict(),
                 staircase=list(self.staircase))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        """The inverse of ``to_dict``; also reads the specs of rows written before schema 2
        (one ``grid`` label, bound options of every bound in the estimator table)."""
        d = dict(d)
        grids = d.pop("grids", None)
        grid = d.pop("grid", "")
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        est = dict(d["estimator"])
        est = SampleSpec.from_dict(est) if est.get("kind") == "sample" else EstimatorSpec.from_dict(est)
        return cls(**{**d, "grids": tuple(grids if grids is not None else [grid]),
                      "task_params": tuple(sorted(dict(d["task_params"]).items())),
                      "estimator": est,
                      "staircase": tuple(d.get("staircase", ()))})

    def identity(self) -> dict[str, Any]:
        """What is trained and evaluated: the run id hashes this and nothing else. The task,
        the estimator's own identity, the run fields its kind names (``RunEstimator``) and the
        options added over time where they differ from their defaults."""
        est = self.estimator
        ident = {"family": self.family, "task_params": dict(self.task_params), "estimator": est.identity(self.batch_size)}
        for name in est.RUN_FIELDS:
            value = getattr(self, name)
            ident[name] = list(value) if isinstance(value, tuple) else value
        ident.update({k: getattr(self, k) for k, default in _IDENTITY_WHEN_SET.items()
                      if getattr(self, k) != default})
        return ident

    @property
    def run_id(self) -> str:
        """A hash of ``identity()``: the same run has the same id on every machine, every time."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def level_params(self) -> list[dict[str, Any]]:
        """The task parameters trained on: one set per staircase level, else the task's own
        (``TaskFamily.level_params``)."""
        return TASK_FAMILIES[self.family].level_params(dict(self.task_params), self.staircase)


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the current schema identifies it: rows written before schema 2 get the run id
    their spec has now (and keep the old one as ``run_id_v1``)."""
    if row.get("schema_version", 1) >= SCHEMA_VERSION or not isinstance(row.get("spec"), Mapping):
        return row
    try:
        new_id = RunSpec.from_dict(row["spec"]).run_id
    except (KeyError, TypeError, ValueError, AttributeError):     # a spec that is not one: the id it has
        return row
    return {**row, "run_id": new_id, "run_id_v1": row["run_id"]}
