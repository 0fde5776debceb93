"""The prepared device script runs end to end (on the CPU here, a few steps per case)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device_speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("device_speed", SCRIPT)
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
