"""The committed reference rows pin what a run is: each row's spec gives back its run id, and
the row columns that the spec decides (the estimator's, the training budget's) are those the
runner makes from it today. A change in how runs are identified or described fails here."""

from pathlib import Path

import pytest

from mibench.runspec import RunSpec
from mibench.results import json_ready, read_jsonl
from mibench.runner import make_row

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference"
FOLDERS = sorted(p.parent.name for p in REFERENCE.glob("*/runs.jsonl"))
SPEC_COLUMNS = ("run_id", "bound", "bound_kind", "critic", "encoder", "shared_encoder", "n_negatives",
                "batch_size", "steps", "epochs", "lr", "staircase", "precision", "bound_options",
                "estimator_kind", "library", "family", "task_params", "seed", "device", "grid")


@pytest.mark.parametrize("folder", FOLDERS)
def test_committed_rows_are_what_their_specs_make(folder):
    rows = [r for r in read_jsonl(REFERENCE / folder / "runs.jsonl") if r.get("schema_version", 1) >= 2]
    assert rows, f"{folder}: no rows of the current schema"
    for row in rows:
        spec = RunSpec.from_dict(row["spec"])
        made = json_ready(make_row(spec, wall_s=0.0, measured={"status": row["status"]}).to_dict())   # as stored
        got = {k: made[k] for k in SPEC_COLUMNS if k in row}
        assert got == {k: row[k] for k in got}, (folder, row["run_id"])
