"""How a sweep stops on a signal: SIGTERM, or SIGINT, raises ``Stopped`` in the main thread so
that the way out releases claims, stops worker processes and merges the runs finished so far.
The CLI exits with 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


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
