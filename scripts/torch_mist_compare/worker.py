"""The worker processes: the loop a worker runs, and the driver's handle on one.

A worker is the entry script started as ``compare_torch_mist.py --worker SIDE`` by the Python of
its library's environment (mibench's for "mibench", torch-mist's for "torch_mist" and
"torch_mist_heap"). It reads one JSON request per line on stdin and answers one JSON line. Its
real stdout is kept for the answers; anything the libraries print goes to stderr (a log file).
The seed MNIST cell (estimator spec, batch size, learning rate, read from the preset by the
driver) reaches both sides as JSON on the command line, so torch-mist's side needs no mibench.

Imported in torch-mist's environment: nothing here imports mibench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# What a worker process runs: the entry script, which puts this package's folder on sys.path.
ENTRY = Path(__file__).resolve().parents[1] / "compare_torch_mist.py"
SIDES = ("mibench", "torch_mist", "torch_mist_heap")


def serve(side: str, data_dir: str | None, seed_cell: dict) -> None:
    """The worker's loop: build the side, say hello with its versions, answer requests until
    stdin closes."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import torch

    torch.set_num_threads(1)
    if side.startswith("torch_mist"):
        from .torch_mist_side import TorchMistSide as Side
    else:
        from .mibench_side import MibenchSide as Side
    impl = Side(data_dir, seed_cell)
    proto.write(json.dumps({"ready": True, "versions": impl.versions()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            t0 = time.perf_counter()
            rate = getattr(impl, req["series"])(steps=req["steps"], warmup=req["warmup"], seed=req["seed"])
            answer = {"ok": True, "steps_per_s": rate, "wall_s": time.perf_counter() - t0}
        except Exception:  # reported to the driver, which stops with the traceback
            answer = {"ok": False, "error": traceback.format_exc()}
        proto.write(json.dumps(answer) + "\n")


class Worker:
    """A worker process and its log file (the driver's side of the protocol)."""

    def __init__(self, name: str, python: str, data_dir: str | None, seed_cell: dict, env: dict):
        if name not in SIDES:
            raise ValueError(f"unknown worker {name!r}; known: {', '.join(SIDES)}")
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"compare-{name}-", suffix=".log", delete=False)
        cmd = [python, str(ENTRY), "--worker", name, "--seed-cell", json.dumps(seed_cell)]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, env=env)
        hello = self._read()
        self.versions = hello["versions"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.fail("exited")
        return json.loads(line)

    def fail(self, what: str):
        self.log.flush()
        tail = Path(self.log.name).read_text()[-4000:]
        raise SystemExit(f"{self.name} worker {what}; its log ({self.log.name}) ends with:\n{tail}")

    def measure(self, series: str, steps: int, warmup: int, seed: int) -> float:
        self.proc.stdin.write(json.dumps({"series": series, "steps": steps, "warmup": warmup,
                                          "seed": seed}) + "\n")
        answer = self._read()
        if not answer["ok"]:
            print(answer["error"], file=sys.stderr)
            self.fail(f"failed on {series}")
        return answer["steps_per_s"]

    def value(self, name: str) -> float:
        """A number the side computes by a method of that name (the protocol's reply carries it
        where a series carries its rate): the step's FLOPs, the matmul peak."""
        return self.measure(name, 0, 0, 0)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        os.unlink(self.log.name)
