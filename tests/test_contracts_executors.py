"""The executors' contract (``mibench.testing.check_executor``): run over every built-in one
that needs no cluster (``slurm`` itself is checked against a real SLURM in test_slurm.py), over
a new executor registered through the public API and used from the command line, and shown to
refuse a false declaration."""

import threading

import pytest

from mibench.cli import main
from mibench.executors import EXECUTORS, WorkOrder, work
from mibench.results import load_rows
from mibench.testing import check_executor

from conftest import TINY_HEAD

pytestmark = pytest.mark.slow


@pytest.fixture
def executors(monkeypatch):
    """The executor registry as it is, restored after the test (which registers entries)."""
    monkeypatch.setattr(EXECUTORS, "_items", dict(EXECUTORS._items))


@pytest.mark.parametrize("name", [n for n in EXECUTORS if n != "slurm"])
def test_every_executor_meets_the_contract(tmp_path, name):
    check_executor(name, tmp_path, {"workers": 2} if name == "local" else None)


class Threads:
    """A new executor: the order's groups shared by two threads of this process (each worker
    claims a group before training it, so two ``work`` calls on one order never repeat a run)."""

    here = True

    def check(self, plan, opts):
        pass

    def describe(self, plan, opts):
        return "two threads of this process"

    def execute(self, order: WorkOrder, opts, out_dir):
        threads = [threading.Thread(target=work, args=(order,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def test_an_executor_registered_through_the_public_api_meets_the_contract_and_runs_a_sweep(executors, tmp_path):
    EXECUTORS.register("threads", Threads())
    check_executor("threads", tmp_path / "check")
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY_HEAD.format(steps=20) + '[[grid]]\nbounds = ["infonce"]\nseeds = [0, 1, 2]\n')
    assert main(["run", "--task", str(preset), "--out", str(tmp_path / "out"), "--executor", "threads",
                 "--no-progress"]) == 0
    assert sorted(r["seed"] for r in load_rows(tmp_path / "out")) == [0, 1, 2]


class DropsTheLastGroup(Threads):
    def execute(self, order, opts, out_dir):
        order.groups = order.groups[:-1]
        work(order)


class NotHere(Threads):
    here = "yes"


class NoDescribe:
    here = True

    def check(self, plan, opts):
        pass

    def execute(self, order, opts, out_dir):
        work(order)


@pytest.mark.parametrize("cls, why", [(DropsTheLastGroup, "1 of 4 planned runs not finished"),
                                      (NotHere, "here must be a bool"),
                                      (NoDescribe, "needs here, check, describe and execute")])
def test_the_executor_contract_refuses_a_false_declaration(executors, tmp_path, cls, why):
    EXECUTORS.register("broken", cls())
    with pytest.raises(AssertionError, match=why):
        check_executor("broken", tmp_path)
