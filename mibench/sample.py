"""Sample estimators: the second kind of estimator, ``estimate(x, y) -> nats`` on a finite sample.

Neural estimators train a critic on a stream of batches; a sample estimator (KSG, the Gaussian
plug-in, a histogram, another library's program) gets one sample of ``n_samples`` pairs drawn
from the task with the run's seed and returns one number. The runner records it in the same
row as a neural run (``estimator_kind = "sample"``, the training columns empty), so the reporter
puts both kinds in one table. In a preset:

    [[grid]]
    name = "classical"
    estimators = ["ksg", "cca"]     # sample estimators, by registered name
    k = 10                          # their options sit beside them, as a bound's do
    n_samples = 5000
    seeds = [0, 1, 2, 3, 4]

``external`` runs any program on the saved sample (see ``External``). A name that is not
registered, or an estimator that raises, times out or prints no number, gives a row with status
"error" and the reason; the sweep goes on. Third-party packages register more estimators under
the entry-point group ``mibench.sample_estimators`` (a ``SampleEstimator`` subclass).
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch

from . import baselines
from .interface import ConfigError
from .registry import Registry


@dataclass(frozen=True)
class Param:
    """One option of a sample estimator: its default, a check and the allowed values in words."""

    default: Any
    valid: Callable[[Any], bool]
    allowed: str


def _int_at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= n


class SampleEstimator:
    """Base class: ``name`` (registry key), ``label`` (shown in figures), ``library`` (the
    library column of its rows) and ``options`` (name -> Param). Subclasses implement
    ``estimate``. ``example`` gives options it can run with when the defaults cannot (an
    option without a usable default); ``mibench.testing.check_sample_estimator`` uses it."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    library: ClassVar[str] = "mibench"
    options: ClassVar[dict[str, Param]] = {}
    example: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any):
        self.opts = self.check_options(options)

    @classmethod
    def check_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options with defaults filled in; a ConfigError names a bad or unknown one."""
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            raise ConfigError(f"{cls.name}: unknown option {unknown[0]!r}; allowed: {', '.join(cls.options) or 'none'}")
        out = {}
        for key, param in cls.options.items():
            value = given.get(key, param.default)
            if value is None or not param.valid(value):
                raise ConfigError(f"{cls.name}: {key} must be {param.allowed}, got {value!r}")
            out[key] = value
        return out

    def display(self) -> tuple[str, str]:
        """(name, library) as rows show them."""
        return self.name, self.library

    def shown_options(self) -> dict[str, Any]:
        """The options that tell runs of this estimator apart in tables (all, by default)."""
        return dict(self.opts)

    def estimate(self, x: torch.Tensor, y: torch.Tensor, *, seed: int) -> float:
        raise NotImplementedError


SAMPLE_ESTIMATORS = Registry[type[SampleEstimator]]("sample estimator", "mibench.sample_estimators")


def sample_options() -> set[str]:
    """Every registered sample estimator's option names (keys allowed in a preset's tables)."""
    return {k for cls in SAMPLE_ESTIMATORS.values() for k in cls.options}


def _register(cls: type[SampleEstimator]) -> type[SampleEstimator]:
    return SAMPLE_ESTIMATORS.register(cls.name, cls)


#: KSG's options besides k. At these defaults (the paper's max-norm on the data as given, the
#: value unclipped) they are left out of a row's options, so rows recorded before the options
#: existed and rows at the defaults are one cell. BMI's KSG: metric "euclidean", standardize and
#: clip true.
KSG_DEFAULTS = {"metric": "max", "standardize": False, "clip": False}
_KSG_OPTIONS = {
    "metric": Param("max", lambda v: v in baselines.KSG_METRICS,
                    "max (the max-norm throughout) or euclidean (within x and within y, as BMI)"),
    "standardize": Param(False, lambda v: isinstance(v, bool), "true or false (z-score every coordinate first)"),
    "clip": Param(False, lambda v: isinstance(v, bool), "true or false (report max(0, estimate))"),
}


class _KSGBase(SampleEstimator):
    def shown_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.opts.items() if KSG_DEFAULTS.get(k, object()) != v}

    def _ksg_kwargs(self, x: torch.Tensor) -> dict[str, Any]:
        return {"metric": self.opts["metric"], "standardize": self.opts["standardize"], "clip": self.opts["clip"],
                "device": x.device if x.device.type != "cpu" else None}


@_register
class KSG(_KSGBase):
    """KSG (Kraskov, Stögbauer & Grassberger 2004), their first estimator; max-norm by default.

    A k-d tree on the CPU, batched exact distances on a GPU or for the Euclidean metric
    (``mibench.baselines.ksg``). BMI's KSG-10 is ``k = 10, metric = "euclidean",
    standardize = true, clip = true``."""

    name, label = "ksg", "KSG"
    options = {"k": Param(3, _int_at_least(1), "an integer >= 1"), **_KSG_OPTIONS}

    def estimate(self, x, y, *, seed):
        return baselines.ksg(x, y, k=self.opts["k"], **self._ksg_kwargs(x))


@_register
class KSGEnsemble(_KSGBase):
    """KSG averaged over several neighbourhood sizes k (as BMI's KSGEnsembleFirstEstimator)."""

    name, label = "ksg_ensemble", "KSG ensemble"
    options = {"ks": Param([5, 10], lambda v: isinstance(v, list) and len(v) > 0 and all(_int_at_least(1)(k) for k in v),
                           "a non-empty list of integers >= 1"), **_KSG_OPTIONS}

    def estimate(self, x, y, *, seed):
        return baselines.ksg_ensemble(x, y, ks=tuple(self.opts["ks"]), **self._ksg_kwargs(x))


@_register
class CCA(SampleEstimator):
    """The Gaussian plug-in (CCA): exact for Gaussians, a reference line elsewhere.

    From the sample covariance, i.e. the canonical correlations."""

    name, label = "cca", "CCA"

    def estimate(self, x, y, *, seed):
        return baselines.gaussian_cca(x, y)


@_register
class Histogram(SampleEstimator):
    """Equal-width histogram plug-in for x and y of one or two dimensions each."""

    name, label = "histogram", "Histogram"
    options = {"bins": Param(16, _int_at_least(2), "an integer >= 2"),
               "correction": Param("miller-madow", lambda v: v in ("miller-madow", "none"), "miller-madow or none")}

    def estimate(self, x, y, *, seed):
        return baselines.histogram(x, y, bins=self.opts["bins"], correction=self.opts["correction"])


class EstimatorFailed(RuntimeError):
    """An external estimator failed, timed out or printed no number; the message says which."""


def _exited(pid: int) -> bool:
    """Whether process ``pid`` (a child) has exited, without reaping it: while it is an unreaped
    zombie its id stays its process group's, so the group can still be killed by that id."""
    if not hasattr(os, "waitid"):                                 # pragma: no cover (not POSIX)
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:                                     # reaped already (SIGCHLD ignored)
        return True


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group (session) ``proc`` leads: it and whatever it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):  # nothing left, or not POSIX
        if proc.poll() is None:
            proc.kill()


def run_program(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run ``argv`` in a session of its own: (exit status, stdout, stderr) once the program
    itself exits. Its output goes to files, not pipes, so a background process it leaves
    behind (holding the output open) does not delay the answer; whatever it started is killed
    when it exits, and on a timeout the whole group is killed with it. Raises EstimatorFailed
    when it cannot start or runs past ``timeout`` seconds."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as exc:
            raise EstimatorFailed(f"external estimator could not start: {exc}") from None
        deadline, pause = time.monotonic() + timeout, 0.001
        try:
            while not _exited(proc.pid):
                if proc.poll() is not None:                   # reaped already (no waitid here)
                    break
                if time.monotonic() >= deadline:
                    raise EstimatorFailed(f"external estimator timed out after {timeout:g} s: {argv[0]}")
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        finally:
            _kill_group(proc)                                 # leftovers, or everything on a timeout
            proc.wait()
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"))


@_register
class External(SampleEstimator):
    """Any program, in any environment, run on the sample saved to files.

    ``command`` is a template: {x} and {y} become the paths of the two saved arrays ({dir} their
    folder, {n} the sample size, {seed} the run's seed, {python} the Python running mibench);
    $VARIABLES and ~ are expanded. The program prints the estimate in nats
    as the last line of its standard output. ``format`` is "npy" (numpy's .npy, shape (n, d)) or
    "csv" (comma-separated, no header, one row per pair). The command is split like a shell line
    but not run through a shell, in a session of its own: its answer is read when it exits, and
    whatever it started and left running is killed then (on a timeout, with it). A non-zero
    exit, a run longer than ``timeout`` seconds or a last line that is not a number fails the
    run with that reason. ``label`` names the estimator in rows and figures, ``library`` fills
    their library column.
    """

    name, label = "external", "external"
    options = {
        "command": Param("", lambda v: isinstance(v, str) and "{x}" in v and "{y}" in v,
                         "a command line with {x} and {y} in it"),
        "format": Param("npy", lambda v: v in ("npy", "csv"), "npy or csv"),
        "timeout": Param(600.0, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                         "a number of seconds > 0"),
        "label": Param("external", lambda v: isinstance(v, str) and v != "", "a non-empty name"),
        "library": Param("external", lambda v: isinstance(v, str) and v != "", "a non-empty name"),
    }
    example = {"command": '{python} -c "print(0.25)" {x} {y}'}

    def display(self) -> tuple[str, str]:
        return self.opts["label"], self.opts["library"]

    def shown_options(self) -> dict[str, Any]:
        return {}          # the label names it; the command stays in the row's spec

    def estimate(self, x, y, *, seed):
        fmt, timeout = self.opts["format"], float(self.opts["timeout"])
        with tempfile.TemporaryDirectory(prefix="mibench-sample-") as tmp:
            paths = {}
            for name, a in (("x", x), ("y", y)):
                arr = a.detach().cpu().double().reshape(len(a), -1).numpy()
                paths[name] = Path(tmp) / f"{name}.{fmt}"
                if fmt == "npy":
                    np.save(paths[name], arr)
                else:
                    np.savetxt(paths[name], arr, delimiter=",", fmt="%.17g")
            fields = {"x": str(paths["x"]), "y": str(paths["y"]), "dir": tmp, "n": len(x), "seed": seed,
                      "python": sys.executable}
            try:
                argv = [os.path.expanduser(os.path.expandvars(part)).format(**fields)
                        for part in shlex.split(self.opts["command"])]
            except (KeyError, IndexError, ValueError) as exc:
                raise EstimatorFailed(f"external estimator: cannot fill in the command ({exc!r}); its placeholders "
                                      f"are {', '.join('{' + k + '}' for k in fields)}, and literal braces are "
                                      "written {{ }}") from None
            returncode, stdout, stderr = run_program(argv, timeout)
        if returncode != 0:
            tail = (stderr.strip().splitlines() or [""])[-1][:300]
            raise EstimatorFailed(f"external estimator exited with status {returncode}: {tail}")
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        try:
            value = float(lines[-1])
        except (IndexError, ValueError):
            shown = lines[-1][:120] if lines else "nothing"
            raise EstimatorFailed(f"external estimator printed no number on its last line: {shown!r}") from None
        return value


# --------------------------------------------------------------------------------------------
# The spec and the run


@dataclass(frozen=True)
class SampleSpec:
    """What a sample-estimator run uses: a name in SAMPLE_ESTIMATORS and its options. Unlike an
    EstimatorSpec, an unknown name or a bad option is not refused here: the run records it as
    its error, so one bad entry of a sweep does not stop the rest."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    # The run-kind seam (``mibench.runspec.RunEstimator``): one estimate on a sample drawn with the
    # run's seed on its device (its size, ``n_samples``, is part of every identity that sets it).
    kind: ClassVar[str] = "sample"
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("seed", "device")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SampleSpec":
        d = dict(d)
        d.pop("kind", None)
        name = d.pop("name")
        return cls(name=name, options=tuple(sorted((k, _freeze(v)) for k, v in d.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, **{k: _thaw(v) for k, v in self.options}}

    def n_negatives(self, batch_size: int | None) -> int:
        return 0

    def identity(self, batch_size: int | None) -> dict[str, Any]:
        return self.to_dict()

    def row_columns(self, run) -> dict[str, Any]:
        """The row's columns this spec decides: its display name and library; no training."""
        name, library = self.display()
        return dict(bound=name, bound_kind="sample", critic=None, encoder=None, shared_encoder=None,
                    n_negatives=None, batch_size=None, steps=None, epochs=None, lr=None, staircase=[],
                    precision=None, bound_options=self.shown_options(), estimator_kind="sample", library=library)

    def build(self) -> SampleEstimator:
        """The estimator; ConfigError for an unknown name or a bad option."""
        if self.name not in SAMPLE_ESTIMATORS:
            raise ConfigError(SAMPLE_ESTIMATORS.unknown_message(self.name))
        cls = SAMPLE_ESTIMATORS[self.name]
        return cls(**{k: _thaw(v) for k, v in self.options if k in cls.options})

    def display(self) -> tuple[str, str]:
        """(name, library) for rows: an external estimator's label, else the registered name."""
        try:
            return self.build().display()
        except ConfigError:
            return self.name, "mibench"

    def shown_options(self) -> dict[str, Any]:
        """The options rows record for tables (``bound_options``); all given ones when the
        estimator cannot be built."""
        try:
            return self.build().shown_options()
        except ConfigError:
            return {k: _thaw(v) for k, v in self.options}


def _freeze(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _thaw(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def run_sample(spec: SampleSpec, task, *, n: int, seed: int, generator: torch.Generator) -> dict[str, Any]:
    """Draw ``n`` pairs from ``task`` with ``generator``, time one ``estimate`` call. Raises
    whatever the estimator raises; the runner turns it into an error row."""
    estimator = spec.build()
    x, y = task.sample(n, generator=generator)
    t0 = time.perf_counter()
    value = float(estimator.estimate(x, y, seed=seed))
    estimate_s = time.perf_counter() - t0
    return {"mi_estimate": value, "estimate_s": estimate_s,
            "pairs_per_s": n / estimate_s if estimate_s > 0 else math.nan, "finite": math.isfinite(value)}
