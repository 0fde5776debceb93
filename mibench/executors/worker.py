"""The worker: what every executor runs, in whatever process it runs it.

A ``WorkOrder`` holds, as plain values, the run groups to train and the results folder; it
crosses process and machine boundaries (a JSON file for local workers, a pickle for cluster
jobs). ``work`` trains the order's groups that no one has finished or is training, claiming each
first (``mibench.store``), so any number of workers and drivers can share a folder: a run is
trained once, and a worker that dies leaves its claim to be taken over. ``main`` is the worker
process of the local executor: ``python -m mibench.executors ORDER.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..interface import ConfigError
from .signals import stop_on_signals

log = logging.getLogger(__name__)

POLL_S = 2.0            # a worker waiting on groups other workers hold looks again this often


@dataclass
class WorkOrder:
    """What a worker needs, as plain values (it crosses process and machine boundaries)."""

    out_dir: str
    groups: list[list[dict[str, Any]]]          # RunSpec.to_dict() of each run, by group
    sweep_id: str
    force: bool = False
    data_dir: str | None = None
    threads: int | None = None
    progress: bool = False

    def save(self, path: Path) -> Path:
        from ..atomic import failing_as, write_durable
        from ..store import StoreError

        with failing_as(path.parent, StoreError):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_durable(path, json.dumps(asdict(self)), StoreError)
        return path

    def run_ids(self) -> list[str]:
        from ..runspec import RunSpec

        return [RunSpec.from_dict(d).run_id for g in self.groups for d in g]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WorkOrder":
        return cls(**json.loads(Path(path).read_text()))


def work(order: WorkOrder) -> int:
    """Run the order's groups that no one has finished or is running, claiming each first;
    then wait for the groups other workers hold, taking over those whose worker died. Returns
    the number of runs this worker trained. Merges the records at the end."""
    import torch

    from ..cpu import default_threads
    from ..plan import device_available
    from ..runner import Workspace, run_group
    from ..runspec import RunSpec
    from ..store import FinishedIndex, Store, worker_name

    store = Store(order.out_dir)
    index = FinishedIndex(order.out_dir, order.sweep_id if order.force else None)
    groups = [[RunSpec.from_dict(d) for d in g] for g in order.groups]
    torch.set_num_threads(order.threads or default_threads())
    workspace = Workspace(order.data_dir, Path(order.out_dir), order.progress)
    trained = 0
    remaining = groups
    bar = None
    if order.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, groups)), unit="run", dynamic_ncols=True, disable=None)
    while remaining:
        held_elsewhere = []
        for group in remaining:
            ids = [s.run_id for s in group]
            if index.count(ids) == len(ids):
                continue
            claim = store.claim(ids[0])
            if claim is None:
                held_elsewhere.append(group)
                continue
            with claim:
                if index.count(ids) == len(ids):         # finished while we were claiming
                    continue
                if not device_available(group[0].device):
                    log.warning("device %s not available on %s; its runs are left for another worker",
                                group[0].device, worker_name())
                    continue
                workspace.load_data(group[:1])
                for row, trace in run_group(group, workspace, order.sweep_id):
                    store.put(row.to_dict(), trace)
                    trained += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(last=f"{row.bound} {row.mi_estimate or math.nan:.3f}"
                                             f"/{row.mi_true or math.nan:.3f}")
        if held_elsewhere:
            time.sleep(POLL_S)
        remaining = held_elsewhere
    if bar is not None:
        bar.close()
    store.merge()
    return trained


def main(argv: list[str]) -> int:
    """A worker process of the local executor: ``python -m mibench.executors ORDER.json``.
    SIGTERM or SIGINT stop it cleanly: the run in training is dropped, its claim released."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with stop_on_signals():
            n = work(WorkOrder.load(argv[0]))
    except ConfigError as exc:
        print(f"mibench worker: error: {exc}", flush=True)
        return 2
    except KeyboardInterrupt as exc:
        print(f"mibench worker: {str(exc) or 'interrupted'}; its finished runs are saved", flush=True)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    print(f"mibench worker: trained {n} runs", flush=True)
    return 0
