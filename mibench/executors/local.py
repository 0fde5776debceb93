"""The executors of this machine: ``inline`` (this process) and ``local`` (N worker processes,
``python -m mibench.executors ORDER.json``, one torch thread each, logs in DIR/logs/).

A driver that waits for its workers stops them when it is stopped: SIGTERM, or SIGINT to the
driver alone (``stop_on_signals``), raises ``Stopped`` in the driver, which sends its workers
SIGTERM; each worker releases its claim and exits, and the runs finished so far stay saved. With
``--no-wait`` the workers are detached on purpose (a session of their own) and keep running.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from ..cpu import available_cores
from ..interface import ConfigError
from ..layout import Folder
from .base import Options
from .costs import estimate_seconds
from .worker import POLL_S, WorkOrder, work

log = logging.getLogger(__name__)


def run_local(order: WorkOrder, opts: Options, out_dir: Path) -> None:
    """N worker processes, one torch thread each, logs in DIR/logs/; detached with no wait."""
    n = max(1, min(opts.workers or available_cores(), sum(map(len, order.groups)) or 1))
    folder = Folder(out_dir)
    path = order.save(folder.orders / f"{order.sweep_id}.json")
    folder.logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        logfile = open(folder.logs / f"{order.sweep_id}-{i}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "mibench.executors", str(path)],
                                       stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=not opts.wait,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"}), logfile))
    if not opts.wait:
        print(f"started {n} workers (logs in {folder.logs}); `mibench status {out_dir}` follows them")
        return
    try:
        _follow(order, out_dir, lambda: sum(p.poll() is None for p, _ in procs))
    except KeyboardInterrupt:            # SIGINT or SIGTERM (``stop_on_signals``): no orphans
        _terminate([p for p, _ in procs])
        for _, logfile in procs:
            logfile.close()
        raise
    failed = []
    for i, (p, logfile) in enumerate(procs):
        logfile.close()
        if p.wait() != 0:
            lines = (folder.logs / f"{order.sweep_id}-{i}.log").read_text().strip().splitlines()
            failed.append(lines[-1] if lines else f"exit status {p.returncode}")
    if failed:
        from ..store import FinishedIndex

        ids = order.run_ids()
        left = len(ids) - FinishedIndex(out_dir, order.sweep_id if order.force else None).count(ids)
        if left:
            raise ConfigError(f"{len(failed)} of {n} workers failed and {left} runs are unfinished; "
                              f"the first said: {failed[0]}")
        log.warning("%d of %d workers failed (the others finished their runs); the first said: %s",
                    len(failed), n, failed[0])


def _terminate(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """Stop worker processes: SIGTERM (each releases its claim and exits; its finished runs
    are saved), then SIGKILL for those still there after ``grace_s``."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _follow(order: WorkOrder, out_dir: Path, alive) -> None:
    """Wait while workers run, with a progress bar over the order's runs."""
    from ..store import FinishedIndex

    ids = order.run_ids()
    index = FinishedIndex(out_dir, order.sweep_id if order.force else None)
    bar = None
    if order.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc="runs", unit="run", dynamic_ncols=True, disable=None)
    while alive():
        if bar is not None:
            bar.n = index.count(ids)
            bar.refresh()
        time.sleep(POLL_S / 4)
    if bar is not None:
        bar.n = index.count(ids)
        bar.close()


class Inline:
    """``inline``: the order's groups in this process, one after the other."""

    here = True

    def check(self, plan, opts: Options) -> None:
        pass

    def describe(self, plan, opts: Options) -> str:
        return ""

    def execute(self, order: WorkOrder, opts: Options, out_dir: Path) -> None:
        work(order)


class Local(Inline):
    """``local``: ``opts.workers`` worker processes (default: one per core available), the
    longest groups first (as far as the folder's finished runs tell) for less idling at the end."""

    def execute(self, order: WorkOrder, opts: Options, out_dir: Path) -> None:
        order.groups.sort(key=estimate_seconds(out_dir), reverse=True)
        order.threads = order.threads or 1
        run_local(order, opts, out_dir)
