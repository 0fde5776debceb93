#!/usr/bin/env python3
"""Rewrite results folders written before schema 2 in the current schema.

    python scripts/upgrade_results.py results/gaussian [more folders ...]

Schema 2 identifies a run by what is trained and evaluated (``RunSpec.identity``), so rows of
schema 1 get a new run id. A sweep resumes over an old folder without this (the planner
upgrades rows as it reads them); the rewrite makes the files say so themselves: each row gets
its new id (the old one kept as ``run_id_v1``), ``schema_version``, ``grids`` and its spec in the
current form; traces, saved models and embeddings are renamed to the new ids. Measurements are
copied as they are. Each file is written to a temporary name and renamed over the old one.

Rows written before rows carried the truth's standard error (``mi_true_stderr``) get it: 0 for
an exact truth, and for a Monte Carlo one the value the task computes (its cached truth, or the
Monte Carlo run that makes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mibench.runspec import RunSpec, upgrade_row
from mibench.distributions import TASK_FAMILIES
from mibench.results import EXACT_TRUTH, RUNS_FILE, SCHEMA_VERSION, TRACES_FILE, append_jsonl, read_jsonl


def _rewrite(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(path.name + ".upgrade")
    tmp.unlink(missing_ok=True)
    append_jsonl(tmp, records)
    os.replace(tmp, path)


def upgrade_folder(folder: Path) -> dict[str, str]:
    """Upgrade one results folder in place; returns {old id: new id} of the rows changed."""
    rows = list(read_jsonl(folder / RUNS_FILE))
    ids: dict[str, str] = {}
    upgraded = []
    for row in rows:
        new = upgrade_row(row)
        if new is not row:
            ids[row["run_id"]] = new["run_id"]
            spec = RunSpec.from_dict(row["spec"])
            new = {**new, "schema_version": SCHEMA_VERSION, "grids": list(spec.grids),
                   "git_commit": new.get("git_commit"), "spec": spec.to_dict()}
        upgraded.append(new)
    if not ids:
        return ids
    traces = [{**t, "run_id": ids.get(t["run_id"], t["run_id"])} for t in read_jsonl(folder / TRACES_FILE)]
    for sub, ext in (("models", ".pt"), ("embeddings", ".csv")):
        for old, new in ids.items():
            src = folder / sub / f"{old}{ext}"
            if src.exists():
                os.replace(src, folder / sub / f"{new}{ext}")
    if traces:
        _rewrite(folder / TRACES_FILE, traces)
    _rewrite(folder / RUNS_FILE, upgraded)
    return ids


def fill_truth_stderr(folder: Path) -> int:
    """Give every row of ``folder`` that lacks it ``mi_true_stderr``; returns how many got one."""
    rows = list(read_jsonl(folder / RUNS_FILE))
    known: dict[str, float] = {}
    filled = 0
    for row in rows:
        if "mi_true_stderr" in row or row.get("mi_true") is None:
            continue
        if row.get("truth_method") in EXACT_TRUTH:
            row["mi_true_stderr"] = 0.0
        elif not row.get("staircase"):
            key = json.dumps([row["family"], row["task_params"]], sort_keys=True)
            if key not in known:
                known[key] = TASK_FAMILIES[row["family"]].build(dict(row["task_params"])).ground_truth().stderr
            row["mi_true_stderr"] = known[key]
        else:
            continue
        filled += 1
    if filled:
        _rewrite(folder / RUNS_FILE, rows)
    return filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not (folder / RUNS_FILE).is_file():
            print(f"{folder}: no {RUNS_FILE}", file=sys.stderr)
            return 2
        ids = upgrade_folder(folder)
        print(f"{folder}: {len(ids)} rows upgraded" + (f" ({json.dumps(ids)})" if ids else ""))
        print(f"{folder}: {fill_truth_stderr(folder)} rows given the truth's standard error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
