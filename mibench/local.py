"""The local executor: N worker processes on this machine (``python -m mibench.executors
ORDER.json``), one torch thread each, logs in DIR/logs/; and how a sweep stops on a signal.

A driver that waits for its workers stops them when it is stopped: SIGTERM, or SIGINT to the
driver alone (``stop_on_signals``), raises ``Stopped`` in the driver, which sends its workers
SIGTERM; each worker releases its claim and exits, and the runs finished so far stay saved. With
``--no-wait`` the workers are detached on purpose (a session of their own) and keep running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from .executors import LOGS_DIR, ORDERS_DIR, POLL_S, Options, WorkOrder, available_cores
from .interface import ConfigError

log = logging.getLogger(__name__)


def run_local(order: WorkOrder, opts: Options, out_dir: Path) -> None:
    """N worker processes, one torch thread each, logs in DIR/logs/; detached with no wait."""
    n = max(1, min(opts.workers or available_cores(), sum(map(len, order.groups)) or 1))
    path = order.save(out_dir / ORDERS_DIR / f"{order.sweep_id}.json")
    (out_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        logfile = open(out_dir / LOGS_DIR / f"{order.sweep_id}-{i}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "mibench.executors", str(path)],
                                       stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=not opts.wait,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"}), logfile))
    if not opts.wait:
        print(f"started {n} workers (logs in {out_dir / LOGS_DIR}); `mibench status {out_dir}` follows them")
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
            lines = (out_dir / LOGS_DIR / f"{order.sweep_id}-{i}.log").read_text().strip().splitlines()
            failed.append(lines[-1] if lines else f"exit status {p.returncode}")
    if failed:
        from .store import FinishedIndex

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


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived (``stop_on_signals``): raised in the main thread so that the
    way out releases claims and stops workers. The CLI exits with 128 + ``signum``."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM (and SIGINT, unless it is ignored) raise ``Stopped`` once;
    a second signal during the way out is ignored. Only in the main thread (signals cannot be
    caught elsewhere); the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = []

    def handler(signum, frame):
        if not stopping:
            stopping.append(signum)
            raise Stopped(signum)

    caught = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is signal.default_int_handler else [])
    old = {sig: signal.signal(sig, handler) for sig in caught}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _follow(order: WorkOrder, out_dir: Path, alive) -> None:
    """Wait while workers run, with a progress bar over the order's runs."""
    from .store import FinishedIndex

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
