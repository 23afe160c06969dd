"""``lwz bench {preprocess|rewards|export|train}``: every benchmark prints a table, then one JSON line.

Thin: each ``which`` has its own flags (``lwz bench export --help``); parsing ends in a typed config
and a call into ``megatron_lwz.data.bench``, ``megatron_lwz.rewards.bench`` or ``megatron_lwz.bench``.
Heavy imports happen in ``run`` only.
"""

from __future__ import annotations

import argparse
import sys

BENCHES = {
    "preprocess": "tokens/s of lwz preprocess (N workers) vs a single-process baseline",
    "rewards": "Format/repetition RM time at 1K/4K/14K words vs a count_words pass",
    "export": "Megatron->HF weight export (TP=1, TP=2) vs a memcpy of the same bytes",
    "train": "engine tokens/s and step time for TP1 / TP2 / PP2 vs TP1, plus FLOPs/token of Qwen2.5-32B",
    "sync": "trainer -> rollout-engine weight sync (rl.step.sync_weights) seconds and GB/s vs a memcpy",
    "e2e": "GRPO step by phase (rollout, reward, old log-probs, train, sync) from real lwz grpo steps",
    "rollout": "round-robin vs length-aware dispatch on 2 HF engines (measured) + projected 8x8 rollout minutes",
    "checkpoint": "checkpoint save/load time and peak host RSS per rank: old (gather, sync) vs new (sharded, async)",
}


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Arguments of ``lwz bench``: a positional ``which`` (one sub-parser per benchmark)."""
    if name != "bench":
        raise ValueError(f"megatron_lwz.cli.bench_cmds does not serve {name!r}")
    subs = parser.add_subparsers(dest="which", metavar="which", required=True)
    for which, help_text in BENCHES.items():
        _ARGS[which](subs.add_parser(which, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark; returns the exit status (1 on a failed self-check or bad flags)."""
    try:
        return _RUNS[args.which](args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _preprocess_args(p: argparse.ArgumentParser) -> None:
    from megatron_lwz.cli.data_cmds import add_bench_arguments

    add_bench_arguments(p)


def _run_preprocess(args: argparse.Namespace) -> int:
    from megatron_lwz.cli.data_cmds import run_bench_cli

    return run_bench_cli(args)


def _rewards_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=15, help="timed calls per cell (median CPU time)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 14000], help="answer sizes in words")


def _run_rewards(args: argparse.Namespace) -> int:
    from megatron_lwz.rewards.bench import run_bench

    run_bench(tuple(args.sizes), repeats=args.repeats)  # prints its table, then the JSON line
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``lwz bench export`` / tools/bench_export.py (defaults: ExportBenchConfig)."""
    from megatron_lwz.bench.export import ExportBenchConfig

    d = ExportBenchConfig()
    p.add_argument("--tp", type=int, nargs="+", default=d.tp, help="TP sizes, one launch each (default: 1 2)")
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--ffn", type=int, default=d.ffn, help="SwiGLU intermediate size")
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--kv-heads", type=int, default=d.kv_heads)
    p.add_argument("--vocab", type=int, default=d.vocab)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=d.dtype, help="export (engine) dtype")
    p.add_argument("--bucket-mb", type=float, default=d.bucket_mb, help="export bucket size in MiB")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs of export and memcpy each")
    p.add_argument("--collectives", action="store_true",
                   help="TP > 1: also time the gloo/nccl transport and check it is bit-identical (more RAM)")
    p.add_argument("--threads", type=int, default=d.threads, help="OMP threads per rank")



def run_export_cli(args: argparse.Namespace) -> int:
    """Run the export benchmark from parsed flags; table + JSON line; 1 if transports disagree."""
    from megatron_lwz.bench.export import ExportBenchConfig, run_export_bench
    from megatron_lwz.bench.report import emit

    cfg = ExportBenchConfig(tp=args.tp, hidden=args.hidden, layers=args.layers, ffn=args.ffn, heads=args.heads,
                            kv_heads=args.kv_heads, vocab=args.vocab, dtype=args.dtype, bucket_mb=args.bucket_mb,
                            repeats=args.repeats, collectives=args.collectives, threads=args.threads)
    result = run_export_bench(cfg)
    emit(result)
    return 1 if result.summary["transports_identical"] is False else 0



def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``lwz bench train`` / tools/bench_train.py (defaults: TrainBenchConfig)."""
    from megatron_lwz.bench.train import TrainBenchConfig

    d = TrainBenchConfig()
    p.add_argument("--layouts", nargs="*", default=d.layouts, metavar="LAYOUT",
                   help="layouts beside the tp1 baseline, e.g. tp2 pp2 (2 processes each; default: tp2 pp2; "
                        "none: tp1 only, e.g. on one GPU)")
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--ffn", type=int, default=d.ffn)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--kv-heads", type=int, default=d.kv_heads)
    p.add_argument("--vocab", type=int, default=d.vocab)
    p.add_argument("--seq", type=int, default=d.seq, help="sequence length")
    p.add_argument("--micro-batch", type=int, default=d.micro_batch)
    p.add_argument("--micro-batches", type=int, default=d.micro_batches, help="micro-batches per step")
    p.add_argument("--steps", type=int, default=d.steps, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first")
    p.add_argument("--threads", type=int, default=d.threads, help="OMP threads per rank")
    p.add_argument("--flops-preset", default=d.flops_preset, help="architecture for the FLOPs/token lines")
    p.add_argument("--flops-seq", type=int, default=d.flops_seq, help="sequence length for the FLOPs/token lines")
    p.add_argument("--harness-steps", type=int, default=d.harness_steps,
                   help="TP1: alternating steps of our train_step vs a bare megatron-core loop (0 = off)")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default=d.dtype, help="auto = bf16 on CUDA, fp32 on CPU")
    p.add_argument("--results", help="results file (JSON + environment); default runs/bench/train-<UTC time>.json")



def run_train_cli(args: argparse.Namespace) -> int:
    """Run the training benchmark from parsed flags; table + JSON line; 1 if a layout's loss disagrees."""
    from megatron_lwz.bench.report import emit
    from megatron_lwz.bench.train import TrainBenchConfig, run_train_bench

    cfg = TrainBenchConfig(layouts=args.layouts, hidden=args.hidden, layers=args.layers, ffn=args.ffn,
                           heads=args.heads, kv_heads=args.kv_heads, vocab=args.vocab, seq=args.seq,
                           micro_batch=args.micro_batch, micro_batches=args.micro_batches, steps=args.steps,
                           warmup=args.warmup, threads=args.threads, flops_preset=args.flops_preset,
                           flops_seq=args.flops_seq, harness_steps=args.harness_steps, dtype=args.dtype,
                           results=args.results)
    result = run_train_bench(cfg)
    from megatron_lwz.bench.results import environment, write_results

    path = write_results(result, environment({"layouts": ["tp1", *cfg.layouts]}), cfg.results)
    result.notes.append(f"results: {path}")
    emit(result)
    return 0 if result.summary["losses_match"] is not False else 1


def add_rollout_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``lwz bench rollout`` (defaults: RolloutBenchConfig)."""
    from megatron_lwz.bench.rollout import RolloutBenchConfig

    d = RolloutBenchConfig()
    p.add_argument("--engines", type=int, default=d.engines, help="HF engines (measured part)")
    p.add_argument("--prompts", type=int, default=d.prompts)
    p.add_argument("--group-size", type=int, default=d.group_size)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="the 14K-token cap scaled to CPU")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs per dispatch (fastest kept)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-project", action="store_true", help="skip the 8x8 projection")


def run_rollout_cli(args: argparse.Namespace) -> int:
    """Run the rollout benchmark; table + JSON line; 1 if the dispatches drew different samples."""
    from megatron_lwz.bench.report import emit
    from megatron_lwz.bench.rollout import RolloutBenchConfig, run_rollout_bench

    result = run_rollout_bench(RolloutBenchConfig(engines=args.engines, prompts=args.prompts,
                                                  group_size=args.group_size, max_tokens=args.max_tokens,
                                                  repeats=args.repeats, seed=args.seed, project=not args.no_project))
    emit(result)
    return 0 if result.summary["measured"]["samples_identical"] else 1


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``lwz bench checkpoint`` (defaults: CheckpointBenchConfig)."""
    from megatron_lwz.bench.checkpoint import CheckpointBenchConfig

    d = CheckpointBenchConfig()
    for name in ("ranks", "tp", "pp", "hidden", "layers", "ffn", "heads", "kv_heads", "vocab"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=d.dtype)


def run_checkpoint_cli(args: argparse.Namespace) -> int:
    """Run the checkpoint benchmark; table + JSON line."""
    from megatron_lwz.bench.checkpoint import CheckpointBenchConfig, run_checkpoint_bench
    from megatron_lwz.bench.report import emit

    names = ("ranks", "tp", "pp", "hidden", "layers", "ffn", "heads", "kv_heads", "vocab", "dtype")
    emit(run_checkpoint_bench(CheckpointBenchConfig(**{n: getattr(args, n) for n in names})))
    return 0


_ARGS = {"preprocess": _preprocess_args, "rewards": _rewards_args, "export": add_export_arguments,
         "train": add_train_arguments, "rollout": add_rollout_arguments}
_RUNS = {"preprocess": _run_preprocess, "rewards": _run_rewards, "export": run_export_cli, "train": run_train_cli,
         "rollout": run_rollout_cli}
_ARGS["checkpoint"] = add_checkpoint_arguments
_RUNS["checkpoint"] = run_checkpoint_cli


def add_e2e_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``lwz bench e2e`` (defaults: E2EBenchConfig)."""
    from megatron_lwz.bench.e2e import E2EBenchConfig

    d = E2EBenchConfig()
    p.add_argument("--config", help="GRPO recipe (default: a self-contained CPU demo setup)")
    p.add_argument("overrides", nargs="*", help="dotted overrides for --config, e.g. rl.prompts_per_step=4")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--skip-first", type=int, default=d.skip_first, help="warm-up steps left out of the medians")
    p.add_argument("--run-dir", help="analyse this finished run's metrics.jsonl instead of running")
    p.add_argument("--gpus", type=int, default=d.gpus, help="GPUs/processes of the analysed run")
    p.add_argument("--results", help="results file (default runs/bench/e2e-<UTC time>.json)")


def run_e2e_cli(args: argparse.Namespace) -> int:
    """Run the e2e benchmark; table + JSON line; results file with the environment."""
    from megatron_lwz.bench.e2e import E2EBenchConfig, run_e2e_bench
    from megatron_lwz.bench.report import emit
    from megatron_lwz.bench.results import environment, write_results

    result = run_e2e_bench(E2EBenchConfig(config=args.config, overrides=args.overrides, steps=args.steps,
                                          skip_first=args.skip_first, run_dir=args.run_dir, gpus=args.gpus))
    result.notes.append(f"results: {write_results(result, environment({'gpus': args.gpus}), args.results)}")
    emit(result)
    return 0


def add_sync_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``lwz bench sync`` (defaults: SyncBenchConfig)."""
    from megatron_lwz.bench.sync import SyncBenchConfig

    d = SyncBenchConfig()
    p.add_argument("--tp", type=int, nargs="+", default=d.tp, help="TP sizes, one launch each")
    for flag, value in (("--hidden", d.hidden), ("--layers", d.layers), ("--ffn", d.ffn), ("--heads", d.heads),
                        ("--kv-heads", d.kv_heads), ("--vocab", d.vocab), ("--repeats", d.repeats),
                        ("--threads", d.threads)):
        p.add_argument(flag, type=int, default=value)
    p.add_argument("--results", help="results file (default runs/bench/sync-<UTC time>.json)")


def run_sync_cli(args: argparse.Namespace) -> int:
    """Run the sync benchmark; table + JSON line; results file with the environment."""
    from megatron_lwz.bench.report import emit
    from megatron_lwz.bench.results import environment, write_results
    from megatron_lwz.bench.sync import SyncBenchConfig, run_sync_bench

    cfg = SyncBenchConfig(tp=args.tp, hidden=args.hidden, layers=args.layers, ffn=args.ffn, heads=args.heads,
                          kv_heads=args.kv_heads, vocab=args.vocab, repeats=args.repeats, threads=args.threads)
    result = run_sync_bench(cfg)
    result.notes.append(f"results: {write_results(result, environment({'tp': cfg.tp}), args.results)}")
    emit(result)
    return 0


_ARGS.update(sync=add_sync_arguments, e2e=add_e2e_arguments)
_RUNS.update(sync=run_sync_cli, e2e=run_e2e_cli)
