"""The BMI side: BMI's own estimators (benchmark-mi 0.1.3) timed step by step, and JAX's matmul
peak. Runs in BMI's environment and imports neither torch nor mibench.

BMI's training loops (``basic_training`` in bmi/estimators/neural/_basic_training.py, and
``mine_training`` in _mine_estimator.py for MINE) log every step's training value through a
``TrainingLog``, whose ``log_train_mi`` turns the value into a float, so it returns once the
step has run. ``StepClock``, a subclass of BMI's ``TrainingLog`` that notes the time of each of
those calls, replaces the name ``TrainingLog`` in those two modules: the loops run unchanged
and the clock reads when each step ended.
"""

from __future__ import annotations

import platform
import time


def _step_clock():
    """BMI's TrainingLog with a clock; installed in BMI's two training modules."""
    import bmi.estimators.neural._basic_training as basic
    import bmi.estimators.neural._mine_estimator as mine
    from bmi.estimators.neural._training_log import TrainingLog

    class StepClock(TrainingLog):
        last = None                 # the log of the latest training loop

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.started = time.perf_counter()          # the loop's first step starts next
            self.ends: list[float] = []
            StepClock.last = self

        def log_train_mi(self, n_step, mi):
            super().log_train_mi(n_step, mi)            # float(mi): waits for the step
            self.ends.append(time.perf_counter())

    basic.TrainingLog = mine.TrainingLog = StepClock
    return StepClock


class BMISide:
    """The BMI half; runs in BMI's environment."""

    def __init__(self):
        self.clock = _step_clock()
        self._data: dict[str, object] = {}

    def versions(self) -> dict:
        import importlib.metadata as md
        import os

        return {"python": platform.python_version(),
                **{name: md.version(name) for name in ("benchmark-mi", "jax", "jaxlib", "equinox", "optax")},
                "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}

    def peak(self, seconds: float, n: int = 1024) -> dict:
        """JAX's float32 matmul peak on this thread (jit-compiled jnp.dot), in GFLOP/s."""
        import jax
        import jax.numpy as jnp

        ka, kb = jax.random.split(jax.random.PRNGKey(0))
        a, b = jax.random.normal(ka, (n, n)), jax.random.normal(kb, (n, n))
        dot = jax.jit(jnp.dot)
        dot(a, b).block_until_ready()
        best, end, count = float("inf"), time.perf_counter() + seconds, 0
        while count < 3 or time.perf_counter() < end:
            t0 = time.perf_counter()
            dot(a, b).block_until_ready()
            best = min(best, time.perf_counter() - t0)
            count += 1
        return {"gflops": 2 * n**3 / best / 1e9, "n": n, "what": f"jnp.dot float32 {n}x{n}"}

    def _load(self, path: str):
        import numpy as np

        if path not in self._data:
            self._data[path] = np.load(path).astype(np.float64)
        return self._data[path]

    def train(self, bound: str, x: str, y: str, steps: int, warmup: int, seed: int, cell: dict) -> dict:
        """BMI's estimator for ``bound`` as BMI's v2 benchmark builds it (bmi_estimator.py's
        table), with the cell's hidden layers, batch size and learning rate, trained for
        ``warmup + steps`` steps on the sample in x, y (which it standardises and halves)
        with no held-out evaluation: steps/s over the last ``steps`` steps, and the warm-up's
        cost beyond as many steady steps (first_s: JAX's tracing and compilation)."""
        import bmi.estimators

        from bmi_estimator import ESTIMATORS     # the scripts folder is on sys.path

        name, kwargs, _, _ = ESTIMATORS[bound]
        total = warmup + steps
        estimator = getattr(bmi.estimators, name)(
            **kwargs, seed=seed, hidden_layers=tuple(cell["hidden"]), batch_size=cell["batch_size"],
            learning_rate=cell["lr"], max_n_steps=total, test_every_n_steps=total + 1)
        t0 = time.perf_counter()
        result = estimator.estimate_with_info(self._load(x), self._load(y))
        wall = time.perf_counter() - t0
        log = self.clock.last
        if len(log.ends) != total:
            raise RuntimeError(f"BMI's loop ran {len(log.ends)} steps, not {total}")
        rate = steps / (log.ends[total - 1] - log.ends[warmup - 1])
        return {"steps_per_s": rate, "first_s": log.ends[warmup - 1] - log.started - warmup / rate,
                "wall_s": wall, "steps_run": result.additional_information["n_training_steps"],
                "last_estimate": log._mi_train_history[-1][1]}
