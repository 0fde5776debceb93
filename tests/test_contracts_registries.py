"""The contracts of the sample estimators, critics, encoders and other libraries: each run over
every registered entry, and each shown to refuse a false declaration."""

import dataclasses

import pytest
import torch
from torch import nn

from mibench.estimators import estimator_for
from mibench.libraries import LIBRARIES, LibraryError
from mibench.nets import CRITICS, ENCODERS, SeparableCritic
from mibench.sample import CCA, SAMPLE_ESTIMATORS, Param, SampleEstimator
from mibench.testing import check_critic, check_encoder, check_library, check_sample_estimator


@pytest.mark.parametrize("name", list(SAMPLE_ESTIMATORS))
def test_every_sample_estimator_meets_the_contract(name):
    check_sample_estimator(SAMPLE_ESTIMATORS[name])


@pytest.mark.parametrize("name", list(CRITICS))
def test_every_critic_meets_the_contract(name):
    check_critic(name)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_every_encoder_meets_the_contract(name):
    check_encoder(name)


@pytest.fixture
def registries(monkeypatch):
    """The registries as they are, restored after the test (which registers entries)."""
    for registry in (SAMPLE_ESTIMATORS, CRITICS, ENCODERS, LIBRARIES):
        monkeypatch.setattr(registry, "_items", dict(registry._items))


# --- sample estimators ----------------------------------------------------------------------

class Noisy(CCA):
    """CCA plus fresh noise on every call: not a function of the sample and the seed."""

    name = "noisy_cca"

    def estimate(self, x, y, *, seed):
        return super().estimate(x, y, seed=seed) + float(torch.rand(()))


class Forgetful(CCA):
    """Declares an option that check_options does not return."""

    name = "forgetful"
    options = {"k": Param(3, lambda v: isinstance(v, int), "an integer")}

    @classmethod
    def check_options(cls, given):
        return {}


class Unregistered(CCA):
    name = "unregistered"


@pytest.mark.parametrize("cls, why", [(Noisy, "the same sample and seed gave"),
                                      (Forgetful, "must return every declared option"),
                                      (Unregistered, "is not registered as itself")])
def test_the_sample_estimator_contract_refuses_a_false_declaration(registries, cls, why):
    if cls is not Unregistered:
        SAMPLE_ESTIMATORS.register(cls.name, cls)
    with pytest.raises(AssertionError, match=why):
        check_sample_estimator(cls)


def test_an_estimator_without_usable_defaults_is_checked_with_its_example(registries):
    class Needs(SampleEstimator):
        name, label = "needs_scale", "scaled CCA"
        options = {"scale": Param(None, lambda v: isinstance(v, float) and v > 0, "a number > 0")}
        example = {"scale": 2.0}

        def estimate(self, x, y, *, seed):
            return self.opts["scale"] * CCA().estimate(x, y, seed=seed)

    SAMPLE_ESTIMATORS.register(Needs.name, Needs)
    value = check_sample_estimator(Needs)
    assert value == pytest.approx(2 * check_sample_estimator(CCA))


# --- critics and encoders -------------------------------------------------------------------

class BatchNormed(SeparableCritic):
    """A separable critic whose features are normalised over the batch: a pair's score depends
    on the rest of the batch."""

    def forward(self, fx, fy, cols):
        return super().forward(fx - fx.mean(0), fy, cols)


class Transposed(SeparableCritic):
    """Scores (x_j, y_i) where (x_i, y_j) is asked for."""

    def forward(self, fx, fy, cols):
        return super().forward(fy @ torch.ones(fy.shape[1], fx.shape[1]), fx @ torch.ones(fx.shape[1], fy.shape[1]),
                               cols)


@pytest.mark.parametrize("cls, why", [(BatchNormed, "changes with the rest of the batch"),
                                      (Transposed, "changing x_0 moves scores of other pairs")])
def test_the_critic_contract_refuses_a_false_declaration(registries, cls, why):
    CRITICS.register("liar", cls)
    with pytest.raises(AssertionError, match=why):
        check_critic("liar")


def test_the_encoder_contract_refuses_a_false_declaration(registries):
    ENCODERS.register("says_8_gives_4", lambda shape, embed_dim=None, hidden=(): (
        nn.Sequential(nn.Flatten(), nn.LazyLinear(4)), 8))
    with pytest.raises(AssertionError, match="declared"):
        check_encoder("says_8_gives_4")
    ENCODERS.register("batch_mixer", lambda shape, embed_dim=None, hidden=(): (
        nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 4), nn.Softmax(dim=0)), 4))
    with pytest.raises(AssertionError, match="depend on the rest of the batch"):
        check_encoder("batch_mixer")


# --- other libraries ------------------------------------------------------------------------

def mibench_again(spec, task, *, seed=None):
    """A 'library' that is mibench itself: a spec's bound built by mibench's own registry."""
    try:
        return estimator_for(dataclasses.replace(spec, library="mibench"), task, seed=seed)
    except Exception as exc:
        raise LibraryError(f"mibench-again: {exc}") from None


def test_a_library_registered_through_the_public_api_meets_the_contract(registries):
    LIBRARIES.register("mibench-again", mibench_again)
    module = check_library("mibench-again", bound="infonce")
    assert isinstance(module, nn.Module)


def test_the_library_contract_refuses_a_false_declaration(registries):
    def unseeded(spec, task, *, seed=None):
        return mibench_again(spec, task, seed=None)          # ignores the run's seed

    def greedy(spec, task, *, seed=None):
        module = mibench_again(spec, task, seed=seed)
        estimate = module.estimate
        module.estimate = lambda x, y, k, generator=None: (torch.rand((), generator=generator),
                                                           estimate(x, y, k, generator))[1]
        return module                                         # draws more than mibench does

    def lenient(spec, task, *, seed=None):
        return mibench_again(dataclasses.replace(spec, bound="infonce"), task, seed=seed)   # any name

    for name, build, why in (("unseeded", unseeded, "same seed"), ("greedy", greedy, "draw from the generator"),
                             ("lenient", lenient, "unknown bound")):
        LIBRARIES.register(name, build)
        with pytest.raises(AssertionError, match=why):
            check_library(name, bound="infonce")


# --- the journey: registered through the public API, then run in a sweep ----------------------

def test_a_sample_estimator_and_a_library_registered_through_the_public_api_run_in_a_sweep(registries, tmp_path):
    """A contributor's whole change for each is one object registered by name: nothing in mibench
    is edited, and a preset names them like the built-in ones."""
    from conftest import TINY_HEAD
    from mibench.executors import sweep

    class HalfCCA(CCA):
        name, label = "half_cca", "CCA / 2"

        def estimate(self, x, y, *, seed):
            return 0.5 * super().estimate(x, y, seed=seed)

    SAMPLE_ESTIMATORS.register(HalfCCA.name, HalfCCA)
    LIBRARIES.register("mibench-again", mibench_again)
    check_sample_estimator(HalfCCA)
    check_library("mibench-again", bound="infonce")
    preset = tmp_path / "journey.toml"
    preset.write_text(TINY_HEAD.format(steps=20) + """
[[grid]]
name = "sample"
estimators = ["half_cca", "cca"]
n_samples = 400
[[grid]]
name = "library"
library = "mibench-again"
bounds = ["infonce"]
[[grid]]
name = "mibench"
bounds = ["infonce"]
""")
    df = sweep(str(preset), out=tmp_path / "out", progress=False).set_index("bound")
    assert (df["status"] == "ok").all(), df[["status", "error"]]
    assert df.loc["half_cca", "mi_estimate"] == pytest.approx(0.5 * df.loc["cca", "mi_estimate"])
    by_library = df.reset_index().set_index("library")
    assert by_library.loc["mibench-again", "bound_kind"] == "library"
    # the same bound, trained by the same loop from the same seed: the same estimate
    assert by_library.loc["mibench-again", "mi_estimate"] == by_library.loc["mibench", "mi_estimate"].loc[
        by_library.loc["mibench", "grid"] == "mibench"].iloc[0]
