"""Shared fixtures. Real MNIST comes from $MIBENCH_DATA_DIR, else a shared/data folder beside
the checkout (torchvision layout), else the per-user cache, downloading there if needed."""

import os
from pathlib import Path

import pytest
import torch

from slurm_cluster import slurm_cluster  # noqa: F401  (the real SLURM of the tests marked slurm)

REPO = Path(__file__).resolve().parents[1]
_beside = REPO.parent / "shared" / "data"
if not os.environ.get("MIBENCH_DATA_DIR") and (_beside / "MNIST").is_dir():
    os.environ["MIBENCH_DATA_DIR"] = str(_beside)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run on one torch thread: deterministic and fast on small shared machines."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def mnist_train():
    from mibench.distributions import PairedImages

    return PairedImages("mnist", "train")


def kill_after_rows(cmd: list[str], out, n: int = 2, timeout: float = 120) -> None:
    """Start ``cmd`` (a sweep into ``out``), wait until ``out`` holds n rows, then kill -9 it."""
    import signal
    import subprocess
    import time

    from mibench.results import load_rows

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and len(load_rows(out)) < n:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# The head of a tiny Gaussian preset (seconds to run) that sweep tests add [[grid]] tables to.
TINY_HEAD = """
name = "tiny"
[task]
family = "gaussian"
dim = 2
mi = 0.5
[estimator]
hidden = [16]
critic_dim = 8
[train]
steps = {steps}
batch_size = 32
log_every = 5
[eval]
batches = 4
"""


def capture_figures(monkeypatch):
    """Every figure ``make_figures`` saves, by name, drawn as before; PNG only."""
    from mibench import figures as F

    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    saved, original = {}, F.save_figure

    def spy(fig, out_dir, name, formats=None):
        saved[name] = fig
        return original(fig, out_dir, name, formats)

    monkeypatch.setattr(F, "save_figure", spy)
    return saved


def one_error_line(capsys) -> str:
    """The one line a refused command printed on stderr ("mibench: error: ...")."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mibench: error: "), err
    return err
