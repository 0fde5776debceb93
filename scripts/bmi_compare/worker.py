"""The worker processes: the loop a worker runs, and the driver's handle on one.

A worker is the entry script started as ``bmi_speed.py --worker SIDE [--pin CPU]`` by the Python
of its library's environment (mibench's for "mibench", BMI's for "bmi"), with the environment
of ``one_thread_env``. It pins itself to its core before it imports anything that computes, so
every thread torch, OpenMP or XLA starts later shares that core. Then it reads one JSON request
per line on stdin, ``{"op": NAME, ...keyword arguments}``, calls that method of its side and
answers one JSON line. Its real stdout is kept for the answers; anything the libraries print
goes to stderr (a log file).

Imported in BMI's environment: nothing here imports torch or mibench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

# What a worker process runs: the entry script, which puts this package's folder on sys.path.
ENTRY = Path(__file__).resolve().parents[1] / "bmi_speed.py"
SIDES = ("mibench", "bmi")
# One thread for every library that reads these: OpenMP and MKL (torch), XLA's CPU backend (JAX).
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def one_thread_env(base: dict) -> dict:
    """``base`` with one thread for OpenMP, MKL, OpenBLAS and XLA, JAX on the CPU and Python's
    warnings silenced (they would go to the log anyway). XLA flags already set are kept."""
    xla = " ".join(f for f in (base.get("XLA_FLAGS", ""), XLA_ONE_THREAD) if f)
    return dict(base, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                XLA_FLAGS=xla, JAX_PLATFORMS="cpu", PYTHONWARNINGS="ignore")


def affinity() -> list[int] | None:
    """The cores this process may run on (None where the platform does not say)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def serve(side: str, pin: int | None) -> None:
    """The worker's loop: pin, build the side, say hello with its versions, answer requests
    until stdin closes."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if pin is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {pin})
    if side == "bmi":
        from .bmi_side import BMISide as Side
    else:
        from .mibench_side import MibenchSide as Side
    impl = Side()
    proto.write(json.dumps({"ready": True, "versions": {**impl.versions(), "cores": affinity()}}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            answer = {"ok": True, **getattr(impl, req.pop("op"))(**req)}
        except Exception:  # reported to the driver, which stops with the traceback
            answer = {"ok": False, "error": traceback.format_exc()}
        proto.write(json.dumps(answer) + "\n")


class Worker:
    """A worker process and its log file (the driver's side of the protocol)."""

    def __init__(self, side: str, python: str, env: dict, pin: int | None):
        if side not in SIDES:
            raise ValueError(f"unknown worker {side!r}; known: {', '.join(SIDES)}")
        self.side = side
        self.failed = False
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"bmi-speed-{side}-", suffix=".log", delete=False)
        cmd = [python, str(ENTRY), "--worker", side] + ([] if pin is None else ["--pin", str(pin)])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, env=env)
        self.versions = self._read()["versions"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.fail("exited")
        return json.loads(line)

    def fail(self, what: str):
        self.failed = True              # its log is kept: the message names it
        self.log.flush()
        tail = Path(self.log.name).read_text()[-4000:]
        raise SystemExit(f"{self.side} worker {what}; its log ({self.log.name}) ends with:\n{tail}")

    def request(self, op: str, **kwargs) -> dict:
        """Call ``op(**kwargs)`` in the worker; its answer (a dict)."""
        self.proc.stdin.write(json.dumps({"op": op, **kwargs}) + "\n")
        answer = self._read()
        if not answer.pop("ok"):
            print(answer["error"], file=sys.stderr)
            self.fail(f"failed on {op}")
        return answer

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if not self.failed:
            os.unlink(self.log.name)
