"""Memory calibration: measured per-GPU GiB of the shipped recipes scale the formula's categories.

The data lives in ``memory_calibration.json`` next to this module (filled from ``lwz rehearse``
by whoever rehearses a recipe). For every recipe entry of a job kind with a measured category,
the factor ``measured / formula`` is computed at that entry's own layout; the planner multiplies
that category by the mean factor of its job kind for every candidate layout. Unmeasured
categories keep the formula (factor 1).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from megatron_lwz.plan.hardware import gpu as gpu_named
from megatron_lwz.plan.memory import memory_breakdown
from megatron_lwz.plan.shape import from_preset
from megatron_lwz.plan.spec import Job, Layout

CALIBRATION_FILE = Path(__file__).with_name("memory_calibration.json")
"""The calibration table: ``recipes.<recipe path>.measured_gib.<category>`` in GiB (null = unmeasured)."""


REHEARSAL_NAMES = {"params_gib": "weights", "grads_gib": "grads", "optimizer_gib": "optimizer",
                   "activations_peak_gib": "activations", "logits_gib": "logits", "rm_gib": "rm_weights",
                   "vllm_gib": "vllm", "overhead_gib": "context"}
"""``lwz rehearse`` memory-report keys (rehearse/rank.py ``memory_report``) → planner categories, so a
rank's report can be pasted into ``measured_gib`` as it is (other keys, e.g. peaks, are ignored)."""


def measured(entry: dict) -> dict[str, float]:
    """An entry's measured GiB by planner category (rehearsal key names accepted; nulls dropped)."""
    out: dict[str, float] = {}
    for key, value in (entry.get("measured_gib") or {}).items():
        if value is None or (key.endswith("_gib") and key not in REHEARSAL_NAMES):
            continue
        out[REHEARSAL_NAMES.get(key, key)] = float(value)
    return out


def load(path: Path | str = CALIBRATION_FILE) -> dict:
    """The ``recipes`` mapping of a calibration file (ValueError naming the file on bad JSON)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())["recipes"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path}: not a memory calibration file ({err})") from None


def entry_formula(entry: dict) -> dict[str, float]:
    """The formula's breakdown at a recipe entry's own model, job and layout."""
    lay = entry["layout"]
    tp, pp = lay["tp"], lay["pp"]
    layout = Layout(tp=tp, pp=pp, vpp=lay.get("vpp"), dp=entry["gpus"] // (tp * pp), sp=lay["sp"],
                    recompute=lay["recompute"], fp8=lay["fp8"])
    job = Job(kind=entry["job"], seq_length=entry["seq_length"], global_batch=entry["global_batch"])
    gpu_named(entry["gpu"])  # validates the name
    return memory_breakdown(from_preset(entry["model"]), layout, job)


def category_scales(kind: str, recipes: dict | None = None) -> dict[str, float]:
    """Mean measured/formula factor per category over the entries of job ``kind`` (measured ones only)."""
    recipes = load() if recipes is None else recipes
    ratios: dict[str, list[float]] = {}
    for name, entry in recipes.items():
        if entry.get("job") != kind:
            continue
        values = measured(entry)
        if not values:
            continue
        formula = entry_formula(entry)
        for cat, value in values.items():
            if cat not in formula:
                raise ValueError(f"{CALIBRATION_FILE.name}: {name}: unknown category {cat!r}; use {sorted(formula)}")
            if formula[cat] > 0:
                ratios.setdefault(cat, []).append(value / formula[cat])
    return {cat: statistics.fmean(vals) for cat, vals in ratios.items()}


def apply(parts: dict[str, float], scales: dict[str, float]) -> dict[str, float]:
    """``parts`` with each category multiplied by its factor (1 when uncalibrated)."""
    return {k: v * scales.get(k, 1.0) for k, v in parts.items()}
