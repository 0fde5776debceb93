"""The training protocol of a neural run: held-out evaluations every ``eval_every`` steps,
early stopping after ``patience`` evaluations without a new best (``EarlyStopping``), and which
held-out estimate a run reports, the "final" one or the "best"; with the data options of a fixed
sample (``standardize``, ``batches``). ``protocol_options`` checks them as [train] keys.

BMI's protocol (benchmark-mi's neural estimators) is ``eval_every = 250``, ``patience = 2``,
``report = "best"``, ``standardize = true`` and ``batches = "independent"``, on fixed samples
(``n_samples``). By default mibench trains its whole budget and reports the final estimate.
"""

from __future__ import annotations

from typing import Any, Mapping

from .finite import BATCH_DRAWS
from .interface import ConfigError

REPORTS = ("final", "best")


class EarlyStopping:
    """The training protocol's stopping rule, BMI's (benchmark-mi's TrainingLog): held-out
    estimates arrive one evaluation at a time; the first is the best so far, and a later one is
    a new best only when it is strictly greater than the best (an equal value is not, nor is a
    NaN, which compares false). After ``patience`` evaluations in a row without a new best,
    training stops: BMI's rule is ``patience = 2``. ``patience = None`` never stops, and still
    keeps the best.
    """

    def __init__(self, patience: int | None = None):
        self.patience = patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.since_best = 0             # evaluations since the best

    def update(self, step: int, value: float) -> bool:
        """Record the held-out ``value`` measured after ``step`` steps; True when training
        stops here."""
        if self.best is None or value > self.best:
            self.best, self.best_step, self.since_best = value, step, 0
        else:
            self.since_best += 1
        return self.stopped

    @property
    def stopped(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience


def protocol_options(train: Mapping[str, Any], staircase: tuple[float, ...], where: str) -> dict[str, Any]:
    """The training protocol's [train] keys, checked: ``eval_every`` (steps between held-out
    evaluations), ``patience`` (early stopping), ``report`` ("final" or "best"), and the data
    options of a fixed sample, ``standardize`` and ``batches``. BMI's protocol is eval_every =
    250, patience = 2, report = "best", standardize = true, batches = "independent"."""
    eval_every, patience = train.get("eval_every"), train.get("patience")
    for key, value in (("eval_every", eval_every), ("patience", patience)):
        if value is not None and (isinstance(value, bool) or not (isinstance(value, int) and value >= 1)):
            raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    report = train.get("report", "final")
    if report not in REPORTS:
        raise ConfigError(f"{where}: report must be one of {', '.join(REPORTS)}, got {report!r}")
    if eval_every is None:
        needing = [f"{k} = {v!r}" for k, v in (("patience", patience), ("report", report)) if v not in (None, "final")]
        if needing:
            raise ConfigError(f"{where}: {' and '.join(needing)} need{'s' if len(needing) == 1 else ''} eval_every "
                              "(the steps between held-out evaluations), e.g. eval_every = 250")
    elif staircase:
        raise ConfigError(f"{where}: eval_every evaluates on the last level's held-out data, which a staircase "
                          "(a moving truth) does not train on; leave eval_every out")
    standardize, batches = train.get("standardize", False), train.get("batches", "epochs")
    if not isinstance(standardize, bool):
        raise ConfigError(f"{where}: standardize must be true or false, got {standardize!r}")
    if batches not in BATCH_DRAWS:
        raise ConfigError(f"{where}: batches must be one of {', '.join(BATCH_DRAWS)}, got {batches!r}")
    for key, value, default in (("standardize", standardize, False), ("batches", batches, "epochs")):
        if value != default and train.get("n_samples") is None:
            raise ConfigError(f"{where}: {key} applies to fixed samples; it needs n_samples (e.g. n_samples = 2500)")
    return {"eval_every": eval_every, "patience": patience, "report": report, "standardize": standardize,
            "batches": batches}
