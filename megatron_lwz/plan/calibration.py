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
from megatron_lwz.plan.memory import memory_breakdown, peak_gib
from megatron_lwz.plan.shape import from_preset
from megatron_lwz.plan.spec import GrpoSpec, Job, Layout

CALIBRATION_FILE = Path(__file__).with_name("memory_calibration.json")
"""The calibration table: ``recipes.<recipe path>.measured_gib.<category>`` in GiB (null = unmeasured)."""


UNCALIBRATED = frozenset({"context", "logits"})
"""Measured categories that are not the formula's quantity, so never calibrated on their own: ``context``
is set by assumption in the rehearsal, not measured (CUDA context + NCCL buffers, ``memory.CONTEXT_GIB``);
the rehearsal's ``logits`` probe sees the output layer's bf16 tensor only, while the formula's logits are
the loss's whole working set (bf16 logits + fp32 softmax and gradient) — which the rehearsal's activation
peak includes, hence ``COVERS``."""
BY_RECOMPUTE = frozenset({"activations"})
"""Categories whose make-up changes with the recompute mode (full: layer inputs + one layer; none:
everything), so entries also give a factor per mode, ``activations@full``, used for layouts in that
mode; a mode without an entry takes the kind's mean factor."""
COVERS = {"activations": ("activations", "logits")}
"""A measured category that covers several formula categories: the rehearsal's activation peak is
everything the forward-backward schedule allocates, the loss's logits working set included, so it is
compared with the formula's activations + logits and its factor scales both."""

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
    return memory_breakdown(from_preset(entry["model"]), layout, entry_job(entry), gpu_named(entry["gpu"]).hbm_gib)


def entry_job(entry: dict) -> Job:
    """The job of a recipe entry as rehearsed: no userbuffers (TE overlap is off in the rehearsal) unless
    the entry says ``tp_comm_overlap``; GRPO entries name their ``rm_model`` and ``gen_mem_fraction``."""
    grpo = GrpoSpec()
    if entry["job"] == "grpo":
        rm = entry.get("rm_model")
        grpo = GrpoSpec(rm=from_preset(rm) if rm else None,
                        gen_mem_fraction=float(entry.get("gen_mem_fraction", grpo.gen_mem_fraction)))
    return Job(kind=entry["job"], seq_length=entry["seq_length"], global_batch=entry["global_batch"],
               tp_comm_overlap=bool(entry.get("tp_comm_overlap", False)), grpo=grpo)


def entry_peak_gib(entry: dict, scales: dict[str, float] | None = None) -> float:
    """The planner's peak GiB at a recipe entry's rehearsed configuration (``scales`` None = formula only),
    to set beside the rehearsal's measured ``peak_gib``."""
    return peak_gib(apply(entry_formula(entry), scales or {}, entry["layout"]["recompute"]), entry_job(entry))


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
            if cat in UNCALIBRATED:
                continue
            if cat not in formula:
                raise ValueError(f"{CALIBRATION_FILE.name}: {name}: unknown category {cat!r}; use {sorted(formula)}")
            predicted = sum(formula[c] for c in COVERS.get(cat, (cat,)))
            if predicted > 0:
                ratios.setdefault(cat, []).append(value / predicted)
                if cat in BY_RECOMPUTE:
                    ratios.setdefault(f"{cat}@{entry['layout']['recompute']}", []).append(value / predicted)
    return {cat: statistics.fmean(vals) for cat, vals in ratios.items()}


def apply(parts: dict[str, float], scales: dict[str, float], recompute: str | None = None) -> dict[str, float]:
    """``parts`` with each category multiplied by its factor: ``cat@recompute`` when there is one, else
    ``cat``, else 1; ``COVERS``: the factor of a covering category scales each category it covers."""
    def of(cat: str) -> float | None:
        return scales.get(f"{cat}@{recompute}", scales.get(cat))

    factor = {k: v for k, v in scales.items() if "@" not in k}
    for cat, covered in COVERS.items():
        if of(cat) is not None:
            factor.update({c: of(cat) for c in covered})
    return {k: v * factor.get(k, 1.0) for k, v in parts.items()}
