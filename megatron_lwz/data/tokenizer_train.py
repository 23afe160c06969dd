"""Train a sentencepiece tokenizer (BPE or unigram) whose output ``Tokenizer`` loads directly.

Settings chosen so that *any* text round-trips exactly through ``decode(encode(text))``:
``byte_fallback=True`` (unseen characters become UTF-8 byte pieces), ``normalization_rule_name=
"identity"`` (no NFKC: full-width Chinese punctuation stays full-width), ``add_dummy_prefix=False`` and
``remove_extra_whitespaces=False`` (the English think template has two consecutive spaces). The think /
answer tags, the English and Chinese role markers, ``<|endoftext|>`` (the EOD piece) and ``"\\n"`` are
user-defined symbols, i.e. always single tokens, also when they occur literally in text. ``<pad>`` is a
control piece (never produced from text), ``<unk>`` is id 0, and there is no BOS/EOS piece: documents
get one EOD appended by the preprocessor.

Output directory: ``tokenizer.model`` (the sentencepiece model proto) and ``lwz_tokenizer.json``
(``{"format": 1, "kind": "sentencepiece", "model": "tokenizer.model", "eod_token", "pad_token",
"special_tokens": [...], "vocab_size", "model_type", "trained_on": [...], "sentences"}``).
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Sequence

from megatron_lwz.data.readers import iter_texts
from megatron_lwz.data.templates import EOD_TOKEN, ROLE_MARKERS, THINK_TAGS
from megatron_lwz.data.tokenizer import META_FILENAME, SP_MODEL_FILENAME

SPECIAL_SYMBOLS = (EOD_TOKEN, *THINK_TAGS, *ROLE_MARKERS, "\n")
"""User-defined symbols of trained tokenizers, in id order starting at 2."""


@dataclass(kw_only=True)
class TokenizerTrainConfig:
    """Inputs and settings of ``lwz tokenizer train``."""

    inputs: list[str]
    """JSON lines / parquet files (the ``text_key`` field) or plain .txt files (one text per line)."""
    output: str
    """Output directory (created)."""
    vocab_size: int = 8000
    """Vocabulary size including the special and 256 byte-fallback pieces."""
    model_type: Literal["bpe", "unigram"] = "bpe"
    """Sentencepiece model type."""
    text_key: str = "text"
    """Record field holding the text (JSON lines / parquet)."""
    max_sentences: int = 2_000_000
    """Train on at most this many paragraphs (a seeded reservoir sample when there are more)."""
    character_coverage: float = 0.9995
    """Share of characters covered by pieces; the rest use byte fallback."""
    extra_symbols: list[str] = field(default_factory=list)
    """More user-defined symbols (always single tokens)."""
    seed: int = 1234
    """Seed of the paragraph sample."""
    num_threads: int = 1
    """Trainer threads."""

    def __post_init__(self) -> None:
        min_vocab = len(SPECIAL_SYMBOLS) + len(self.extra_symbols) + 2 + 256 + 1
        if self.vocab_size < min_vocab:
            raise ValueError(f"vocab_size: {self.vocab_size} is too small; the special and byte pieces alone need "
                             f"{min_vocab - 1} (use >= {min_vocab + 100})")
        if not self.inputs:
            raise ValueError("inputs: give at least one file")


def _paragraphs(inputs: Sequence[str], text_key: str) -> Iterator[str]:
    """Training sentences: documents split on newlines (sentencepiece drops over-long sentences)."""
    for text in iter_texts(inputs, text_key):
        for para in text.split("\n"):
            if para.strip():
                yield para


def _sample(inputs: Sequence[str], text_key: str, limit: int, seed: int) -> list[str]:
    """All paragraphs, or a seeded reservoir sample of ``limit`` of them."""
    rng = random.Random(seed)
    kept: list[str] = []
    for i, para in enumerate(_paragraphs(inputs, text_key)):
        if i < limit:
            kept.append(para)
        else:
            j = rng.randint(0, i)
            if j < limit:
                kept[j] = para
    return kept


def _train(spm, sentences: list[str], model: io.BytesIO, symbols: list[str], cfg: TokenizerTrainConfig) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=cfg.vocab_size,
        model_type=cfg.model_type, byte_fallback=True, user_defined_symbols=symbols,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, split_digits=True, character_coverage=cfg.character_coverage,
        unk_id=0, pad_id=1, pad_piece="<pad>", bos_id=-1, eos_id=-1, max_sentence_length=1 << 16,
        hard_vocab_limit=False, num_threads=cfg.num_threads, minloglevel=2,
    )


def train_sentencepiece(cfg: TokenizerTrainConfig) -> Path:
    """Train and write the tokenizer directory; returns its path."""
    import sentencepiece as spm

    sentences = _sample(cfg.inputs, cfg.text_key, cfg.max_sentences, cfg.seed)
    if not sentences:
        raise ValueError(f"inputs: no text found in {list(cfg.inputs)} (field {cfg.text_key!r})")
    symbols = list(SPECIAL_SYMBOLS) + [s for s in cfg.extra_symbols if s not in SPECIAL_SYMBOLS]
    model = io.BytesIO()
    try:
        _train(spm, sentences, model, symbols, cfg)
    except RuntimeError as err:
        if "required_chars" in str(err):
            raise ValueError(f"vocab_size: {cfg.vocab_size} is too small for the characters of this corpus at "
                             f"character_coverage={cfg.character_coverage}; raise vocab_size or lower "
                             f"character_coverage (sentencepiece: {err})") from None
        raise
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / SP_MODEL_FILENAME).write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    meta = {
        "format": 1, "kind": "sentencepiece", "model": SP_MODEL_FILENAME, "eod_token": EOD_TOKEN,
        "pad_token": "<pad>", "special_tokens": symbols, "vocab_size": int(sp.get_piece_size()),
        "model_type": cfg.model_type, "trained_on": [str(p) for p in cfg.inputs], "sentences": len(sentences),
    }
    (out / META_FILENAME).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out
