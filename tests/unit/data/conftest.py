"""Shared fixtures of the data tests: the demo corpus, a sentencepiece and a tiny HF tokenizer.

``data_testlib.PAPER_TEMPLATE_EN`` / ``_ZH`` are literal copies of paper.md §6.1 (not imported from
the package), so template tests compare our code against the paper's strings.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from data_testlib import TEMPLATE_TOKENS  # noqa: F401  (re-exported for fixtures)

CORPUS_FILES = ("books.jsonl", "reports.jsonl", "papers.jsonl", "cot.jsonl")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The generated demo data set (seed 0)."""
    from megatron_lwz.data.demo import DemoConfig, make_demo

    out = tmp_path_factory.mktemp("demo")
    make_demo(DemoConfig(out_dir=str(out), seed=0))
    return out


@pytest.fixture(scope="session")
def corpus_files(demo_dir) -> list[str]:
    return [str(demo_dir / name) for name in CORPUS_FILES]


@pytest.fixture(scope="session")
def sp_tokenizer_dir(tmp_path_factory, corpus_files) -> Path:
    """A 1000-piece sentencepiece BPE trained on the demo corpus by our trainer."""
    from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig, train_sentencepiece

    out = tmp_path_factory.mktemp("sp_tok")
    return train_sentencepiece(TokenizerTrainConfig(inputs=corpus_files, output=str(out), vocab_size=1000))


@pytest.fixture(scope="session")
def sp_tokenizer(sp_tokenizer_dir):
    from megatron_lwz.data.tokenizer import load_tokenizer

    return load_tokenizer(str(sp_tokenizer_dir))


@pytest.fixture(scope="session")
def hf_tokenizer_dir(tmp_path_factory, corpus_files) -> Path:
    """A tiny byte-level BPE built with the ``tokenizers`` library, saved as a HF tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=TEMPLATE_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [json.loads(line)["text"] for name in corpus_files[:2] for line in open(name, encoding="utf-8")]
    tok.train_from_iterator(texts, trainer=trainer)
    out = tmp_path_factory.mktemp("hf_tok")
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "PreTrainedTokenizerFast"}))
    return out
