"""The speed scripts run end to end (on the CPU here, a few steps per case): the prepared device
script, and the mibench half of the side-by-side timing against BMI's package."""

import importlib
import importlib.util
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_speed.py"


def _load(name: str = "device_speed"):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_device_speed_batched_group_writes_summed_throughput(tmp_path):
    out = tmp_path / "speed.json"
    threads = torch.get_num_threads()
    try:
        assert _load().main(["--device", "cpu", "--quick", "--only", "batched", "--repeats", "1",
                             "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    data = json.loads(out.read_text())
    assert data["meta"]["device"] == "cpu" and data["meta"]["quick"] is True
    rows = data["rows"]
    assert [r["seeds"] for r in rows] == [1, 4, 16, 64]
    for r in rows:
        assert math.isfinite(r["pairs_per_s"]) and r["pairs_per_s"] > 0
        run = r["runs"][0]          # pairs/s is summed over the batched models
        assert run["pairs_per_s"] == pytest.approx(run["steps_per_s"] * r["batch"] * r["seeds"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without a GPU")
def test_device_speed_names_a_missing_gpu():
    with pytest.raises(SystemExit, match="no GPU"):
        _load().main(["--device", "cuda", "--quick"])


def _table(text: str) -> list[list[str]]:
    """The cells of the Markdown table in ``text``, header first, the separator line left out."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[:1] + lines[2:]]


@pytest.mark.slow
def test_bmi_speed_quick_times_mibench_alone_without_bmis_environment(tmp_path, capsys):
    out = tmp_path / "speed.json"
    threads = torch.get_num_threads()
    try:
        assert _load("bmi_speed").main(["--quick", "--venv", str(tmp_path / "no-bmi-env"), "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    text = capsys.readouterr().out
    assert "BMI's environment is missing" in text and "timing mibench alone" in text
    header, *rows = _table(text)
    assert header == ["bound", "dims", "mibench steps/s", "BMI steps/s", "ratio", "MFLOP/step",
                      "mibench % roofline", "BMI % roofline", "BMI compile s"]
    expected = itertools.product(["infonce", "nwj", "dv", "mine"], ["1x1", "5x5", "25x25", "50x50"])
    assert [tuple(r[:2]) for r in rows] == list(expected)
    for r in rows:
        cells = dict(zip(header, r))
        assert float(cells["mibench steps/s"]) > 0 and float(cells["mibench % roofline"]) > 0
        if cells["bound"] == "mine":          # the preset's MINE: 2 x 256 pairs (negatives = "shuffled")
            assert 0.4 < float(cells["MFLOP/step"]) < 4      # 0.50 at 1x1, 2.91 at 50x50
        else:                                 # about 60 MFLOP a step (B = 256, (16, 8), all pairs)
            assert 50 < float(cells["MFLOP/step"]) < 70
        assert [cells[c] for c in ("BMI steps/s", "ratio", "BMI % roofline", "BMI compile s")] == ["n/a"] * 4
    data = json.loads(out.read_text())
    assert data["meta"]["bmi"] is False and data["meta"]["quick"] is True
    assert len(data["rows"]) == 16
    for row in data["rows"]:
        (run,) = row["mibench"]["runs"]
        assert run["steps_run"] == data["meta"]["steps"] + data["meta"]["warmup"]
        assert row["bmi"]["runs"] == [] and row["ratio"] is None
        assert row["shuffled"] == (row["bound"] == "mine")


def test_bmi_speed_flop_count_matches_torchs_count_of_the_critic_matmuls():
    """critic_flops less its elementwise terms is what torch counts in the matrix products of a
    plain joint critic's forward and backward pass, first layer split or on concatenated pairs."""
    _load("bmi_speed")                        # puts the scripts folder on sys.path
    report = importlib.import_module("bmi_compare.report")
    dx, dy, (h1, h2), b = 5, 3, (16, 8), 32
    p = b * b
    x, y = torch.randn(b, dx), torch.randn(b, dy)
    rest = nn.Sequential(nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, 1))
    in_x, in_y = nn.Linear(dx, h1), nn.Linear(dy, h1, bias=False)
    with FlopCounterMode(display=False) as split:
        rest(in_x(x)[:, None, :] + in_y(y)[None, :, :]).sum().backward()
    elementwise = 3 * p * h1 + 2 * p * (h2 + 1)            # pair sums and biases
    assert report.critic_flops(dx, dy, (h1, h2), n_x=b, n_y=b, n_pairs=p) - elementwise == split.get_total_flops()
    first = nn.Linear(dx + dy, h1)
    pairs = torch.cat([x[:, None, :].expand(b, b, dx), y[None, :, :].expand(b, b, dy)], -1).reshape(p, -1)
    with FlopCounterMode(display=False) as concat:
        rest(first(pairs)).sum().backward()
    elementwise = 2 * p * h1 + 2 * p * (h2 + 1)            # biases
    assert (report.critic_flops(dx, dy, (h1, h2), n_x=b, n_y=b, n_pairs=p, concat=True) - elementwise
            == concat.get_total_flops())


def test_bmi_side_by_side_computes_z_and_counts_cells_within_three_standard_errors():
    """scripts/bmi_side_by_side.py on rows made by hand: z of the two means' difference with
    each side's own seed count; same-seed twins (KSG run twice) count as within; the count line."""
    import pandas as pd

    sbs = _load("bmi_side_by_side")
    rows = []

    def add(bound, library, grid, estimates, task="t1"):
        for seed, v in enumerate(estimates):
            rows.append(dict(task_params={"name": task}, grids=[grid], grid=grid, bound=bound, library=library,
                             status="ok", mi_estimate=v, seed=seed, mi_true=1.0))

    add("infonce", "mibench", "bmi_v2", [0.9, 1.0, 1.1, 1.0])
    add("InfoNCE (BMI)", "bmi", "bmi_infonce", [0.95, 1.05, 1.0])
    add("nwj", "mibench", "bmi_v2", [0.9, 1.0, 1.1, 1.0])
    add("NWJ (BMI)", "bmi", "bmi_nwj", [0.5, 0.52, 0.48])
    add("ksg", "mibench", "classical", [0.7, 0.8])
    add("KSG (BMI)", "bmi", "bmi_ksg", [0.7, 0.8])
    table = sbs.side_by_side(pd.DataFrame(rows)).set_index("estimator")
    z = (1.0 - 0.5) / math.sqrt(pd.Series([0.9, 1.0, 1.1, 1.0]).var() / 4 + pd.Series([0.5, 0.52, 0.48]).var() / 3)
    assert table.loc["nwj", "z"] == pytest.approx(z) and not table.loc["nwj", "within 3 SE"]
    assert abs(table.loc["infonce", "z"]) < 1 and table.loc["infonce", "within 3 SE"]
    assert table.loc["ksg", "same-seed max diff"] == 0 and table.loc["ksg", "within 3 SE"]
    assert (table.loc["infonce", "mibench seeds"], table.loc["infonce", "BMI seeds"]) == (4, 3)
    from scipy import stats

    welch = stats.ttest_ind([0.9, 1.0, 1.1, 1.0], [0.5, 0.52, 0.48], equal_var=False)
    assert table.loc["nwj", "z"] == pytest.approx(welch.statistic) and table.loc["nwj", "p"] == pytest.approx(welch.pvalue)
    p3 = 2 * stats.t.sf(3.0, table.loc["infonce", "welch df"])
    assert table.loc["infonce", "P3"] == pytest.approx(p3) and table.loc["ksg", "P3"] == 0
    nwj_p3 = table.loc["nwj", "P3"]
    assert sbs.counts(table.reset_index()) == \
        f"infonce 1 of 1 ({p3:.1f} beyond by chance); nwj 0 of 1 ({nwj_p3:.1f} beyond by chance); ksg 1 of 1 (0.0 beyond by chance)"
