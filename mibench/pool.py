"""Several results folders in one report (``mibench report DIR1 DIR2 ... --out OUT``): a new
estimator's runs ranked among a committed leaderboard's without re-running the others.

Runs are pooled only when the folders made them the same way (``check_poolable``). On every
task the folders share (the same preset and task parameters), and for each kind of estimator
both folders ran on it:

- sample estimators (KSG, CCA, external programs): the same sample sizes and the same seeds;
- neural estimators: the same seeds, the same training sample size and held-out sample (its
  size and evaluation batch, or the number of fresh batches of a stream), the same budget
  (steps), batch size and learning rate, and the same training protocol (``eval_every``,
  ``patience``, ``report``, ``standardize``, ``batches``: ``results.protocol_text``);

and the task's truth agrees. Each field is compared as the set of values the folder's runs of
that kind hold on the task (the seeds: every seed run, whatever its status). Every folder must
share a task with another, and no run may be in two folders (it would count twice).
"""

from __future__ import annotations

import json
import math
import os
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .bmi_table import task_params_dict
from .interface import ConfigError
from .stats import key_text
from .tables import seeds_text

#: The fields each kind of run must agree on, by the name a refusal gives them.
SAMPLE_FIELDS = ("sample size", "seeds")
NEURAL_FIELDS = ("seeds", "sample size", "held-out sample", "steps", "batch size", "learning rate",
                 "training protocol")
TRUTH_TOLERANCE = 1e-6          # relative; truths of one task from two folders may differ this much


def _heldout(spec: dict[str, Any]) -> str:
    """A neural run's held-out sample as text: "2500 pairs in batches of 2500", or for a
    stream "50 fresh batches of 256"."""
    size, batch = spec.get("eval_n_samples"), spec.get("eval_batch_size")
    if size is not None:
        return f"{key_text(size)} pairs in batches of {key_text(batch)}"
    return f"{key_text(spec.get('eval_batches'))} fresh batches of {key_text(batch)}"


def _column(runs: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    return runs[name] if name in runs else pd.Series(default, index=runs.index, dtype=object)


def task_ids(runs: pd.DataFrame) -> pd.Series:
    """A task id per run: its preset and its task, BMI's name with the other task parameters
    ("bmi_v2 1v1-AI (rescale=True)"), or the task parameters; runs of one id are runs of one
    task."""
    def one(preset: Any, params: Any) -> str:
        params = task_params_dict(params)
        if "name" not in params:
            return f"{preset} {json.dumps(params, sort_keys=True, default=str)}"
        rest = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "name")
        return f"{preset} {params['name']}" + (f" ({rest})" if rest else "")

    return pd.Series([one(p, q) for p, q in zip(_column(runs, "task", ""), _column(runs, "task_params", ""))],
                     index=runs.index, dtype=object)


def protocol_fields(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: its task id (``task_ids``), kind ("neural" or "sample"), seed, truth, and the
    fields of ``NEURAL_FIELDS`` as text (the neural ones empty for sample estimators)."""
    out = pd.DataFrame({"task": task_ids(runs), "kind": _column(runs, "estimator_kind").fillna("neural"),
                        "run_id": _column(runs, "run_id"),
                        "seed": pd.to_numeric(_column(runs, "seed"), errors="coerce"),
                        "truth": pd.to_numeric(_column(runs, "mi_true"), errors="coerce")}, index=runs.index)
    out["sample size"] = [key_text(v) or "a stream" for v in _column(runs, "n_samples")]
    neural = (out["kind"] != "sample").to_list()
    specs = [s if isinstance(s, dict) else {} for s in _column(runs, "spec")]
    out["held-out sample"] = [_heldout(s) if n else "" for s, n in zip(specs, neural)]
    for field, column in (("steps", "steps"), ("batch size", "batch_size"), ("learning rate", "lr")):
        out[field] = [key_text(v) if n else "" for v, n in zip(_column(runs, column), neural)]
    out["training protocol"] = [(p or "the default (the whole budget, the final estimate)") if n else ""
                                for p, n in zip(_column(runs, "protocol", "").fillna(""), neural)]
    return out


def _values(rows: pd.DataFrame, field: str) -> str:
    """The values a folder's runs hold for ``field``, as text ("0-9" for seeds)."""
    if field == "seeds":
        return seeds_text(tuple(sorted({int(s) for s in rows["seed"].dropna()})))
    return " | ".join(sorted(set(rows[field])))


def _differences(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(what, value in a, value in b) for every field that differs between two folders' runs
    of one task (``protocol_fields`` rows); the truth first."""
    out = []
    ta, tb = a["truth"].dropna(), b["truth"].dropna()
    if len(ta) and len(tb) and not math.isclose(ta.iloc[0], tb.iloc[0], rel_tol=TRUTH_TOLERANCE, abs_tol=1e-12):
        out.append(("the true MI", f"{ta.iloc[0]:.6g}", f"{tb.iloc[0]:.6g}"))
    for kind, fields in (("neural", NEURAL_FIELDS), ("sample", SAMPLE_FIELDS)):
        ra, rb = a[a["kind"] == kind], b[b["kind"] == kind]
        if ra.empty or rb.empty:
            continue
        for field in fields:
            va, vb = _values(ra, field), _values(rb, field)
            if va != vb:
                out.append((f"{kind} runs' {field}", va, vb))
    return out


def check_poolable(folders: Sequence[Path], runs: Sequence[pd.DataFrame]) -> None:
    """Raise a ConfigError, one line naming the folders and what differs, unless the runs of
    ``folders`` (``runs``, one frame each) may be pooled into one report: no run in two
    folders, every folder sharing a task with another, and on every shared task the fields
    the module docstring lists agreeing for each kind of estimator both folders ran."""
    fields = [protocol_fields(r) for r in runs]
    shares = [False] * len(folders)
    for (i, a), (j, b) in combinations(enumerate(fields), 2):
        both = set(a["run_id"].dropna()) & set(b["run_id"].dropna())
        if both:
            first = a[a["run_id"] == sorted(both)[0]].iloc[0]
            raise ConfigError(f"{folders[i]} and {folders[j]} both hold run {first['run_id']} ({first['task']}, "
                              f"seed {key_text(first['seed'])})" + (f" and {len(both) - 1} more" if len(both) > 1 else "")
                              + "; pooled, each would count twice: report over folders with no run in common "
                                "(a folder of the new estimator's runs alone)")
        shared = sorted(set(a["task"]) & set(b["task"]))
        if shared:
            shares[i] = shares[j] = True
        differing = [(t, d) for t in shared if (d := _differences(a[a["task"] == t], b[b["task"] == t]))]
        if differing:
            task, diffs = differing[0]
            more = f" (and {len(differing) - 1} more of the {len(shared)} tasks they share)" if len(differing) > 1 else ""
            what = "; ".join(f"{w}: {va} in {folders[i]}, {vb} in {folders[j]}" for w, va, vb in diffs)
            raise ConfigError(f"not pooling {folders[i]} with {folders[j]}: they ran task {task}{more} differently "
                              f"({what}); a report pools runs made the same way (see `mibench report -h`)")
    alone = [str(f) for f, s in zip(folders, shares) if not s]
    if alone:
        tasks = {str(f): sorted(set(x["task"])) for f, x in zip(folders, fields)}
        raise ConfigError(f"{', '.join(alone)} share{'s' if len(alone) == 1 else ''} no task (preset and task "
                          f"parameters) with the other folder(s), so nothing would be ranked together: "
                          + "; ".join(f"{f} has {', '.join(t[:2])}" + (f" and {len(t) - 2} more" if len(t) > 2 else "")
                                      for f, t in tasks.items()))


def check_out(folders: Sequence[Path], out_dir: str | os.PathLike | None) -> Path:
    """Where a report over several folders writes: ``out_dir``, which must be given and lie
    outside every one of them (a report over several writes into none of its inputs). A folder
    given twice is refused too."""
    resolved = [Path(f).resolve() for f in folders]
    twice = [str(f) for f, r in zip(folders, resolved) if resolved.count(r) > 1]
    if twice:
        raise ConfigError(f"{twice[0]} is given more than once; each folder's runs are pooled once")
    if out_dir is None:
        raise ConfigError(f"a report over {len(folders)} folders needs --out, a folder of its own "
                          "(it writes into none of the folders it reads)")
    out = Path(out_dir).resolve()
    for folder, r in zip(folders, resolved):
        if out == r or r in out.parents:
            raise ConfigError(f"--out {out_dir} lies in {folder}, one of the folders read; a report over several "
                              "folders writes into none of them")
    return Path(out_dir)
