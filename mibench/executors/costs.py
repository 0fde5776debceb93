"""What a run group costs: the seconds it will take, estimated from the folder's finished runs,
and groups packed into chunks of a time budget. The local executor starts the longest groups
first; the cluster executor packs short runs into jobs of about ``job_minutes``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Training speed assumed for packing jobs when the folder has no finished run to go by.
DEFAULT_STEPS_PER_S = {"cpu": 100.0, "cuda": 400.0, "mps": 200.0}


def chunk(groups: list[list[dict[str, Any]]], seconds_of, budget_s: float) -> list[list[list[dict]]]:
    """Groups packed in order into chunks of at most ``budget_s`` estimated seconds (a group
    longer than that is a chunk of its own)."""
    chunks, current, used = [], [], 0.0
    for g in groups:
        cost = seconds_of(g)
        if current and used + cost > budget_s:
            chunks.append(current)
            current, used = [], 0.0
        current.append(g)
        used += cost
    if current:
        chunks.append(current)
    return chunks


DEFAULT_SAMPLE_S = 5.0      # seconds assumed for one sample estimator's estimate


def _positive(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    return float(value) if ok else None


def estimate_seconds(out_dir: Path):
    """Seconds a group will take, plus 10 s to start: its steps at the median steps/s the
    folder's finished runs of the same critic and device reached, else ``DEFAULT_STEPS_PER_S``;
    for a sample estimator, the median wall time of the folder's finished runs of the same
    estimator, else ``DEFAULT_SAMPLE_S``, per run."""
    from ..results import load_rows

    known: dict[tuple, list[float]] = {}
    for r in load_rows(out_dir):
        if r.get("status") != "ok":
            continue
        if r.get("estimator_kind") == "sample":
            est = r["spec"].get("estimator") if isinstance(r.get("spec"), dict) else None
            name = est.get("name") if isinstance(est, dict) else None
            key, value = ("sample", name, r.get("device")), _positive(r.get("wall_s"))
        else:
            key, value = ("neural", r.get("critic"), r.get("device")), _positive(r.get("steps_per_s"))
        if value is not None and all(isinstance(k, str) for k in key):
            known.setdefault(key, []).append(value)

    def median(key: tuple) -> float | None:
        values = sorted(known.get(key, []))
        return values[len(values) // 2] if values else None

    def seconds(group: list[dict[str, Any]]) -> float:
        s = group[0]
        est = s["estimator"]
        if est.get("kind") == "sample":
            return 10.0 + len(group) * (median(("sample", est["name"], s["device"])) or DEFAULT_SAMPLE_S)
        rate = median(("neural", est["critic"], s["device"])) or DEFAULT_STEPS_PER_S.get(s["device"].split(":")[0], 100.0)
        return 10.0 + s["steps"] * (1 if s.get("batch_seeds") else len(group)) / rate
    return seconds
