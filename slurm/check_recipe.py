"""Pre-submit check of a job recipe for an allocation size: ``slurm/launch.sh --check`` runs it.

    python slurm/check_recipe.py JOB CONFIG WORLD_SIZE [dotted.key=value ...]

Loads CONFIG into the job's config class (env-var expansion and overrides as in ``lwz JOB``) and
runs the structural rules of ``megatron_lwz.config.validate`` that need no GPU: layout
(TP/PP/CP/VPP against heads, KV groups, layers and WORLD_SIZE), batch shape, and the precision
rules with CUDA + Transformer Engine assumed present (the target cluster has them). For GRPO it
also checks the Writing RM's architecture against the shared layout and that every mini-batch
gives each DP rank a row. Then every input path (tokenizer, data and prompt files, ``rl.eval.path``,
checkpoints to load, ``writing_rm.checkpoint``, …) must exist: ``config.inputs.check_input_paths``,
the check every job also runs at start. Exit 0 and one summary line, or exit 2 and the config error.
"""

from __future__ import annotations

import importlib
import sys

from megatron_lwz.cli.jobs import JOBS
from megatron_lwz.config.base import ConfigError, load_config
from megatron_lwz.config.inputs import check_input_paths
from megatron_lwz.config.validate import validate_batch, validate_parallel, validate_precision
from megatron_lwz.models.presets import resolve


def check(job: str, path: str, world_size: int, overrides: list[str]) -> str:
    """Validate the recipe; returns a one-line layout summary or raises ConfigError."""
    module, attr = JOBS[job][0].split(":")
    cfg = load_config(getattr(importlib.import_module(module), attr), path, overrides)
    arch, par = resolve(cfg.model), cfg.parallel
    dp = validate_parallel(arch, par, world_size)
    validate_precision(cfg.model, par, cfg.precision, cuda=True, te=True)
    summary = (f"world {world_size} = TP {par.tensor_parallel} × PP {par.pipeline_parallel} × "
               f"CP {par.context_parallel} × DP {dp}")
    if job == "grpo":
        if cfg.writing_rm.checkpoint:
            validate_parallel(resolve(cfg.writing_rm.model), par, world_size)
        rows = cfg.rl.prompts_per_step * cfg.rl.group_size
        per_update = rows // cfg.rl.batching.num_minibatches
        if per_update < dp:
            raise ConfigError(f"rl: {rows} samples / {cfg.rl.batching.num_minibatches} mini-batches = {per_update} "
                              f"rows per update < DP {dp}; raise rl.prompts_per_step or lower num_minibatches")
        inputs = check_input_paths(cfg)
        return (f"{summary}; {rows} samples/step in {cfg.rl.batching.num_minibatches} updates of {per_update}; "
                f"{len(inputs)} input paths found")
    seq = cfg.data.seq_length if job == "pretrain" else cfg.data.max_length
    micro = validate_batch(dp, cfg.train.micro_batch_size, cfg.train.global_batch_size, seq, arch,
                           par.virtual_pipeline_parallel, par.pipeline_parallel)
    inputs = check_input_paths(cfg)
    return (f"{summary}; {micro} micro-batches of {cfg.train.micro_batch_size} per DP rank per step; "
            f"{len(inputs)} input paths found")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in JOBS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(f"ok: {argv[1]}: {check(argv[0], argv[1], int(argv[2]), argv[3:])}")
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
