"""The layout of a results folder: every file and folder in it, named here and nowhere else.

    DIR/
      runs.jsonl          one row per finished run (``mibench.results`` reads, ``mibench.store`` appends)
      traces.jsonl        one training trace per run, written before its row
      pending/            a record per finished run not merged into the two files yet
      corrupt/            pending files that are not records, moved aside by a merge
      claims/             a file per run being trained, naming its worker
      merge.lock          held by the one process merging pending records
      plan.json           the last sweep planned into DIR (its id, preset, executor, run ids)
      orders/             work orders handed to worker processes or cluster jobs
      logs/               the local workers' output
      submitit/           the cluster jobs' scripts, output and pickles
      models/             saved weights (``save_model``), a file per run
      embeddings/         saved encoder features (``save_model``), a file per run
      figures/            the report's figures; the report's tables and index.html sit in DIR

Modules take paths from ``Folder`` (or the names below); reading rows is ``mibench.results``'s
job, writing them ``mibench.store``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RUNS_FILE = "runs.jsonl"
TRACES_FILE = "traces.jsonl"
PENDING_DIR = "pending"
CORRUPT_DIR = "corrupt"
CLAIMS_DIR = "claims"
LOCK_FILE = "merge.lock"
PLAN_FILE = "plan.json"
ORDERS_DIR = "orders"
LOGS_DIR = "logs"
SUBMITIT_DIR = "submitit"
MODELS_DIR = "models"
EMBEDDINGS_DIR = "embeddings"
FIGURES_DIR = "figures"
PAGE_FILE = "index.html"     # the report as one page (``mibench.html``)


@dataclass(frozen=True)
class Folder:
    """The paths of results folder ``root``; nothing is created or read."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def runs(self) -> Path:
        return self.root / RUNS_FILE

    @property
    def traces(self) -> Path:
        return self.root / TRACES_FILE

    @property
    def pending(self) -> Path:
        return self.root / PENDING_DIR

    @property
    def corrupt(self) -> Path:
        return self.root / CORRUPT_DIR

    @property
    def claims(self) -> Path:
        return self.root / CLAIMS_DIR

    @property
    def merge_lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def orders(self) -> Path:
        return self.root / ORDERS_DIR

    @property
    def logs(self) -> Path:
        return self.root / LOGS_DIR

    @property
    def submitit(self) -> Path:
        return self.root / SUBMITIT_DIR

    @property
    def figures(self) -> Path:
        return self.root / FIGURES_DIR

    @property
    def page(self) -> Path:
        return self.root / PAGE_FILE

    def model(self, run_id: str) -> Path:
        """Saved weights of one run."""
        return self.root / MODELS_DIR / f"{run_id}.pt"

    def embedding(self, run_id: str) -> Path:
        """Saved encoder features of one run."""
        return self.root / EMBEDDINGS_DIR / f"{run_id}.csv"

    def embeddings(self) -> list[Path]:
        """The saved encoder features, sorted by run id."""
        return sorted((self.root / EMBEDDINGS_DIR).glob("*.csv"))
