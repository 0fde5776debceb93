"""The finite-sample protocol (BMI's): train on a fixed sample of n pairs for some epochs, then
estimate on a fixed held-out sample; both the training and the held-out estimate are recorded."""

import pytest
import torch

from conftest import TINY_HEAD, gen
from mibench.cli import main
from mibench.distributions import CorrelatedGaussian
from mibench.executors import sweep
from mibench.plan import expand
from mibench.presets import load_preset
from mibench.finite import FiniteSample


def preset(tmp_path, train_extra: str, grid: str = "[[grid]]\nbounds = ['infonce', 'nwj']\n") -> str:
    text = TINY_HEAD.format(steps=1).replace("steps = 1\n", train_extra)
    path = tmp_path / "finite.toml"
    path.write_text(text + grid)
    return str(path)


def test_a_finite_sample_is_gone_through_once_per_epoch():
    task = CorrelatedGaussian(2, mi=0.5)
    sample = FiniteSample(task, 100, gen(0))
    g = gen(1)
    seen = torch.cat([sample.sample(25, generator=g)[0] for _ in range(4)])       # one epoch
    assert torch.equal(seen[seen[:, 0].argsort()], sample.x[sample.x[:, 0].argsort()])
    again = torch.cat([sample.sample(25, generator=g)[0] for _ in range(4)])      # the next, reordered
    assert not torch.equal(seen, again) and set(again[:, 0].tolist()) == set(sample.x[:, 0].tolist())
    assert [x.shape[0] for x, _ in sample.batches(30)] == [30, 30, 30]           # partial batch dropped
    assert sample.ground_truth() == task.ground_truth()


def test_epochs_over_n_samples_set_the_steps_and_the_run_identity(tmp_path):
    specs = expand(load_preset(preset(tmp_path, "epochs = 3\nn_samples = 100\n")))
    assert {(s.steps, s.epochs, s.n_samples, s.eval_n_samples) for s in specs} == {(9, 3.0, 100, 100)}  # 100 // 32 = 3 a pass
    stream = expand(load_preset(preset(tmp_path, "steps = 9\n")))
    assert {s.run_id for s in specs}.isdisjoint(s.run_id for s in stream)
    assert "n_samples" not in stream[0].identity()


def test_a_finite_sample_sweep_records_training_and_held_out_estimates(tmp_path):
    df = sweep(preset(tmp_path, "epochs = 20\nn_samples = 128\n"), out=tmp_path / "out", progress=False)
    assert len(df) == 2 and (df["status"] == "ok").all() and set(df["n_samples"]) == {128}
    assert df["mi_estimate_train"].notna().all() and df["mi_estimate"].notna().all()
    # 128 training pairs seen 20 times: the training-sample estimate sits above the held-out one
    infonce = df.set_index("bound").loc["infonce"]
    assert infonce["mi_estimate_train"] > infonce["mi_estimate"]
    again = sweep(preset(tmp_path, "epochs = 20\nn_samples = 128\n"), out=tmp_path / "again", progress=False)
    assert again["mi_estimate"].tolist() == df["mi_estimate"].tolist()            # the seed fixes the samples


def test_streaming_runs_record_a_training_estimate_too(tmp_path):
    df = sweep(preset(tmp_path, "steps = 20\n"), out=tmp_path / "out", progress=False)
    assert df["mi_estimate_train"].notna().all() and df["n_samples"].isna().all()


@pytest.mark.parametrize("extra,message", [
    ("epochs = 1\nn_samples = 16\n", "n_samples must be an integer >= the batch size 32, got 16"),
    ("epochs = 1\nn_samples = 'many'\n", "n_samples must be an integer >= 2, got 'many'"),
    ("steps = 10\nn_samples = 64\nstaircase = [0.5, 1.0]\n", "cannot be combined"),
    ("steps = 10\nn_samples = 64\nbatch_seeds = true\n", "use batch_seeds = false"),
])
def test_bad_finite_sample_settings_are_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["run", "--task", preset(tmp_path, extra), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()
