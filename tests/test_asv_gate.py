"""CI's accuracy gate over asv results (.ci/asv_gate.py), end to end.

Each test makes a small git repository (three commits on one line), writes asv 0.6 results
files for some of its commits with asv's own ``Results`` class (plus the ``machine.json`` and
``benchmarks.json`` that asv keeps beside them) and runs the gate as CI does, as a subprocess in
that repository, checking its exit status and what it reports.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("asv")
from asv.results import Results  # noqa: E402
from asv.runner import BenchmarkResult  # noqa: E402

GATE = Path(__file__).resolve().parents[1] / ".ci" / "asv_gate.py"
MACHINE = "ci"
ENV = "existing-py_venv_bin_python"
TRACK = "accuracy.TrackBias.track_abs_bias"
TIME = "training.TimeGaussianStep.time_step"
BOUNDS = ["'nwj'", "'infonce'", "'club'"]        # asv stores parameter values as their repr


class Repo:
    """A git repository with commits c[0] <- c[1] <- c[2] and an asv.conf.json whose results_dir
    is ``results/`` inside it."""

    def __init__(self, root: Path):
        self.root = root
        self.results = root / "results"
        self._git("init", "-q")
        (root / "asv.conf.json").write_text(json.dumps({
            "version": 1, "project": "gate-test", "project_url": "#", "repo": ".", "dvcs": "git",
            "branches": ["HEAD"], "environment_type": "existing", "benchmark_dir": "benchmarks",
            "env_dir": ".asv/env", "results_dir": "results", "html_dir": ".asv/html"}))
        self.commits = []
        for i in range(3):
            self._git("commit", "-q", "--allow-empty", "-m", f"commit {i}")
            self.commits.append(self._git("rev-parse", "HEAD"))
        machine = {"machine": MACHINE, "os": "Linux", "arch": "x86_64", "cpu": "test cpu",
                   "num_cpu": "2", "ram": "1000000", "version": 1}
        (self.results / MACHINE).mkdir(parents=True)
        (self.results / MACHINE / "machine.json").write_text(json.dumps(machine))
        self._benchmarks = {}

    def _git(self, *args: str) -> str:
        env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
                   GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
        out = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=self.root, env=env,
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def record(self, commit: int, values: dict[str, list[float | None] | None], *,
               versions: dict[str, str] | None = None, params: dict[str, list[str]] | None = None) -> None:
        """Save asv results of commit c[commit]: {benchmark: one value per parameter (None: the
        benchmark failed for it), or None (it failed for all)}."""
        versions, params = versions or {}, params or {}
        res = Results({"machine": MACHINE, "python": "3.11"}, {}, self.commits[commit],
                      1_700_000_000_000 + commit, "3.11", ENV, {})
        for name, vals in values.items():
            ps = params.get(name, BOUNDS)
            n = len(ps)
            bench = {"name": name, "version": versions.get(name, "1"), "params": [ps],
                     "param_names": ["bound"], "type": "track" if ".track_" in name else "time",
                     "unit": "nats" if ".track_" in name else "seconds"}
            res.add_result(bench, BenchmarkResult(result=vals if vals is not None else [None] * n,
                                                  samples=[None] * n, number=[None] * n,
                                                  errcode=0 if vals is not None else 1, stderr="",
                                                  profile=None))
            self._benchmarks[name] = bench
        res.save(str(self.results))
        (self.results / "benchmarks.json").write_text(json.dumps({**self._benchmarks, "version": 2}))

    def gate(self, *args: str, commit: int | None = 2) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(GATE), "--machine", MACHINE]
        if commit is not None:
            cmd += ["--commit", self.commits[commit]]
        return subprocess.run(cmd + list(args), cwd=self.root, capture_output=True, text=True, timeout=120)


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path)


def line_of(out: str, bound: str) -> str:
    """The gate's report line for TrackBias with this parameter."""
    lines = [ln for ln in out.splitlines() if f"{TRACK}({bound})" in ln and "->" in ln]
    assert lines, out
    return lines[0]


def test_results_written_here_load_as_the_gate_reads_them(repo):
    repo.record(2, {TRACK: [0.1, None, float("nan")]})
    (path,) = (repo.results / MACHINE).glob(f"{repo.commits[2][:8]}-*.json")
    res = Results.load(str(path), machine_name=MACHINE)
    assert res.commit_hash == repo.commits[2] and res.env_name == ENV
    assert res.benchmark_version[TRACK] == "1"
    vals = res.get_result_value(TRACK, res.get_result_params(TRACK))
    assert vals[0] == 0.1 and vals[1] is None and math.isnan(vals[2])


def test_growth_over_both_thresholds_fails(repo):
    # nwj: +0.10 nats and x2 -> regression; the other two unchanged
    repo.record(1, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.20, 0.20, 1.30]})
    out = repo.gate()
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{repo.commits[1][:8]} (base) -> {repo.commits[2][:8]}" in out.stdout
    assert "REGRESSED" in line_of(out.stdout, "'nwj'")
    assert line_of(out.stdout, "'infonce'").endswith("ok")
    assert "FAILED: 1 accuracy regression(s)" in out.stdout
    assert f"{TRACK}('nwj'): 0.1000 -> 0.2000 nats" in out.stdout


def test_growth_under_either_threshold_passes(repo):
    # nwj:     0.02 -> 0.06: x3 but only +0.04 nats (under the absolute threshold)
    # infonce: 0.20 -> 0.28: +0.08 nats but only x1.4 (under the relative threshold)
    # club:    1.30 -> 0.90: better
    repo.record(1, {TRACK: [0.02, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.06, 0.28, 0.90]})
    out = repo.gate()
    assert out.returncode == 0, out.stdout + out.stderr
    for bound in BOUNDS:
        assert line_of(out.stdout, bound).endswith("ok")
    assert "asv gate: passed" in out.stdout


def test_thresholds_are_options(repo):
    # the second case above fails once the relative threshold is lowered to 30%
    repo.record(1, {TRACK: [0.02, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.06, 0.28, 0.90]})
    out = repo.gate("--rel-threshold", "0.3")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "REGRESSED" in line_of(out.stdout, "'infonce'")
    assert line_of(out.stdout, "'nwj'").endswith("ok")


@pytest.mark.parametrize("now", [None, float("nan"), float("inf")], ids=["failed", "nan", "inf"])
def test_a_value_that_failed_or_is_not_finite_now_fails(repo, now):
    repo.record(1, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.10, now, 1.30]})
    out = repo.gate()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "REGRESSED (no value now)" in line_of(out.stdout, "'infonce'")
    assert f"{TRACK}('infonce'): 0.2000 -> failed" in out.stdout


def test_a_benchmark_that_failed_for_every_parameter_fails(repo):
    repo.record(1, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(2, {TRACK: None})
    out = repo.gate()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED: 3 accuracy regression(s)" in out.stdout


def test_a_value_missing_at_the_base_is_not_gated(repo):
    repo.record(1, {TRACK: [0.10, None, 1.30]})
    repo.record(2, {TRACK: [0.10, 5.00, 1.30]})
    out = repo.gate()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no base value" in line_of(out.stdout, "'infonce'")


def test_a_changed_benchmark_version_is_listed_but_not_gated(repo):
    repo.record(1, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.90, 0.90, 9.00]}, versions={TRACK: "2"})
    out = repo.gate()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{TRACK}: benchmark version changed, not compared" in out.stdout
    assert "REGRESSED" not in out.stdout


def test_parameters_on_one_side_only_are_listed_but_not_gated(repo):
    repo.record(1, {TRACK: [0.10, 0.20]}, params={TRACK: ["'nwj'", "'infonce'"]})
    repo.record(2, {TRACK: [0.10, 3.00]}, params={TRACK: ["'nwj'", "'doe'"]})
    out = repo.gate()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{TRACK}('infonce'): only at base, not compared" in out.stdout
    assert f"{TRACK}('doe'): only at head, not compared" in out.stdout
    assert line_of(out.stdout, "'nwj'").endswith("ok")


def test_timings_are_not_gated(repo):
    repo.record(1, {TRACK: [0.10, 0.20, 1.30], TIME: [0.001, 0.001, 0.001]})
    repo.record(2, {TRACK: [0.10, 0.20, 1.30], TIME: [0.010, 0.010, 0.010]})   # 10x slower
    out = repo.gate()
    assert out.returncode == 0, out.stdout + out.stderr
    gated = out.stdout.split("asv gate: tracked accuracy", 1)[1]
    assert TIME not in gated and line_of(gated, "'nwj'").endswith("ok")


def test_the_base_is_the_nearest_ancestor_with_results(repo):
    # c[1] has no results: the gate compares c[2] with c[0], and finds the regression there
    repo.record(0, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.10, 0.20, 2.50]})
    out = repo.gate()
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{repo.commits[0][:8]} (base) -> {repo.commits[2][:8]}" in out.stdout
    assert "REGRESSED" in line_of(out.stdout, "'club'")


def test_explicit_base(repo):
    repo.record(0, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(1, {TRACK: [0.10, 0.20, 2.50]})
    repo.record(2, {TRACK: [0.10, 0.20, 2.50]})
    assert repo.gate().returncode == 0                      # against c[1]: unchanged
    out = repo.gate("--base", repo.commits[0])              # against c[0]: club regressed
    assert out.returncode == 1, out.stdout + out.stderr
    assert "REGRESSED" in line_of(out.stdout, "'club'")


def test_no_earlier_results_passes(repo):
    repo.record(2, {TRACK: [0.10, 0.20, 1.30]})
    out = repo.gate()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing to compare, passing" in out.stdout


def test_a_root_commit_passes(repo):
    repo.record(0, {TRACK: [0.10, 0.20, 1.30]})
    out = repo.gate(commit=0)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "nothing to compare" in out.stdout


def test_no_results_for_the_commit_exits_2(repo):
    repo.record(1, {TRACK: [0.10, 0.20, 1.30]})
    out = repo.gate()
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"no results for {repo.commits[2][:8]}" in out.stdout


def test_no_results_for_an_explicit_base_exits_2(repo):
    repo.record(2, {TRACK: [0.10, 0.20, 1.30]})
    out = repo.gate("--base", repo.commits[0])
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no results for the base" in out.stdout


def test_an_unknown_commit_exits_2(repo):
    repo.record(2, {TRACK: [0.10, 0.20, 1.30]})
    out = repo.gate("--commit", "no-such-ref", commit=None)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "unknown commit" in out.stdout


def test_results_of_another_machine_are_not_used(repo):
    repo.record(1, {TRACK: [0.10, 0.20, 1.30]})
    repo.record(2, {TRACK: [0.90, 0.20, 1.30]})
    out = subprocess.run([sys.executable, str(GATE), "--machine", "other", "--commit", repo.commits[2]],
                         cwd=repo.root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
