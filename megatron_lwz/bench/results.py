"""Benchmark results files: the JSON record plus the environment it was measured in.

Every GPU-capable ``lwz bench`` kind (train, sync, e2e) writes ``{"bench", "env", "record"}`` to
``--results`` (default ``runs/bench/<bench>-<UTC time>.json``), where ``record`` is exactly the
JSON line printed last and ``env`` holds package versions, the git SHA, the device model and count,
and the layout. :func:`device_peak_flops` maps the device name to ``plan/hardware.py``'s BF16 peak
for MFU (None on CPU or an unknown GPU).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from megatron_lwz.bench.report import BenchResult, to_json_line

# Substrings of torch.cuda.get_device_name() → plan.hardware keys (longest first: "H200" before "H20").
_DEVICE_KEYS = (("H200", "h200"), ("H100", "h100"), ("H800", "h800"), ("H20", "h20"), ("A100", "a100"),
                ("B200", "b200"))


def device_info() -> dict[str, Any]:
    """The accelerator this process sees (model, count) or the CPU."""
    import torch

    if torch.cuda.is_available():
        return {"kind": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    return {"kind": "cpu", "name": "cpu", "count": os.cpu_count()}


def device_peak_flops(name: str) -> float | None:
    """Dense BF16 peak FLOP/s of a CUDA device name, from the planner's hardware table."""
    from megatron_lwz.plan.hardware import GPUS

    for needle, key in _DEVICE_KEYS:
        if needle in name.upper():
            return GPUS[key].bf16_flops
    return None


def environment(layout: dict | None = None) -> dict[str, Any]:
    """Versions, git SHA, device and layout of a benchmark run."""
    from megatron_lwz.metrics.run_dir import git_sha, package_versions

    return {"versions": package_versions(), "git_sha": git_sha(), "device": device_info(), "layout": layout,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_results(result: BenchResult, env: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write ``{"bench", "env", "record"}``; ``record`` equals the printed JSON line."""
    path = Path(path) if path else Path("runs/bench") / f"{result.bench}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bench": result.bench, "env": env, "record": json.loads(to_json_line(result))},
                               indent=2, sort_keys=True))
    return path
