"""The training protocol (held-out evaluations every eval_every steps, early stopping, the
reported estimate) and the data options of a fixed sample (standardize, batches): BMI's protocol
is one configuration of them, and leaving them out changes no run."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from conftest import TINY_HEAD, gen
from mibench.cli import main
from mibench.distributions import CorrelatedGaussian
from mibench.estimators import build_estimator
from mibench.executors import sweep
from mibench.finite import FiniteSample, standardize_together
from mibench.interface import ConfigError
from mibench.plan import expand
from mibench.presets import load_preset
from mibench.protocol import EarlyStopping
from mibench.results import TRACES_FILE, load_results, load_rows
from mibench.runner import Workspace, build
from mibench.train import fit, fit_batched

REPO = Path(__file__).resolve().parents[1]
TASK = CorrelatedGaussian(2, mi=0.5)
GRID = "[[grid]]\nbounds = ['infonce', 'nwj']\nseeds = [0, 1]\n"


def preset(tmp_path, train_extra: str = "", steps: int = 200, grid: str = GRID, eval_extra: str = "",
           name: str = "proto.toml") -> str:
    """The tiny Gaussian preset with ``train_extra`` added to its [train] table."""
    text = TINY_HEAD.format(steps=steps).replace("[eval]\n", train_extra + "[eval]\n" + eval_extra)
    path = tmp_path / name
    path.write_text(text + grid)
    return str(path)


# --------------------------------------------------------------------------------------------
# The stopping rule


def stop_index(values, patience):
    """The 1-based evaluation after which EarlyStopping stops, or None; and its best (step, value)."""
    rule = EarlyStopping(patience)
    for i, v in enumerate(values, start=1):
        if rule.update(10 * i, v):
            return i, (rule.best_step, rule.best)
    return None, (rule.best_step, rule.best)


@pytest.mark.parametrize("values,stop,best", [
    ([0.1, 0.2, 0.3, 0.4], None, (40, 0.4)),              # always improving: never stops
    ([0.1, 0.3, 0.2, 0.25, 0.9], 4, (20, 0.3)),           # two in a row without a new best
    ([0.1, 0.3, 0.2, 0.3, 0.9], 4, (20, 0.3)),            # an equal value is not a new best
    ([0.1, 0.3, 0.2, 0.31, 0.2, 0.1], 6, (40, 0.31)),      # a new best resets the count
    ([0.5, math.nan, math.nan, 0.9], 3, (10, 0.5)),       # NaN is never a new best
    ([0.3, 0.1], None, (10, 0.3)),                        # one evaluation without a best: go on
])
def test_early_stopping_is_bmis_rule(values, stop, best):
    """BMI's TrainingLog: a strictly greater value is a new best (the count back to 0), anything
    else counts one; training stops when the count exceeds 1, i.e. patience = 2."""
    assert stop_index(values, 2) == (stop, best)


def test_patience_counts_evaluations_and_none_never_stops():
    values = [1.0, 0.9, 0.8, 0.7, 0.6]
    assert [stop_index(values, p)[0] for p in (1, 2, 3, 4, 5)] == [2, 3, 4, 5, None]
    assert stop_index(values, None) == (None, (10, 1.0))


def scripted(values_per_model):
    """A monitor that returns the next scripted held-out value of each model, and the steps it was
    called at."""
    calls = []

    def monitor(step):
        calls.append(step)
        return [(v[len(calls) - 1], 0.0) for v in values_per_model]

    return monitor, calls


def test_fit_evaluates_every_eval_every_steps_and_stops_where_the_rule_says():
    est = build_estimator({"bound": "infonce", "hidden": [8], "critic_dim": 4}, (2,), (2,))
    monitor, calls = scripted([[0.1, 0.3, 0.2, 0.25, 0.9, 1.0]])
    res = fit(est, TASK, steps=100, batch_size=16, lr=1e-3, n_negatives=15, generator=gen(0), log_every=3,
              monitor=monitor, eval_every=7, patience=2)
    assert calls == [7, 14, 21, 28]                     # steps counted from 1, stopped right after the 4th
    assert res.steps == 28 and res.best_step == 14 and res.best == (14, 0.3, 0.0)
    assert [h[:2] for h in res.heldout] == [(7, 0.1), (14, 0.3), (21, 0.2), (28, 0.25)]
    assert res.trace[-1][0] <= 27                       # nothing trained after the stop


def test_a_model_that_stops_keeps_its_weights_while_batched_siblings_train_on():
    spec = {"bound": "infonce", "hidden": [8], "critic_dim": 4}
    ests = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ests.append(build_estimator(spec, (2,), (2,)))
    seen = {}

    def monitor(step):
        seen[step] = [{k: p.detach().clone() for k, p in e.named_parameters()} for e in ests]
        return [(-step, 0.0), (step, 0.0)]       # model 0 never improves, model 1 always does

    results = fit_batched(ests, TASK, steps=40, batch_size=16, lr=1e-2, n_negatives=15,
                          generators=[gen(0), gen(1)], monitor=monitor, eval_every=5, patience=2)
    assert [r.steps for r in results] == [15, 40] and [r.best_step for r in results] == [5, 40]
    assert [h[0] for h in results[0].heldout] == [5, 10, 15]
    for name, p in ests[0].named_parameters():
        assert torch.equal(p, seen[15][0][name]), name       # its weights of step 15
        assert not torch.equal(seen[40][1][name], seen[15][1][name])     # model 1 trained on
    for name, p in ests[1].named_parameters():
        assert torch.equal(p, seen[40][1][name]), name


# --------------------------------------------------------------------------------------------
# Runs under the protocol


def test_a_run_under_bmis_rule_records_best_final_and_the_heldout_trace(tmp_path):
    out = tmp_path / "out"
    df = sweep(preset(tmp_path, 'eval_every = 10\npatience = 2\nreport = "best"\n'), out=out, progress=False)
    assert len(df) == 4 and (df["status"] == "ok").all()
    assert (df["steps_trained"] < 200).any()            # the rule did stop a run early here
    traces = {t["run_id"]: t for t in map(json.loads, (out / TRACES_FILE).read_text().splitlines())}
    for row in load_rows(out):
        trace = traces[row["run_id"]]
        assert row["steps"] == 200 and row["steps_trained"] <= 200
        assert row["best_step"] % 10 == 0 and row["best_step"] <= row["steps_trained"]
        assert row["mi_estimate"] == row["mi_estimate_best"] == max(trace["heldout_estimate"])
        assert trace["heldout_step"] == list(range(10, row["steps_trained"] + 1, 10))
        assert trace["heldout_estimate"][trace["heldout_step"].index(row["best_step"])] == row["mi_estimate_best"]
        # the final estimate is the evaluation after the last step: the same held-out batches
        assert row["mi_estimate_final"] == pytest.approx(trace["heldout_estimate"][-1], abs=1e-6)
        if row["steps_trained"] < 200:                # stopped: two evaluations without a new best
            assert trace["heldout_step"][-3] == row["best_step"]
    frame = load_results(out)
    assert {"mi_estimate_final", "mi_estimate_best", "best_step", "steps_trained"} <= set(frame)


def test_the_final_estimate_reuses_an_evaluation_at_the_last_step(monkeypatch):
    """The protocol's evaluation at the last step trained is the final one (same weights, the
    generator seeded afresh), so it is not computed again; after steps it did not evaluate, or
    without a protocol, the final estimate is computed."""
    import mibench.runner as runner
    from mibench.train import FitResult

    calls = []
    monkeypatch.setattr(runner, "evaluate_run", lambda *a, **k: calls.append(1) or (0.5, 0.1))
    at_last = FitResult(steps=30, heldout=[(10, 0.2, 0.0), (20, 0.4, 0.0), (30, 0.3, 0.01)])
    assert runner.final_estimate(None, None, None, at_last) == (0.3, 0.01) and not calls
    for fitted in (FitResult(steps=35, heldout=at_last.heldout), FitResult(steps=30)):
        assert runner.final_estimate(None, None, None, fitted) == (0.5, 0.1)
    assert len(calls) == 2


def test_evaluating_changes_no_training_step_and_new_options_are_new_runs(tmp_path):
    """eval_every alone (report final, no patience) trains exactly as without it: the monitor
    draws from no training generator. It still is a run of its own (its rows hold the trace)."""
    grid = "[[grid]]\nbounds = ['infonce']\n"
    plain = sweep(preset(tmp_path, steps=40, grid=grid), out=tmp_path / "a", progress=False)
    watched = sweep(preset(tmp_path, "eval_every = 10\n", steps=40, grid=grid, name="b.toml"),
                    out=tmp_path / "b", progress=False)
    assert watched["mi_estimate"].tolist() == plain["mi_estimate"].tolist()
    assert watched["mi_estimate_final"].tolist() == plain["mi_estimate_final"].tolist()
    assert plain["best_step"].isna().all() and plain["mi_estimate_best"].isna().all()
    assert plain["steps_trained"].tolist() == [40] and watched["best_step"].notna().all()
    assert set(plain["run_id"]).isdisjoint(watched["run_id"])
    assert "eval_every" not in expand(load_preset(preset(tmp_path, steps=40)))[0].identity()


# Run ids of the presets behind committed results, computed before these options existed:
# (runs, a digest of their sorted ids). Options added since enter a run's identity only when
# set. (bmi_v2 and bmi are not here: they were rewritten to follow BMI's protocol, which sets
# them.)
PRESET_IDS = {"gaussian": (200, "eff3dea0a8215bf6"),
              "bmi_quick": (320, "5e5b2086adf86ba4"), "compare": (60, "52aaaa2bd1aa54a9"),
              "paired_mnist": (70, "78d65b8f289984db"), "gaussian_staircase": (112, "517b0bf98f360987"),
              "gaussian_staircase_small": (40, "0410dba99340f56e")}


@pytest.mark.parametrize("name", list(PRESET_IDS))
def test_existing_presets_keep_their_run_ids(name):
    ids = sorted(s.run_id for s in expand(load_preset(name)))
    assert (len(ids), hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]) == PRESET_IDS[name]


@pytest.mark.parametrize("name", ["bmi_quick", "compare", "gaussian", "paired_mnist", "gaussian_staircase",
                                  "gaussian_staircase_small", "bmi", "bmi_v2"])
def test_recorded_reference_rows_still_resume(name):
    """Every committed row is a run its preset plans today: none is left over from settings since
    changed (the BMI suites' MINE sampling and first layer, for example)."""
    recorded = {r["run_id"] for r in load_rows(REPO / "results" / "reference" / name)}
    assert recorded and recorded <= {s.run_id for s in expand(load_preset(name))}


BAD = {
    "eval_every 0": ("eval_every = 0\n", "eval_every must be a positive integer, got 0"),
    "patience 0": ("eval_every = 10\npatience = 0\n", "patience must be a positive integer, got 0"),
    "patience alone": ("patience = 2\n", "patience = 2 needs eval_every"),
    "best alone": ('report = "best"\n', "report = 'best' needs eval_every"),
    "median": ('eval_every = 10\nreport = "median"\n', "report must be one of final, best, got 'median'"),
    "too rare": ("eval_every = 500\n", "eval_every must be at most the 200 training steps"),
    "staircase": ("eval_every = 10\nstaircase = [0.5, 1.0]\n", "a staircase"),
    "standardize stream": ("standardize = true\n", "standardize applies to fixed samples; it needs n_samples"),
    "standardize text": ('standardize = "yes"\n', "standardize must be true or false, got 'yes'"),
    "batches": ('n_samples = 64\nbatches = "random"\n', "batches must be one of epochs, independent, got 'random'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_protocol_values_are_one_line(case, tmp_path, capsys):
    extra, message = BAD[case]
    out = tmp_path / "out"
    assert main(["run", "--task", preset(tmp_path, extra), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mibench: error: ") and message in err, err
    assert not out.exists()


def test_bmi_rescale_sample_points_to_standardize():
    from mibench.distributions.bmi import bmi_task

    with pytest.raises(ConfigError, match="standardize = true"):
        bmi_task("1v1-AI", rescale="sample")


# --------------------------------------------------------------------------------------------
# Data options of a fixed sample


def test_standardize_uses_the_union_of_training_and_heldout_samples(tmp_path):
    """BMI standardises its whole sample before splitting it: the union of a run's two samples
    has mean 0 and sd 1 (ddof 0) per coordinate, each sample alone does not, the map is the
    per-coordinate affine one, and the truth is the task's."""
    text = ('name = "std"\n[task]\nfamily = "bmi"\nname = "1v1-additive-0.75"\n[train]\nsteps = 5\nbatch_size = 16\n'
            'n_samples = 300\nstandardize = {}\n[eval]\nn_samples = 200\nbatch_size = 100\n[[grid]]\n')
    (tmp_path / "on.toml").write_text(text.format("true"))
    (tmp_path / "off.toml").write_text(text.format("false"))
    on, off = (expand(load_preset(str(tmp_path / f"{k}.toml")))[0] for k in ("on", "off"))
    assert on.run_id != off.run_id and "standardize" not in off.identity()
    a, b = build([on], Workspace()), build([off], Workspace())
    for side in ("x", "y"):
        union = torch.cat([getattr(a.levels[0], side), getattr(a.heldout, side)]).double()
        assert union.mean(0).abs().max() < 1e-6
        assert union.std(0, correction=0).sub(1).abs().max() < 1e-6
        assert getattr(a.heldout, side).double().mean(0).abs().max() > 1e-3      # not each on its own
        raw = torch.cat([getattr(b.levels[0], side), getattr(b.heldout, side)]).double()
        expected = (raw - raw.mean(0)) / raw.std(0, correction=0)
        assert torch.allclose(union, expected, atol=1e-5)
    assert a.levels[0].ground_truth() == b.levels[0].ground_truth() == a.heldout.ground_truth()


def test_a_constant_coordinate_is_only_centred():
    class Pair:
        def __init__(self, x, y):
            self.x, self.y = x, y

    p, q = Pair(torch.tensor([[1.0, 3.0], [3.0, 3.0]]), torch.zeros(2, 1)), Pair(torch.tensor([[5.0, 3.0]]),
                                                                                  torch.ones(1, 1))
    standardize_together(p, q)
    assert torch.equal(torch.cat([p.x, q.x])[:, 1], torch.zeros(3))
    assert torch.cat([p.x, q.x])[:, 0].std(correction=0).item() == pytest.approx(1.0)
    assert torch.cat([p.y, q.y]).std(correction=0).item() == pytest.approx(1.0)


def test_independent_batches_are_drawn_anew_each_step():
    """batches = "epochs" goes through the sample once per epoch; "independent" (BMI's) draws
    each batch without replacement, independently of the others, so an epoch's worth repeats."""
    epochs = FiniteSample(TASK, 64, gen(0))
    independent = FiniteSample(TASK, 64, gen(0), draw="independent")
    g, h = gen(1), gen(1)
    seen_e = torch.cat([epochs.sample(16, generator=g)[0] for _ in range(4)])
    seen_i = torch.cat([independent.sample(16, generator=h)[0] for _ in range(4)])
    assert len(set(seen_e[:, 0].tolist())) == 64
    assert len(set(seen_i[:, 0].tolist())) < 64
    assert all(len(set(seen_i[k:k + 16, 0].tolist())) == 16 for k in range(0, 64, 16))
    with pytest.raises(ConfigError, match="batches must be one of epochs, independent"):
        FiniteSample(TASK, 64, gen(0), draw="shuffle")


def test_protocol_options_travel_with_the_spec(tmp_path):
    """Workers get their runs as JSON: the options survive the round trip, and old specs
    (without them) read as the defaults."""
    from mibench.runspec import RunSpec

    spec = expand(load_preset(preset(tmp_path, 'n_samples = 64\neval_every = 10\npatience = 3\nreport = "best"\n'
                                     'standardize = true\nbatches = "independent"\n')))[0]
    again = RunSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.run_id == spec.run_id
    assert (again.eval_every, again.patience, again.report, again.standardize, again.batches) == \
        (10, 3, "best", True, "independent")
    old = {k: v for k, v in spec.to_dict().items()
           if k not in ("eval_every", "patience", "report", "standardize", "batches")}
    assert RunSpec.from_dict(old).identity() == {k: v for k, v in spec.identity().items()
                                                  if k not in ("eval_every", "patience", "report", "standardize",
                                                               "batches")}


def test_runs_under_two_protocols_are_two_cells_in_tables_and_figures():
    """Two sweeps that differ only in their training protocol (the final estimate, and BMI's
    best held-out one) are kept apart by the summary, and each is its own line in the bias
    figure, named by its protocol: nothing averages them."""
    from mibench import figures as F
    from mibench.results import protocol_text, to_frame
    from mibench.stats import summarize

    bmi = {"eval_every": 250, "patience": 2, "report": "best", "standardize": True, "batches": "independent"}
    assert protocol_text({"spec": {"eval_every": None, "report": "final"}}) == ""
    assert protocol_text({"spec": bmi}) == "eval_every=250, patience=2, report=best, standardize=true, batches=independent"

    def row(i, mi, protocol, estimate):
        spec = {"seed": i, **(bmi if protocol else {})}
        return dict(run_id=f"{protocol}{mi}{i}", task="t", grid="g", bound="infonce", critic="joint", encoder="identity",
                    n_negatives=255, batch_size=256, device="cpu", seed=i, steps=10000, family="gaussian",
                    task_params={"mi": mi}, status="ok", mi_true=mi, mi_estimate=estimate, mi_std=0.1,
                    pairs_per_s=1.0, steps_per_s=1.0, staircase=[], spec=spec)

    rows = [row(i, mi, p, mi - (0.1 if p else 0.4) + 0.01 * i) for p in ("", "bmi") for mi in (1.0, 2.0) for i in (0, 1)]
    cells = summarize(to_frame(rows))
    assert len(cells) == 4 and sorted(cells["protocol"].unique()) == ["", protocol_text({"spec": bmi})]
    fig = F.fig_bias_sd(cells)
    drawn = sorted((round(float(x), 6), round(float(y), 6)) for c in fig.axes[0].containers
                   for x, y in zip(c.lines[0].get_xdata(), c.lines[0].get_ydata()))
    assert drawn == sorted(zip(cells["mi_true"].round(6), cells["bias"].round(6)))
    legend = [t.get_text() for t in fig.legends[0].get_texts()] if fig.legends else []
    assert any("report=best" in t for t in legend)
