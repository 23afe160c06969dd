"""Qwen2.5 architecture presets (exact Hugging Face dimensions) and tiny test models.

``resolve(ModelConfig) -> ModelArch`` merges a preset or an HF ``config.json`` with the explicit
fields of the config. Pure Python: no torch, no megatron.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from megatron_lwz.config.base import ConfigError
from megatron_lwz.config.schema import ModelConfig


@dataclass(frozen=True, kw_only=True)
class ModelArch:
    """A fully specified Qwen2-architecture decoder (what HF's Qwen2Config describes)."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float = 1_000_000.0
    norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    qkv_bias: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def num_params(self) -> int:
        """Parameter count (unpadded vocab), as HF counts it."""
        h, f, v, L = self.hidden_size, self.ffn_hidden_size, self.vocab_size, self.num_layers
        kv = self.num_query_groups * self.head_dim
        attn = h * h + 2 * h * kv + h * h + (h + 2 * kv if self.qkv_bias else 0)
        layer = attn + 3 * h * f + 2 * h
        return L * layer + v * h * (1 if self.tie_word_embeddings else 2) + h

    def to_hf_config(self) -> dict:
        """The matching HF ``Qwen2ForCausalLM`` config.json contents."""
        return {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "hidden_size": self.hidden_size, "intermediate_size": self.ffn_hidden_size,
            "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_query_groups, "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings, "rope_theta": self.rope_theta,
            "rms_norm_eps": self.norm_eps, "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu", "attention_dropout": 0.0, "use_sliding_window": False,
            "head_dim": self.head_dim,
        }


def _qwen(layers, hidden, ffn, heads, kv, vocab, max_pos, eps, tie) -> ModelArch:
    return ModelArch(num_layers=layers, hidden_size=hidden, ffn_hidden_size=ffn, num_attention_heads=heads,
                     num_query_groups=kv, vocab_size=vocab, max_position_embeddings=max_pos,
                     rope_theta=1_000_000.0, norm_eps=eps, tie_word_embeddings=tie, qkv_bias=True)


# Values from the Qwen/Qwen2.5-* base models' config.json files.
PRESETS: dict[str, ModelArch] = {
    "qwen2.5-0.5b": _qwen(24, 896, 4864, 14, 2, 151936, 32768, 1e-6, True),
    "qwen2.5-1.5b": _qwen(28, 1536, 8960, 12, 2, 151936, 131072, 1e-6, True),
    "qwen2.5-3b": _qwen(36, 2048, 11008, 16, 2, 151936, 32768, 1e-6, True),
    "qwen2.5-7b": _qwen(28, 3584, 18944, 28, 4, 152064, 131072, 1e-6, False),
    "qwen2.5-14b": _qwen(48, 5120, 13824, 40, 8, 152064, 131072, 1e-5, False),
    "qwen2.5-32b": _qwen(64, 5120, 27648, 40, 8, 152064, 131072, 1e-5, False),
    "qwen2.5-72b": _qwen(80, 8192, 29568, 64, 8, 152064, 131072, 1e-5, False),
    # Tiny models for CPU tests and the demo (GQA + QKV bias like the real ones).
    "tiny": ModelArch(num_layers=4, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                      num_query_groups=2, vocab_size=256, max_position_embeddings=512, rope_theta=10000.0,
                      norm_eps=1e-6, tie_word_embeddings=False, qkv_bias=True),
    # 3 query heads per KV head, vocab not a multiple of 128 (conversion edge cases).
    "tiny-gqa3": ModelArch(num_layers=4, hidden_size=96, ffn_hidden_size=160, num_attention_heads=6,
                           num_query_groups=2, vocab_size=300, max_position_embeddings=256, rope_theta=10000.0,
                           norm_eps=1e-6, tie_word_embeddings=False, qkv_bias=True),
    # The CPU demo's policy: small enough to pretrain + RL on 2 cores in minutes.
    "demo": ModelArch(num_layers=4, hidden_size=128, ffn_hidden_size=352, num_attention_heads=4,
                      num_query_groups=2, vocab_size=4096, max_position_embeddings=1024, rope_theta=10000.0,
                      norm_eps=1e-6, tie_word_embeddings=True, qkv_bias=True),
}


def arch_from_hf_config(path: str | Path) -> ModelArch:
    """Read an HF Qwen2 ``config.json`` (file or directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"model.hf_config: {path} does not exist")
    cfg = json.loads(path.read_text())
    if cfg.get("model_type") not in ("qwen2", None):
        raise ConfigError(f"{path}: model_type={cfg.get('model_type')!r}; only the Qwen2 architecture is supported")
    try:
        heads = cfg["num_attention_heads"]
        return ModelArch(
            num_layers=cfg["num_hidden_layers"], hidden_size=cfg["hidden_size"],
            ffn_hidden_size=cfg["intermediate_size"], num_attention_heads=heads,
            num_query_groups=cfg.get("num_key_value_heads", heads), vocab_size=cfg["vocab_size"],
            max_position_embeddings=cfg.get("max_position_embeddings", 32768),
            rope_theta=float(cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)), qkv_bias=True,
        )
    except KeyError as err:
        raise ConfigError(f"{path}: missing field {err.args[0]!r}") from None


def resolve(cfg: ModelConfig) -> ModelArch:
    """Preset / HF config first, then every non-null explicit field of ``cfg`` on top."""
    if cfg.preset and cfg.hf_config:
        raise ConfigError("model: set either model.preset or model.hf_config, not both")
    if cfg.preset:
        if cfg.preset not in PRESETS:
            raise ConfigError(f"model.preset: unknown {cfg.preset!r}; choose one of {sorted(PRESETS)}")
        base = dataclasses.asdict(PRESETS[cfg.preset])
    elif cfg.hf_config:
        base = dataclasses.asdict(arch_from_hf_config(cfg.hf_config))
    else:
        base = {}
    for f in dataclasses.fields(ModelArch):
        value = getattr(cfg, f.name, None)
        if value is not None:
            base[f.name] = value
    missing = [f.name for f in dataclasses.fields(ModelArch)
               if f.name not in base and f.default is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"model: missing {missing}; set model.preset, model.hf_config or these fields")
    arch = ModelArch(**base)
    if arch.hidden_size % arch.num_attention_heads:
        raise ConfigError(f"model.hidden_size={arch.hidden_size} is not divisible by "
                          f"model.num_attention_heads={arch.num_attention_heads}")
    if arch.num_attention_heads % arch.num_query_groups:
        raise ConfigError(f"model.num_attention_heads={arch.num_attention_heads} is not divisible by "
                          f"model.num_query_groups={arch.num_query_groups}")
    return arch


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ≥ ``n``."""
    return -(-n // multiple) * multiple


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Pad the vocabulary to a multiple of ``divisible_by × TP`` (Megatron's convention)."""
    return round_up(vocab_size, divisible_by * tp)
