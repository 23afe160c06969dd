"""``lwz pretrain | train-rm | grpo --config RECIPE.yaml [dotted.key=value ...]``.

Launch on one process directly, on many with ``torchrun`` or ``srun`` (SLURM variables are read
by ``megatron_lwz.parallel``). Exit codes: 0 done; ``checkpoint.exit_code_on_signal`` after a
stop-save (SIGTERM / SIGUSR1 on any rank, or the job's end time too close for another step plus a
save: ``checkpoint.stop_before_time_limit``); 2 bad config.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from megatron_lwz.config.base import ConfigError, load_config

JOBS = {
    "pretrain": ("megatron_lwz.pretrain.config:PretrainJobConfig", "megatron_lwz.pretrain.loop:run"),
    "train-rm": ("megatron_lwz.rewards.rm_config:RMJobConfig", "megatron_lwz.rewards.rm_train:run"),
    "grpo": ("megatron_lwz.rl.job_config:GRPOJobConfig", "megatron_lwz.rl.loop:run"),
}


def _load(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--config", help="YAML recipe (see examples/)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-5 parallel.tensor_parallel=2")


def run(args: argparse.Namespace) -> int:
    from megatron_lwz.config.base import to_dict

    cfg_cls, run_fn = (_load(s) for s in JOBS[args.command])
    try:
        cfg = load_config(cfg_cls, args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from megatron_lwz.config.inputs import check_input_paths

    try:  # every input path exists before any process group or model is built
        check_input_paths(cfg)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    from megatron_lwz import parallel

    try:
        result = run_fn(cfg)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    finally:
        parallel.shutdown()
    if getattr(result, "interrupted", False):
        return cfg.checkpoint.exit_code_on_signal
    return 0
