"""Shared e2e fixture: a small generated corpus, a sentencepiece tokenizer and .bin/.idx files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VOCAB = 1024


def lwz(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python -m megatron_lwz.cli.main ARGS`` and fail with its output tail on error."""
    full_env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore", **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env=full_env, timeout=timeout)
    return proc


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from megatron_lwz.data.demo import DemoConfig, make_demo
    from megatron_lwz.data.preprocess import PreprocessConfig, preprocess
    from megatron_lwz.data.tokenizer import TokenizerConfig
    from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig, train_sentencepiece

    out = tmp_path_factory.mktemp("demo")
    data = out / "data"
    make_demo(DemoConfig(out_dir=str(data), seed=1, scale=0.5, cot_records=300, rm_pairs=400, rm_heldout=100))
    sources = ("books", "reports", "papers", "cot")
    train_sentencepiece(TokenizerTrainConfig(inputs=[str(data / f"{s}.jsonl") for s in sources],
                                             output=str(out / "tokenizer"), vocab_size=VOCAB))
    for src in sources:
        preprocess(PreprocessConfig(inputs=[str(data / f"{src}.jsonl")], output_prefix=str(data / src),
                                    tokenizer=TokenizerConfig(path=str(out / "tokenizer")), progress=False))
    return out
