"""``lwz``: the single command-line entry point. Thin: parse, then hand a typed config to a library call.

Subcommands are registered lazily (module path + attribute), so ``lwz --help`` imports neither torch
nor megatron. Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from megatron_lwz.cli import noise

# name → (module, help). Nested groups use "group sub".
COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("megatron_lwz.cli.jobs", "continual pretraining (YAML recipe + dotted overrides)"),
    "train-rm": ("megatron_lwz.cli.jobs", "train the Bradley-Terry Writing reward model"),
    "grpo": ("megatron_lwz.cli.jobs", "GRPO with Length / Writing / Format rewards"),
    "demo": ("megatron_lwz.cli.demo", "the whole CPU pipeline: pretrain -> Writing RM -> GRPO"),
    "preprocess": ("megatron_lwz.cli.data_cmds", "tokenize jsonl/parquet into megatron .bin/.idx"),
    "tokenizer train": ("megatron_lwz.cli.data_cmds", "train a sentencepiece tokenizer on a text corpus"),
    "data make-demo": ("megatron_lwz.cli.data_cmds", "write the demo corpus, CoT slice, RM pairs and RL prompts"),
    "data predict-length": ("megatron_lwz.cli.reward_cmds", "predict [L_lower, L_upper] for RL prompts"),
    "data filter-prompts": ("megatron_lwz.cli.reward_cmds", "filter WildChat/LMSYS-style dumps into RL prompts"),
    "data split-prompts": ("megatron_lwz.cli.reward_cmds", "hold out RL prompts for rl.eval, disjoint by text"),
    "convert hf-to-mcore": ("megatron_lwz.cli.convert_cmds", "HF Qwen2 safetensors -> megatron dist checkpoint"),
    "convert mcore-to-hf": ("megatron_lwz.cli.convert_cmds", "megatron dist checkpoint -> HF safetensors"),
    "bench": ("megatron_lwz.cli.bench_cmds",
              "benchmarks: preprocess | rewards | export | train | checkpoint | rollout | sync | e2e"),
    "rehearse": ("megatron_lwz.cli.rehearse_cmds",
                 "dry-run a recipe's real job code at full world size on a stand-in device (no GPU)"),
    "plan": ("megatron_lwz.cli.plan_cmds", "rank TP/PP/VPP/DP/SP/recompute/FP8 layouts: memory, step time, MFU"),
    "ablate": ("megatron_lwz.cli.ablate_cmds", "run an ablation study (variants x seeds) and report it"),
    "eval generate": ("megatron_lwz.cli.eval_cmds", "answer a prompt file from a checkpoint (JSONL, resumable)"),
    "eval writingbench": ("megatron_lwz.cli.eval_cmds", "WritingBench critic scores per criterion and domain"),
    "eval arena": ("megatron_lwz.cli.eval_cmds", "pairwise Arena-Write judging -> Bradley-Terry Elo"),
    "eval length": ("megatron_lwz.cli.eval_cmds", "LongBench-Write length score S_l"),
}


def _module_for(name: str):
    module = importlib.import_module(COMMANDS[name][0])
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lwz", description=__doc__.splitlines()[0])
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (_, help_text) in COMMANDS.items():
        if " " in name:
            group, sub = name.split(" ", 1)
            if group not in groups:
                gp = subs.add_parser(group, help=f"{group} subcommands")
                groups[group] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            sp = groups[group].add_parser(sub, help=help_text, add_help=False)
        else:
            sp = subs.add_parser(name, help=help_text, add_help=False)
        sp.set_defaults(_command=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    noise.install()  # known harmless warnings of the pinned stack, once (cli/noise.py lists them)
    parser = build_parser()
    # First pass only resolves which command runs; its module then adds its own arguments.
    known, _ = parser.parse_known_args(argv)
    name = getattr(known, "_command", None)
    if name is None:
        parser.print_help()
        return 0 if not argv else 2
    module = _module_for(name)
    sub = argparse.ArgumentParser(prog=f"lwz {name}", description=COMMANDS[name][1])
    module.add_arguments(sub, name)
    args = sub.parse_args(argv[len(name.split()):])
    args.command = name
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
