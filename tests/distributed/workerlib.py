"""The common driver of the multi-process test workers: several layouts in one torchrun launch."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Callable

import torch

from megatron_lwz import parallel
from megatron_lwz.config.schema import ParallelConfig


def parse_layout(text: str, **kw: Any) -> ParallelConfig:
    """'tp2pp2', 'pp2vpp2', 'dp2' → ParallelConfig (DP is what the world size leaves)."""
    sizes = {k: int(v) for k, v in re.findall(r"(tp|pp|vpp|dp)(\d+)", text)}
    return ParallelConfig(tensor_parallel=sizes.get("tp", 1), pipeline_parallel=sizes.get("pp", 1),
                          virtual_pipeline_parallel=sizes.get("vpp"), **kw)


def run_layouts(run_layout: Callable[[str, argparse.Namespace], Any],
                extra: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Parse ``--layouts A,B --init F [--write-init] --out J``; run each layout; rank 0 writes J."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--layouts", required=True)
    ap.add_argument("--init", required=True, help="full-state file every layout loads (the reference writes it)")
    ap.add_argument("--write-init", action="store_true")
    ap.add_argument("--out", required=True)
    if extra:
        extra(ap)
    args = ap.parse_args()
    layouts = args.layouts.split(",")
    parallel.init(parse_layout(layouts[0]))
    parallel.destroy_model_parallel()
    results = {layout: run_layout(layout, args) for layout in layouts}
    if torch.distributed.get_rank() == 0:
        with open(args.out, "w") as fh:
            json.dump(results, fh)
    parallel.shutdown()
