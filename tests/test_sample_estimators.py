"""Sample estimators through the planner, runner and reporter; bound-option axes; --grids; units."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from mibench.cli import main
from mibench.executors import sweep
from mibench.interface import ConfigError
from mibench.plan import expand, plan_sweep
from mibench.runspec import RunSpec
from mibench.presets import load_preset
from mibench.report import estimator_labels, make_report
from mibench.results import load_rows
from mibench.stats import in_units, summarize

# A 2+2-dimensional Gaussian with a non-diagonal covariance (gaussian_cov): its truth is analytic.
COV = [[1.0, 0.3, 0.5, 0.1], [0.3, 1.0, 0.2, 0.4], [0.5, 0.2, 1.0, 0.25], [0.1, 0.4, 0.25, 1.0]]

CLASSICAL = f"""
name = "classical"
[task]
family = "gaussian_cov"
cov = {json.dumps(COV)}
dim_x = 2
[train]
n_samples = {{n}}
[[grid]]
name = "classical"
estimators = ["cca", "ksg", "histogram"]
k = 5
bins = 12
seeds = [0, 1]
"""


def _preset(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_sample_estimators_record_rows_with_empty_training_columns(tmp_path):
    """CCA is exact for a Gaussian: with n = 100,000 it lands within 0.01 nats of the analytic
    truth; KSG and the histogram land within their known small-sample biases (0.1 nats here)."""
    out = tmp_path / "out"
    df = sweep(_preset(tmp_path, CLASSICAL.format(n=100_000)), out=out, progress=False)
    assert len(df) == 6 and (df["status"] == "ok").all()
    truth = float(df["mi_true"].iloc[0])
    cov = np.array(COV)
    analytic = 0.5 * (np.linalg.slogdet(cov[:2, :2])[1] + np.linalg.slogdet(cov[2:, 2:])[1] - np.linalg.slogdet(cov)[1])
    assert truth == pytest.approx(analytic, abs=1e-9)
    by = df.groupby("bound")["mi_estimate"]
    assert np.abs(by.get_group("cca") - truth).max() < 0.01
    assert np.abs(by.get_group("ksg") - truth).max() < 0.1
    assert np.abs(by.get_group("histogram") - truth).max() < 0.1       # 2+2 dims, 12 bins per axis
    rows = load_rows(out)
    for r in rows:
        assert r["estimator_kind"] == "sample" and r["library"] == "mibench" and r["n_samples"] == 100_000
        assert r["steps"] is None and r["critic"] is None and r["lr"] is None and r["n_negatives"] is None
        assert r["estimate_s"] > 0 and r["pairs_per_s"] > 0
    assert {r["bound"]: r["bound_options"] for r in rows} == {"cca": {}, "ksg": {"k": 5},
                                                              "histogram": {"bins": 12, "correction": "miller-madow"}}
    # the same sample for every estimator of a seed; another seed draws another
    assert df[df["seed"] == 0]["mi_estimate"].tolist() != df[df["seed"] == 1]["mi_estimate"].tolist()
    assert plan_sweep(_preset(tmp_path, CLASSICAL.format(n=100_000)), out=out).n_todo == 0   # resumed


def test_sample_runs_are_reproducible_and_ids_hash_what_they_estimate(tmp_path):
    p = _preset(tmp_path, CLASSICAL.format(n=2000))
    a = sweep(p, out=tmp_path / "a", progress=False).sort_values("run_id")
    b = sweep(p, out=tmp_path / "b", progress=False).sort_values("run_id")
    assert a["run_id"].tolist() == b["run_id"].tolist()
    assert a["mi_estimate"].tolist() == b["mi_estimate"].tolist()
    specs = expand(load_preset(p))
    assert len({s.run_id for s in specs}) == 6
    spec = specs[0]
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))).run_id == spec.run_id
    other = expand(load_preset(_preset(tmp_path, CLASSICAL.format(n=3000), "q.toml")))
    assert not {s.run_id for s in specs} & {s.run_id for s in other}    # the sample size is part of it


def test_a_sample_grid_needs_n_samples_and_takes_no_staircase(tmp_path):
    text = CLASSICAL.format(n=100).replace("n_samples = 100\n", "")
    with pytest.raises(ConfigError, match="sample estimators need n_samples"):
        expand(load_preset(_preset(tmp_path, text)))
    text = """
name = "s"
[task]
family = "gaussian"
dim = 2
[train]
staircase = [1.0, 2.0]
[[grid]]
estimators = ["ksg"]
"""
    with pytest.raises(ConfigError, match="n_samples"):
        expand(load_preset(_preset(tmp_path, text, "s.toml")))


def test_bad_sample_estimators_are_error_rows_and_the_sweep_goes_on(tmp_path):
    text = CLASSICAL.format(n=500).replace('["cca", "ksg", "histogram"]', '["cca", "ksgg", "histogram"]')
    text = text.replace("seeds = [0, 1]", "seeds = [0]") + """
[[grid]]
name = "high"
estimators = ["histogram"]
bins = 1
"""
    df = sweep(_preset(tmp_path, text), out=tmp_path / "out", progress=False)
    status = dict(zip(df["grid"] + "/" + df["bound"], df["status"]))
    assert status == {"classical/cca": "ok", "classical/ksgg": "error", "classical/histogram": "ok",
                      "high/histogram": "error"}
    errors = dict(zip(df["grid"] + "/" + df["bound"], df["error"]))
    assert "unknown sample estimator 'ksgg'; did you mean 'ksg'" in errors["classical/ksgg"]
    assert "bins must be an integer >= 2, got 1" in errors["high/histogram"]


def test_a_list_of_bound_options_is_an_axis_and_other_bounds_run_once(tmp_path):
    text = """
name = "taus"
[task]
family = "gaussian"
dim = 2
mi = 0.5
[estimator]
tau = [1.0, 5.0, inf]
[train]
steps = 10
batch_size = 16
[[grid]]
name = "g"
bounds = ["infonce", "smile"]
"""
    specs = expand(load_preset(_preset(tmp_path, text)))
    taus = sorted(dict(s.estimator.options).get("tau") for s in specs if s.estimator.bound == "smile")
    assert taus == [1.0, 5.0, math.inf]
    assert sum(s.estimator.bound == "infonce" for s in specs) == 1
    df = sweep(_preset(tmp_path, text), out=tmp_path / "out", progress=False)
    summary = summarize(df)
    assert sorted(summary["options"]) == ["", "tau=1", "tau=5", "tau=inf"]   # one cell per tau
    rows = load_rows(tmp_path / "out")                                    # inf survives JSON
    assert {RunSpec.from_dict(r["spec"]).run_id for r in rows} == {r["run_id"] for r in rows}


def test_grids_selects_grids_and_names_the_known_ones():
    preset = load_preset("gaussian_staircase")
    joint = expand(preset, overrides={"grids": ["joint"], "seeds": [0]})
    assert {s.grid for s in joint} == {"joint"} and len(joint) == 7           # 4 bounds + SMILE at 3 taus
    assert {s.estimator.hidden for s in joint} == {(256, 256, 256)}
    with pytest.raises(ConfigError, match="unknown grid of gaussian_staircase 'cubic'; did you mean"):
        expand(preset, overrides={"grids": ["cubic"]})
    assert main(["run", "--task", "gaussian_staircase", "--grids", "nope", "--dry-run"]) == 2


def test_units_bits_scale_every_mi_column_and_relabel_the_tables(tmp_path):
    df = sweep(_preset(tmp_path, CLASSICAL.format(n=2000)), out=tmp_path / "out", progress=False)
    nats = summarize(df)
    bits = in_units(nats, "bits")
    for col in ("mi_true", "mean", "bias", "sd", "bias_ci_low"):
        assert np.allclose(bits[col], nats[col] / math.log(2), equal_nan=True)
    assert np.allclose(bits["mse"], nats["mse"] / math.log(2) ** 2)
    result = make_report(tmp_path / "out", tmp_path / "rep", units="bits")
    md = (tmp_path / "rep" / "summary.md").read_text()
    assert "estimate [bits]" in md and "[nats]" not in md
    csv = pd.read_csv(tmp_path / "rep" / "summary.csv")
    assert np.allclose(sorted(csv["true MI [bits]"]), sorted(nats["mi_true"] / math.log(2)))
    assert result["figures"]                                              # drawn in bits too
    with pytest.raises(ValueError, match="allowed: nats, bits"):
        in_units(nats, "bans")


def test_estimator_labels_name_the_library_and_only_what_varies():
    s = pd.DataFrame({"task": "t", "task_params": ["a", "a", "a", "b"], "library": ["mibench", "torch-mist", "mibench",
                                                                                   "mibench"],
                      "bound": ["infonce", "infonce", "infonce", "infonce"], "options": "", "critic": ["joint", "joint",
                                                                                                     "separable", "joint"]})
    assert estimator_labels(s).tolist() == ["infonce, critic=joint", "infonce (torch-mist), critic=joint",
                                            "infonce, critic=separable", "infonce, critic=joint"]


def test_report_ranks_estimators_over_tasks_and_draws_them_against_the_truth(tmp_path):
    text = """
name = "rank"
[task]
family = "gaussian"
dim = 2
[train]
n_samples = 2000
[[grid]]
name = "classical"
estimators = ["cca", "ksg", "histogram"]
task = { mi = [0.25, 0.5, 1.0, 1.5] }
seeds = [0, 1]
"""
    sweep(_preset(tmp_path, text), out=tmp_path / "out", progress=False)
    result = make_report(tmp_path / "out")
    ranking = result["ranking"]
    assert ranking.n_tasks == 4 and ranking.n_estimators == 3
    # CCA is exact here: the best mean rank of |bias|
    assert ranking.table.iloc[0]["estimator"] == "cca"
    names = {p.name for p in result["figures"]}
    assert {"cd_diagram.png", "estimate_vs_truth.png", "truth.png"} <= names
    md = (tmp_path / "out" / "ranking.md").read_text()
    assert "Friedman" in md and "ksg" in md


def test_report_writes_a_task_by_estimator_table_when_tasks_differ_in_more_than_their_mi(tmp_path):
    """Two Gaussians of equal MI in 2 and 3 dimensions: not an MI level table, so the report
    writes task_table (a row per task, "bias ± sd" per estimator, its seeds and seconds), whose
    cells are the summary's own numbers; in bits they scale by 1/ln 2."""
    text = """
name = "tasks"
[task]
family = "gaussian"
mi = 0.5
[train]
n_samples = 2000
[[grid]]
name = "classical"
estimators = ["cca", "ksg"]
task = { dim = [2, 3] }
seeds = [0, 1, 2]
"""
    sweep(_preset(tmp_path, text), out=tmp_path / "out", progress=False)
    result = make_report(tmp_path / "out")
    assert not (tmp_path / "out" / "mi_table.md").exists()
    md = (tmp_path / "out" / "task_table.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["task", "true MI [nats]", "cca", "ksg"]
    rows = {c[0]: c for c in ([x.strip() for x in ln.strip("|").split("|")] for ln in lines[2:])}
    assert set(rows) == {"dim=2", "dim=3", "seeds per task", "median s per run"}
    s = result["summary"]
    for name, dim in (("dim=2", 2), ("dim=3", 3)):
        cell = s[(s["bound"] == "cca") & s["task_params"].str.contains(f'"dim": {dim}')].iloc[0]
        assert rows[name][2] == f"{cell['bias']:+.3f} ± {cell['sd']:.3f}"
        assert abs(cell["bias"]) < 0.05              # CCA on 2,000 Gaussian pairs: near exact
    assert rows["seeds per task"][2:] == ["3", "3"]
    wide = pd.read_csv(tmp_path / "out" / "task_table.csv")
    assert {"cca bias [nats]", "cca sd [nats]", "ksg seeds", "ksg s"} <= set(wide.columns)

    make_report(tmp_path / "out", tmp_path / "bits", units="bits")
    bits = pd.read_csv(tmp_path / "bits" / "task_table.csv")
    assert np.allclose(bits["cca bias [bits]"], wide["cca bias [nats]"] / math.log(2))
    assert np.allclose(bits["true MI [bits]"], wide["true MI [nats]"] / math.log(2))
    assert "true MI [bits]" in (tmp_path / "bits" / "task_table.md").read_text()


def test_an_external_command_with_an_unknown_placeholder_is_an_error_row(tmp_path):
    text = """
name = "ext"
[task]
family = "gaussian"
dim = 2
mi = 0.5
[train]
n_samples = 100
[[grid]]
estimators = ["external"]
command = "{python} -c 'print(1)' {x} {y} {z}"
"""
    df = sweep(_preset(tmp_path, text), out=tmp_path / "out", progress=False)
    assert df["status"].tolist() == ["error"]
    assert "cannot fill in the command" in df["error"].iloc[0] and "{seed}" in df["error"].iloc[0]
