"""``lwz rehearse --config RECIPE [--job J] [--world-size N] [--ranks R,…] [--steps N] [overrides]``.

Runs the job's real code as chosen ranks of the recipe's full world, one CPU process per rank, on a
stand-in device (``megatron_lwz.parallel.rehearsal``) with stand-in inputs
(``megatron_lwz.rehearse.standins``). Prints what was replaced, a per-GPU memory table and one JSON
line last: ``{"recipe", "world_size", "ranks": [{"rank", "peak_gib", "params_gib", …}], "violations"}``.
Exit 1 when a rank fails (a violation names the op and our call site).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = ("params_gib", "grads_gib", "optimizer_gib", "activations_peak_gib", "logits_gib", "export_gib",
           "rm_gib", "vllm_gib", "overhead_gib", "peak_gib")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--config", required=True, help="YAML recipe (e.g. examples/grpo/qwen2.5-32b_longwriter.yaml)")
    parser.add_argument("--job", choices=("pretrain", "train-rm", "grpo"), help="default: from the recipe's keys")
    parser.add_argument("--world-size", type=int, help="default: the recipe's parallel.world_size, else TP×PP×CP")
    parser.add_argument("--ranks", help="comma-separated ranks (default: 0 and the last rank = first and last stage)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps / GRPO iterations per rank (default 2: Adam's "
                        "moments appear at the first optimizer step, so the second step's peak is the run's)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per rehearsed rank")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, as for the job itself")


def _job_of(recipe: str) -> str:
    """The job command of a recipe, from its kind (``plan.recipe.job_kind``: one rule for both tools)."""
    from megatron_lwz.plan.recipe import job_kind

    return {"cpt": "pretrain", "rm": "train-rm", "grpo": "grpo"}[job_kind(recipe)]


def _world_size(recipe: str, overrides: list[str]) -> int:
    import yaml

    tree = yaml.safe_load(Path(recipe).read_text()) or {}
    p = dict(tree.get("parallel") or {})
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("parallel."):
            p[key.split(".", 1)[1]] = yaml.safe_load(value)
    if p.get("world_size"):
        return int(p["world_size"])
    return int(p.get("tensor_parallel", 1)) * int(p.get("pipeline_parallel", 1)) * int(p.get("context_parallel", 1))


def rehearse(recipe: str, job: str, world: int, ranks: list[int], steps: int, overrides: list[str],
             timeout: int) -> dict:
    """Each rank in its own process (sequential: meta tensors cost no memory, dispatch costs CPU)."""
    out_dir = Path(tempfile.mkdtemp(prefix="lwz_rehearse_report_"))
    results = []
    for rank in ranks:
        out = out_dir / f"rank{rank}.json"
        cmd = [sys.executable, "-m", "megatron_lwz.rehearse.rank", job, recipe, str(rank), str(world), str(steps),
               str(out), *overrides]
        print(f"rehearsing rank {rank} of {world} ({job}) …", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, LWZ_REHEARSE_DIR=str(out_dir / "job")))
        if out.is_file():
            results.append(json.loads(out.read_text()))
        else:
            results.append({"rank": rank, "violations": 0, "error": f"rank process died ({proc.returncode})",
                            "traceback": proc.stderr[-4000:]})
    return {"recipe": recipe, "job": job, "world_size": world, "ranks": results,
            "violations": sum(r.get("violations", 0) for r in results)}


def _print(report: dict) -> None:
    first = next((r for r in report["ranks"] if "standins" in r), None)
    if first:
        print("stand-ins:")
        for line in first["standins"]:
            print(f"  - {line}")
    print(f"\nper-GPU memory (GiB), {report['recipe']} at world size {report['world_size']}:")
    print(f"{'rank':>5} {'stage':>6} " + " ".join(f"{c[:-4]:>12}" for c in COLUMNS))
    for r in report["ranks"]:
        if "error" in r:
            print(f"{r['rank']:>5} FAILED: {r['error']}\n{r.get('traceback', '')[-2500:]}")
            if "memory_at_failure" in r:
                print(f"      memory at the failure: {r['memory_at_failure']}")
            continue
        print(f"{r['rank']:>5} {r['stage']:>6} " + " ".join(f"{r[c]:>12.2f}" for c in COLUMNS))
    slim = {**report, "ranks": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                                 if k not in ("standins", "traceback", "collectives")} for r in report["ranks"]]}
    print(json.dumps(slim))


def run(args: argparse.Namespace) -> int:
    job = args.job or _job_of(args.config)
    world = args.world_size or _world_size(args.config, args.overrides)
    ranks = [int(r) for r in args.ranks.split(",")] if args.ranks else sorted({0, world - 1})
    report = rehearse(args.config, job, world, ranks, args.steps, list(args.overrides), args.timeout)
    _print(report)
    return 0 if all("error" not in r for r in report["ranks"]) else 1
