"""Accuracy gate over asv results: compare a commit's recorded benchmarks with an earlier commit's.

    python .ci/asv_gate.py [--machine ci] [--commit HEAD] [--base REV]

The base is ``--base`` when given, else the nearest first-parent ancestor of ``--commit`` (HEAD~1,
HEAD~2, ...) that has results for the machine. With no such commit there is nothing to compare
and the gate passes. Otherwise it prints ``asv compare`` for the two commits (timings and memory
included: printed for reading, never gated, since they move by +-20% on shared machines), then
checks every ``track_`` benchmark (each bound's |held-out estimate - true MI| in nats, lower is
better) parameter by parameter.

Rule: a tracked value REGRESSES when it grows by more than 0.05 nats AND by more than 50%:

    new > old + 0.05  and  new > 1.5 * old

(both thresholds are options). A value that was recorded at the base and is missing, failed or
not finite now also regresses. Values whose benchmark ``version`` differs between the two
commits, and parameters that exist on one side only, are listed but not gated.

Exit status: 0 pass (or no earlier results to compare with), 1 a regression, 2 no results for
``--commit`` or for an explicit ``--base``, or an unknown commit. Run it from the repository root with the Python that has asv installed.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import subprocess
import sys

ABS_THRESHOLD = 0.05    # nats
REL_THRESHOLD = 0.5     # fraction of the base value


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def results_dir_of(config: str) -> str:
    from asv.config import Config

    path = Config.load(config).results_dir
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(config)), path)


def load_results(results_dir: str, machine: str, commit: str, prefer_env: str | None = None):
    """The results of ``commit`` on ``machine``; with several environments, the one named
    ``prefer_env`` if present, else the most recently written. None when there are none."""
    from asv.results import Results

    folder = os.path.join(results_dir, machine)
    if not os.path.isdir(folder):
        return None
    paths = [os.path.join(folder, f) for f in os.listdir(folder)
             if f.startswith(commit[:8] + "-") and f.endswith(".json")]
    found = []
    for path in paths:
        res = Results.load(path, machine_name=machine)
        if res.commit_hash == commit:
            found.append((os.path.getmtime(path), res))
    if not found:
        return None
    for _, res in found:
        if res.env_name == prefer_env:
            return res
    return max(found, key=lambda pair: pair[0])[1]


def tracked_values(res) -> dict[str, dict[tuple, float | None]]:
    """{benchmark: {parameter tuple: value}} for the track_ benchmarks of one results file.
    A failed or skipped value is None."""
    out = {}
    for key in res.get_all_result_keys():
        if not key.rsplit(".", 1)[-1].startswith("track_"):
            continue
        params = res.get_result_params(key)
        values = res.get_result_value(key, params)
        combos = list(itertools.product(*params)) if params else [()]
        if not params:
            values = [values]
        out[key] = {combo: (v if v is not None and math.isfinite(v) else None)
                    for combo, v in zip(combos, values)}
    return out


def label(key: str, combo: tuple) -> str:
    return f"{key}({', '.join(combo)})" if combo else key


def fmt(v: float | None) -> str:
    return "failed" if v is None else f"{v:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="asv.conf.json")
    ap.add_argument("--machine", default="ci")
    ap.add_argument("--commit", default="HEAD", help="the commit under test (default HEAD)")
    ap.add_argument("--base", help="the commit to compare with (default: nearest ancestor with results)")
    ap.add_argument("--search-depth", type=int, default=50, help="ancestors to look through for a base")
    ap.add_argument("--abs-threshold", type=float, default=ABS_THRESHOLD)
    ap.add_argument("--rel-threshold", type=float, default=REL_THRESHOLD)
    args = ap.parse_args(argv)

    results_dir = results_dir_of(args.config)
    try:
        head = git("rev-parse", "--verify", args.commit + "^{commit}")
    except subprocess.CalledProcessError:
        print(f"asv gate: unknown commit {args.commit!r}")
        return 2
    new = load_results(results_dir, args.machine, head)
    if new is None:
        print(f"asv gate: no results for {head[:8]} on machine {args.machine!r} in {results_dir}; "
              f"record them first: asv run --python=same --machine {args.machine} --set-commit-hash={head}")
        return 2

    if args.base:
        candidates = [git("rev-parse", "--verify", args.base + "^{commit}")]
    else:
        try:
            candidates = git("rev-list", "--first-parent", f"--max-count={args.search_depth}",
                             head + "~1").split()
        except subprocess.CalledProcessError:  # a root commit has no parent
            candidates = []
    old = None
    for base in candidates:
        old = load_results(results_dir, args.machine, base, prefer_env=new.env_name)
        if old is not None:
            break
    if old is None and args.base:
        print(f"asv gate: no results for the base {args.base} on machine {args.machine!r}")
        return 2
    if old is None:
        print(f"asv gate: no results for the {args.search_depth} commits before {head[:8]} on machine "
              f"{args.machine!r}: nothing to compare, passing")
        return 0
    base = old.commit_hash

    print(f"asv gate: {base[:8]} (base) -> {head[:8]} on machine {args.machine!r}")
    if old.env_name != new.env_name:
        print(f"asv gate: note: the two commits ran in different environments "
              f"({old.env_name} vs {new.env_name}); asv compare pairs only equal ones")
    compare = subprocess.run([sys.executable, "-m", "asv", "compare", "--config", args.config,
                              "--machine", args.machine, "--split", base, head],
                             capture_output=True, text=True)
    print(compare.stdout + compare.stderr, flush=True)

    old_vals, new_vals = tracked_values(old), tracked_values(new)
    regressions, lines = [], []
    for key in sorted(set(old_vals) | set(new_vals)):
        if key not in new_vals or key not in old_vals:
            lines.append(f"  {key}: only at {'base' if key in old_vals else 'head'}, not compared")
            continue
        v_old, v_new = old.benchmark_version.get(key), new.benchmark_version.get(key)
        if v_old != v_new:
            lines.append(f"  {key}: benchmark version changed, not compared")
            continue
        combos = list(new_vals[key]) + [c for c in old_vals[key] if c not in new_vals[key]]
        for combo in combos:
            name = label(key, combo)
            if combo not in old_vals[key] or combo not in new_vals[key]:
                lines.append(f"  {name}: only at {'base' if combo in old_vals[key] else 'head'}, not compared")
                continue
            a, b = old_vals[key][combo], new_vals[key][combo]
            if a is None:
                verdict = "no base value"
            elif b is None:
                verdict = "REGRESSED (no value now)"
                regressions.append(f"{name}: {fmt(a)} -> failed")
            elif b > a + args.abs_threshold and b > (1 + args.rel_threshold) * a:
                verdict = "REGRESSED"
                regressions.append(f"{name}: {a:.4f} -> {b:.4f} nats (+{b - a:.4f}, x{b / a:.2f})"
                                   if a > 0 else f"{name}: {a:.4f} -> {b:.4f} nats (+{b - a:.4f})")
            else:
                verdict = "ok"
            lines.append(f"  {name:52s} {fmt(a):>8s} -> {fmt(b):>8s}  {verdict}")

    rule = (f"fails when new > old + {args.abs_threshold:g} and new > {1 + args.rel_threshold:g} x old")
    print(f"asv gate: tracked accuracy (|estimate - truth|, nats; {rule}):")
    print("\n".join(lines) if lines else "  (no track_ benchmarks)")
    if regressions:
        print(f"asv gate: FAILED: {len(regressions)} accuracy regression(s) from {base[:8]} to {head[:8]}:")
        for r in regressions:
            print(f"  {r}")
        return 1
    print("asv gate: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
