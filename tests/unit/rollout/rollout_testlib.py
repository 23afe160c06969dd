"""Helpers for the rollout tests: a byte-level stand-in tokenizer and tiny random Qwen2 models."""

from __future__ import annotations

import torch

EOD = 256
VOCAB = 300


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255, 256 is <|endoftext|> (eod), 257..299 decode to one letter each."""

    eod = EOD

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        out, buf = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                buf.append(i)
                continue
            out.append(buf.decode("utf-8", errors="replace"))
            buf = bytearray()
            out.append("<|endoftext|>" if i == EOD else chr(0x100 + i - 257))
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


def tiny_config(tied: bool = False):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       tie_word_embeddings=tied, rms_norm_eps=1e-6)


def tiny_model(seed: int, tied: bool = False):
    from megatron_lwz.rollout.hf_engine import build_hf_model

    model = build_hf_model(tiny_config(tied), dtype="float32", init_seed=seed)
    # Scale the output head so the distribution is peaked (greedy margins well above fp noise).
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    return model
