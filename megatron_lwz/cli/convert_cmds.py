"""``lwz convert hf-to-mcore`` and ``lwz convert mcore-to-hf`` (also ``python tools/convert_checkpoint.py``).

Conversion runs on CPU (host memory is what large models need; GPUs are hidden from it). A
parallel hf-to-mcore launch gives each rank only its TP×PP shard::

    torchrun --nproc_per_node 8 tools/convert_checkpoint.py hf-to-mcore --hf DIR --out DIR --tp 4 --pp 2

(or ``srun`` with one task per shard). Heavy imports happen in ``run`` only.
"""

from __future__ import annotations

import argparse
import os
import sys

DTYPES = ("auto", "fp32", "bf16", "fp16")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Arguments of the command ``name``."""
    if name == "convert hf-to-mcore":
        parser.add_argument("--hf", required=True, metavar="DIR", help="HF Qwen2 model directory (safetensors)")
        parser.add_argument("--out", required=True, metavar="DIR",
                            help="output save directory (gets release/ and latest_checkpointed_iteration.txt)")
        parser.add_argument("--tp", type=int, default=1, help="target tensor parallelism (default 1)")
        parser.add_argument("--pp", type=int, default=1, help="target pipeline parallelism (default 1)")
        parser.add_argument("--make-vocab-size-divisible-by", type=int, default=128,
                            help="pad the vocab to a multiple of this × TP (default 128)")
    elif name == "convert mcore-to-hf":
        parser.add_argument("--ckpt", required=True, metavar="DIR",
                            help="save directory (follows its latest marker) or one checkpoint directory")
        parser.add_argument("--out", required=True, metavar="DIR", help="HF output directory")
        parser.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default 5GB)")
        parser.add_argument("--hf-assets", metavar="DIR",
                            help="take config/tokenizer files from here if the checkpoint stores none")
    else:
        raise ValueError(f"megatron_lwz.cli.convert_cmds does not serve {name!r}")
    parser.add_argument("--dtype", choices=DTYPES, default="auto",
                        help="stored dtype (default auto: the source's)")
    parser.add_argument("--verify", action="store_true", help="re-read the result and compare every tensor")
    parser.add_argument("--force", action="store_true", help="replace an existing conversion result")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _quiet_library_warnings() -> None:
    """megatron / torch DCP warn about TE, Apex and single-process loads on every run: irrelevant here."""
    import warnings

    for pattern in ("Transformer Engine and Apex", "Apex is not installed", "torch.distributed is disabled",
                    "argument order of load", "full scope is deprecated"):
        warnings.filterwarnings("ignore", message=f".*{pattern}.*")


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: conversion is a CPU job
    _quiet_library_warnings()
    from megatron_lwz.checkpoint.convert import HfToMcoreConfig, McoreToHfConfig, hf_to_mcore, mcore_to_hf

    try:
        if args.command == "convert hf-to-mcore":
            out = hf_to_mcore(HfToMcoreConfig(
                hf_dir=args.hf, out_dir=args.out, tp=args.tp, pp=args.pp, dtype=args.dtype,
                make_vocab_size_divisible_by=args.make_vocab_size_divisible_by, verify=args.verify,
                force=args.force, progress=not args.no_progress))
        else:
            out = mcore_to_hf(McoreToHfConfig(
                ckpt=args.ckpt, out_dir=args.out, dtype=args.dtype, max_shard_size=args.max_shard_size,
                hf_assets=args.hf_assets, verify=args.verify, force=args.force, progress=not args.no_progress))
    except (ValueError, FileNotFoundError, FileExistsError) as err:  # CheckpointError / ConfigError included
        print(f"error: {err}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {out}")
    return 0
