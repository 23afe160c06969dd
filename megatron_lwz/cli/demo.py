"""``lwz demo``: the whole pipeline on CPU — data → tokenizer → pretraining → Writing RM → GRPO.

Each training stage runs as its own ``lwz <job> --config examples/...`` process (exactly what a user
runs), with ``DEMO_DIR`` pointing the recipes at this demo's directory. A rerun resumes every stage
from its last checkpoint (finished stages are skipped). Ends with a summary table, a PNG and, as
the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("books", "reports", "papers", "cot")


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--out", default="runs/demo", help="demo directory (default runs/demo)")
    parser.add_argument("--recipes", default=str(ROOT / "examples"), help="directory with pretrain/ rm/ grpo/ recipes")
    parser.add_argument("--vocab-size", type=int, default=4096, help="sentencepiece vocabulary of the demo tokenizer")
    parser.add_argument("--grpo-steps", type=int, default=None, help="override rl.num_steps")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="override train.train_steps of pretraining")


def prepare_data(out: Path, vocab_size: int) -> None:
    """Generated corpus + CoT slice + RM pairs + RL prompts, a sentencepiece tokenizer, .bin/.idx files."""
    from megatron_lwz.data.demo import DemoConfig, make_demo
    from megatron_lwz.data.preprocess import PreprocessConfig, preprocess
    from megatron_lwz.data.tokenizer import TokenizerConfig
    from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig, train_sentencepiece

    data = out / "data"
    if not (data / "manifest.json").is_file():
        make_demo(DemoConfig(out_dir=str(data), seed=0))
    tok = out / "tokenizer"
    if not (tok / "tokenizer.model").is_file():
        train_sentencepiece(TokenizerTrainConfig(inputs=[str(data / f"{s}.jsonl") for s in SOURCES],
                                                 output=str(tok), vocab_size=vocab_size))
    for src in SOURCES:
        if not (data / f"{src}.idx").is_file():
            preprocess(PreprocessConfig(inputs=[str(data / f"{src}.jsonl")], output_prefix=str(data / src),
                                        tokenizer=TokenizerConfig(path=str(tok)), workers=1, progress=False))


def run_stage(job: str, recipe: Path, out: Path, overrides: list[str]) -> float:
    """``lwz <job> --config recipe`` in a child process; returns its wall time."""
    env = dict(os.environ, DEMO_DIR=str(out), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               PYTHONWARNINGS="ignore")
    start = time.time()
    print(f"\n=== {job}: {recipe.relative_to(ROOT) if recipe.is_relative_to(ROOT) else recipe} ===", flush=True)
    proc = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", job, "--config", str(recipe), *overrides],
                          env=env, cwd=os.getcwd())
    if proc.returncode != 0:
        raise SystemExit(f"demo: stage {job} failed with exit code {proc.returncode}")
    return time.time() - start


def run(args: argparse.Namespace) -> int:
    from megatron_lwz.cli.demo_report import report

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    recipes = Path(args.recipes)
    times = {}
    start = time.time()
    prepare_data(out, args.vocab_size)
    times["data"] = time.time() - start
    pre = [f"train.train_steps={args.pretrain_steps}"] if args.pretrain_steps else []
    times["pretrain"] = run_stage("pretrain", recipes / "pretrain" / "tiny_cpu.yaml", out, pre)
    times["train-rm"] = run_stage("train-rm", recipes / "rm" / "tiny_cpu.yaml", out, [])
    grpo = [f"rl.num_steps={args.grpo_steps}"] if args.grpo_steps else []
    times["grpo"] = run_stage("grpo", recipes / "grpo" / "tiny_cpu.yaml", out, grpo)
    summary = report(out, times)
    print(json.dumps(summary), flush=True)
    return 0
