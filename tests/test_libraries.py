"""Other libraries' estimators (mibench.libraries): failures are rows, not crashed sweeps.
These tests need no other library installed."""

import sys

import pytest

from mibench.distributions import TASK_FAMILIES
from mibench.estimators import EstimatorSpec, estimator_for
from mibench.executors import sweep
from mibench.libraries import LibraryError

from conftest import TINY_HEAD

PRESET = TINY_HEAD.format(steps=20) + """
[[grid]]
name = "unknown"
library = "nope"
bounds = ["infonce"]

[[grid]]
name = "mibench"
bounds = ["infonce"]
"""


def test_an_unknown_library_is_an_error_row_and_the_sweep_goes_on(tmp_path):
    path = tmp_path / "libs.toml"
    path.write_text(PRESET)
    df = sweep(str(path), out=tmp_path / "out", progress=False)
    assert len(df) == 2
    by = df.set_index("grid")
    assert by.loc["mibench", "status"] == "ok"
    assert by.loc["unknown", "status"] == "error"
    error = by.loc["unknown", "error"]
    assert error.startswith("LibraryError: unknown library 'nope'")
    assert "torch-mist" in error and "mibench" in error


def test_torch_mist_missing_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_mist", None)       # import torch_mist now fails
    task = TASK_FAMILIES["gaussian"].build({"dim": 2, "mi": 0.5})
    with pytest.raises(LibraryError, match=r"^torch-mist is not installed: pip install 'mibench\[torch-mist\]'$"):
        estimator_for(EstimatorSpec(bound="infonce", library="torch-mist"), task, seed=0)
