"""The task and bound contracts over every registered entry, and extensions picked up from
outside mibench: registered through the public API, or declared as entry points by a package."""

import dataclasses
import math
import textwrap

import pytest

from conftest import TINY_HEAD
from mibench.bounds import BOUNDS, MINE
from mibench.distributions import TASK_FAMILIES
from mibench.nets import CRITICS, ENCODERS
from mibench.sample import SAMPLE_ESTIMATORS
from mibench.executors import sweep
from mibench.testing import check_bound, check_critic, check_encoder, check_sample_estimator, check_task


@pytest.mark.parametrize("name", list(BOUNDS))
def test_every_bound_meets_the_contract(name):
    check_bound(BOUNDS[name])


@pytest.mark.parametrize("name", list(TASK_FAMILIES))
def test_every_task_family_meets_the_contract(name):
    check_task(name)


def test_the_contract_catches_a_false_batchable_declaration(monkeypatch):
    """MINE updates its moving average in place; declared batchable, vmap shows it."""
    class BatchedMINE(MINE):
        name = "mine_batched"
        batchable = True

    monkeypatch.setattr(BOUNDS, "_items", {**BOUNDS._items, "mine_batched": BatchedMINE})
    with pytest.raises(Exception):
        check_bound(BatchedMINE)


def test_the_contract_catches_a_wrong_shape_declaration(monkeypatch):
    from mibench.distributions import CorrelatedGaussian

    class Liar(CorrelatedGaussian):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.x_shape = (self.dim + 1,)

    fam = TASK_FAMILIES["gaussian"]
    with pytest.raises(AssertionError, match="x has shape"):
        check_task(dataclasses.replace(fam, name="liar", cls=Liar,
                                       make=lambda dim=3, mi=1.0, device="cpu": Liar(dim, mi=mi, device=device)))


# ------------------------------------------------------------------------------------------
# A plugin package: one bound, one task family, one critic, declared as entry points

PLUGIN = '''
import math
import torch
from torch import nn
from mibench.bounds import Bound, dv
from mibench.distributions import TaskFamily
from mibench.interface import GroundTruth


class ShiftedDV(Bound):
    """DV on the scores plus one: DV ignores a constant shift, so this is DV again."""

    name, label = "shifted_dv", "DV+1"

    def estimate(self, scores, aux=None):
        return dv(scores + 1.0)


class Independent:
    """x, y independent standard normal vectors: I = 0 exactly."""

    def __init__(self, dim: int = 2, device="cpu"):
        self.dim, self.device = dim, torch.device(device)
        self.x_shape = self.y_shape = (dim,)
        self.name = f"independent-d{dim}"

    def ground_truth(self):
        return GroundTruth(0.0, "analytic", note="independent by construction")

    def sample(self, n, *, generator):
        z = torch.randn(n, 2 * self.dim, generator=generator, device=self.device)
        return z[:, : self.dim], z[:, self.dim :]

    def heldout(self):
        return self


FAMILY = TaskFamily("independent", Independent, "I = 0", "x, y independent normal", example={"dim": 2})


class DotCritic(nn.Module):
    """f(x, y) = a * x . y with one learned scale a."""

    def __init__(self, dx, dy, hidden=(), embed_dim=0, temperature=1.0):
        super().__init__()
        self.a = nn.Parameter(torch.ones(()))

    def forward(self, fx, fy, cols):
        return (self.a * fx @ fy.T).gather(1, cols)


def build_tanh_encoder(shape, embed_dim=None, hidden=()):
    """Flatten, one linear layer to embed_dim features, tanh."""
    width = embed_dim or 4
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), width), nn.Tanh()), width


from mibench.sample import SampleEstimator


class Correlation(SampleEstimator):
    """-1/2 log(1 - r^2) of the first coordinates: the Gaussian MI of one pair of coordinates."""

    name, label = "first_correlation", "r(x1, y1)"

    def estimate(self, x, y, *, seed):
        r = torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]))[0, 1]
        return float(-0.5 * torch.log1p(-r * r))
'''

ENTRY_POINTS = """
[mibench.bounds]
shifted_dv = mibench_demo_plugin:ShiftedDV

[mibench.tasks]
independent = mibench_demo_plugin:FAMILY

[mibench.critics]
dot = mibench_demo_plugin:DotCritic

[mibench.encoders]
tanh = mibench_demo_plugin:build_tanh_encoder

[mibench.sample_estimators]
first_correlation = mibench_demo_plugin:Correlation
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed-looking package (module + dist-info with entry points) on sys.path, and the
    registries reset so that they read entry points again; both undone after the test."""
    site = tmp_path / "site"
    (site / "mibench_demo_plugin").mkdir(parents=True)
    (site / "mibench_demo_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "mibench_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mibench-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    for registry in (BOUNDS, TASK_FAMILIES, CRITICS, ENCODERS, SAMPLE_ESTIMATORS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        monkeypatch.setattr(registry, "_plugins_loaded", False)
    return site


def test_entry_points_add_a_bound_a_task_family_a_critic_an_encoder_and_a_sample_estimator(plugin, tmp_path):
    assert "shifted_dv" in BOUNDS and "independent" in TASK_FAMILIES and "dot" in CRITICS
    assert "tanh" in ENCODERS and "first_correlation" in SAMPLE_ESTIMATORS
    check_bound(BOUNDS["shifted_dv"])
    check_task("independent")
    check_critic("dot", dx=3, dy=3)              # a dot product needs equal sides
    check_encoder("tanh")
    check_sample_estimator(SAMPLE_ESTIMATORS["first_correlation"])
    preset = tmp_path / "plugin.toml"
    preset.write_text(textwrap.dedent("""
        name = "plugin"
        [task]
        family = "independent"
        dim = 2
        [estimator]
        hidden = [8]
        critic_dim = 4
        [train]
        steps = 20
        batch_size = 16
        [eval]
        batches = 3
        [[grid]]
        bounds = ["shifted_dv", "infonce"]
        critics = ["dot", "separable"]
        [[grid]]
        name = "encoded"
        bounds = ["infonce"]
        encoder = "tanh"
        embed_dim = 3
        [[grid]]
        name = "sample"
        estimators = ["first_correlation"]
        n_samples = 500
    """))
    df = sweep(str(preset), out=tmp_path / "out", progress=False)
    assert len(df) == 6 and (df["status"] == "ok").all(), df[["grid", "status", "error"]]
    assert set(df.loc[df["grid"] == "encoded", "encoder"]) == {"tanh"}
    assert set(df.loc[df["grid"] == "sample", "bound"]) == {"first_correlation"}
    df = df[~df["grid"].isin(["encoded", "sample"])]
    assert set(df["bound"]) == {"shifted_dv", "infonce"} and set(df["critic"]) == {"dot", "separable"}
    assert (df["mi_true"] == 0.0).all() and df["mi_estimate"].map(math.isfinite).all()


def test_a_bound_and_a_family_registered_through_the_public_api(tmp_path, monkeypatch):
    from mibench.bounds import Bound, Option, nwj
    from mibench.distributions import CorrelatedGaussian, TaskFamily

    class ScaledNWJ(Bound):
        """NWJ on scores scaled by a constant (an option with validation)."""

        name, label = "scaled_nwj", "NWJ×c"
        options = {"scale": Option(1.0, lambda c: c > 0, "> 0")}

        def estimate(self, scores, aux=None):
            return nwj(self.scale * scores)

    class HalfGaussian(CorrelatedGaussian):
        """The Gaussian family at half the MI asked for (a family with its own truth rule)."""

        def __init__(self, dim: int = 2, mi: float = 1.0, device="cpu"):
            super().__init__(dim, mi=mi / 2, device=device)

        @classmethod
        def params_with_mi(cls, params, mi):
            return {**params, "mi": 2 * mi}

    for registry in (BOUNDS, TASK_FAMILIES):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
    BOUNDS.register("scaled_nwj", ScaledNWJ)
    TASK_FAMILIES.register("half_gaussian", TaskFamily("half_gaussian", HalfGaussian, "I = mi / 2",
                                                       "a test family", example={"dim": 2, "mi": 1.0}))
    check_bound(ScaledNWJ)
    check_task("half_gaussian")
    path = tmp_path / "t.toml"
    head = TINY_HEAD.format(steps=20).replace('family = "gaussian"\ndim = 2\nmi = 0.5',
                                              'family = "half_gaussian"\ndim = 2\nmi = 1.0')
    path.write_text(head + '[[grid]]\nbounds = ["scaled_nwj"]\nscale = 2.0\n')
    df = sweep(str(path), out=tmp_path / "out", progress=False)
    assert len(df) == 1 and df["status"].iloc[0] == "ok" and df["mi_true"].iloc[0] == pytest.approx(0.5)
    assert df["spec"].iloc[0]["estimator"]["scale"] == 2.0
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("scale = 2.0", "scale = -1.0"))
    from mibench.interface import ConfigError

    with pytest.raises(ConfigError, match="scaled_nwj: scale must be > 0, got -1.0"):
        sweep(str(bad), out=tmp_path / "bad_out", progress=False)
    assert not (tmp_path / "bad_out").exists()
