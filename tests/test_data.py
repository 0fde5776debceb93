"""Where data comes from (the data root's precedence), broken MNIST files named without a
download, and the general-covariance Gaussian family built through a preset."""

import math
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from mibench import data
from mibench.cli import main
from mibench.interface import DataNotFoundError
from mibench.executors import sweep

# ---------------------------------------------------------------------------------------------
# The data root: --data-dir, then $MIBENCH_DATA_DIR, then the per-user cache


def test_explicit_data_dir_beats_the_environment_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "from_env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data.resolve_data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_environment_beats_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "from_env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir() == tmp_path / "from_env"
    assert data.resolve_data_dir(None) == tmp_path / "from_env"
    assert data.resolve_data_dir("") == tmp_path / "from_env"      # an empty --data-dir is no choice


def test_environment_path_is_user_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(data.ENV_VAR, "~/mnist")
    assert data.resolve_data_dir() == tmp_path / "home" / "mnist"


def test_without_argument_or_environment_the_xdg_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.resolve_data_dir() == tmp_path / "xdg" / "mibench" / "data"
    monkeypatch.setenv(data.ENV_VAR, "")                             # set but empty: unset
    assert data.resolve_data_dir() == tmp_path / "xdg" / "mibench" / "data"


def test_without_xdg_cache_home_the_home_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.resolve_data_dir() == tmp_path / "home" / ".cache" / "mibench" / "data"


def _run_conftest_prelude(checkout: Path) -> None:
    """Execute tests/conftest.py as if it lived in ``checkout``/tests (its module-level code)."""
    fake = checkout / "tests" / "conftest.py"
    code = compile((REPO / "tests" / "conftest.py").read_text(), str(fake), "exec")
    exec(code, {"__file__": str(fake), "__name__": "conftest_elsewhere"})


def test_conftest_falls_back_to_shared_data_beside_the_checkout(tmp_path, monkeypatch):
    checkout, beside = tmp_path / "checkout", tmp_path / "shared" / "data"
    (checkout / "tests").mkdir(parents=True)

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    _run_conftest_prelude(checkout)                      # no shared/data/MNIST beside it: unset
    assert data.ENV_VAR not in os.environ

    (beside / "MNIST").mkdir(parents=True)
    _run_conftest_prelude(checkout)                      # now present: the test run uses it
    assert os.environ[data.ENV_VAR] == str(beside)
    assert data.resolve_data_dir() == beside

    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "mine"))
    _run_conftest_prelude(checkout)                      # an explicit setting is kept
    assert os.environ[data.ENV_VAR] == str(tmp_path / "mine")


# ---------------------------------------------------------------------------------------------
# Broken MNIST files: one DataNotFoundError naming the file, nothing downloaded

RAW = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def _real_raw() -> Path:
    raw = data.resolve_data_dir() / "MNIST" / "raw"
    if not all((raw / name).is_file() for name in RAW + TRAIN_RAW):
        pytest.skip(f"real MNIST raw files not under {raw}")
    return raw


def _copy_mnist(root: Path, names=RAW) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in names:
        shutil.copyfile(_real_raw() / name, raw / name)       # copyfile: writable, whatever the source
    return raw


@pytest.fixture
def no_download(monkeypatch):
    """Any download attempt fails the test (and could not reach a server anyway)."""
    from torchvision import datasets

    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])   # nothing listens there

    def download(self):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(datasets.MNIST, "download", download)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _labels_of_5000(path: Path) -> None:
    """A valid IDX label file, but of 5,000 labels (the images file has 10,000)."""
    labels = path.read_bytes()[8:8 + 5000]
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels)


BREAKAGES = {
    "truncated_images": (0, _truncate),
    "empty_labels": (1, lambda p: p.write_bytes(b"")),
    "garbage_labels": (1, lambda p: p.write_bytes(bytes(range(7, 107)))),
    "labels_cut_short_header_kept": (1, lambda p: p.write_bytes(p.read_bytes()[:5008])),
}


def test_the_intact_test_split_loads_without_the_train_split(tmp_path, no_download):
    """Only the test split's two files are there: they are read, nothing is fetched."""
    _copy_mnist(tmp_path)
    images, labels = data.load_split("mnist", False, tmp_path)
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert str(images.dtype) == "torch.uint8" and str(labels.dtype) == "torch.int64"
    assert sorted(labels.unique().tolist()) == list(range(10))


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_a_broken_file_is_named_and_nothing_is_downloaded(case, tmp_path, no_download):
    which, breakage = BREAKAGES[case]
    raw = _copy_mnist(tmp_path)
    broken = raw / RAW[which]
    breakage(broken)
    before = broken.read_bytes()
    with pytest.raises(DataNotFoundError) as exc:
        data.load_split("mnist", False, tmp_path)
    message = str(exc.value)
    assert str(broken) in message
    assert str(raw / RAW[1 - which]) not in message               # the intact file is not blamed
    assert "IDX" in message and "download" not in message.lower()
    assert f"{broken.stat().st_size:,} bytes" in message
    assert len(message.splitlines()) == 1
    assert broken.read_bytes() == before and (raw / RAW[1 - which]).is_file()   # nothing replaced
    assert sorted(p.name for p in raw.iterdir()) == sorted(RAW)                    # nor fetched


def test_images_and_labels_of_different_lengths_name_the_folder(tmp_path, no_download):
    raw = _copy_mnist(tmp_path)
    _labels_of_5000(raw / RAW[1])
    with pytest.raises(DataNotFoundError) as exc:
        data.load_split("mnist", False, tmp_path)
    message = str(exc.value)
    assert str(raw) in message and "10000 images but 5000 labels" in message and "test split" in message
    assert "download" not in message.lower() and len(message.splitlines()) == 1


def test_cli_names_a_truncated_train_images_file_and_writes_nothing(tmp_path, capsys, no_download):
    root, out = tmp_path / "root", tmp_path / "out"
    raw = _copy_mnist(root, RAW + TRAIN_RAW)
    broken = raw / "train-images-idx3-ubyte"
    _truncate(broken)
    code = main(["run", "--task", "paired_mnist", "--quick", "--data-dir", str(root), "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mibench: error: ")
    assert str(broken) in err and "download" not in err.lower()
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# gaussian_cov through a preset

COV = [[1.0, 0.2, 0.6, 0.1],
       [0.2, 1.5, 0.3, 0.7],
       [0.6, 0.3, 1.2, 0.2],
       [0.1, 0.7, 0.2, 0.9]]

COV_PRESET = """
name = "cov"
[task]
family = "gaussian_cov"
cov = {cov}
dim_x = 2
[estimator]
hidden = [16]
critic_dim = 8
[train]
steps = 30
batch_size = 32
log_every = 10
[eval]
batches = 4
[[grid]]
bounds = ["infonce"]
seeds = [0]
"""


def _cov_preset(tmp_path, cov) -> str:
    path = tmp_path / "cov.toml"
    path.write_text(COV_PRESET.format(cov=cov))
    return str(path)


def test_gaussian_cov_preset_records_the_analytic_truth(tmp_path):
    s = np.array(COV)
    assert np.all(np.linalg.eigvalsh(s) > 0)
    expected = 0.5 * math.log(np.linalg.det(s[:2, :2]) * np.linalg.det(s[2:, 2:]) / np.linalg.det(s))
    assert expected > 0.1                                       # x and y are far from independent

    df = sweep(_cov_preset(tmp_path, COV), out=tmp_path / "out", progress=False)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["status"] == "ok"
    assert row["mi_true"] == pytest.approx(expected, rel=1e-9)
    assert math.isfinite(row["mi_estimate"])


@pytest.mark.parametrize("cov,message", [
    ('[[1.0, 0.0, 0.9, 0.0], [0.0, 1.0, 0.0, 0.0], [0.9, 0.0, 1.0, 0.9], [0.0, 0.0, 0.9, 1.0]]',
     "cov must be positive definite"),
    ("[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]", "cov must be a square matrix"),
    ('"x"', "cov must be a square matrix of numbers"),
    ('[["a", "b"], ["c", "d"]]', "cov must be a square matrix of numbers"),
])
def test_a_bad_cov_gives_one_line_naming_gaussian_cov(cov, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--task", _cov_preset(tmp_path, cov), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mibench: error: ")
    assert "gaussian_cov" in err and message in err
    assert not out.exists()
