"""The model shape the planner reasons about, and its training FLOPs.

Generalises :mod:`megatron_lwz.bench.flops` (Qwen2: SwiGLU, GQA, ``head_dim = h / n_q``) to GELU
MLPs and explicit head dimensions (Qwen3, Llama); for a Qwen2 preset the FLOPs agree exactly with
``bench.flops.train_flops_per_token`` (pinned by a test).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """A dense decoder-only transformer."""

    layers: int
    """Transformer layers."""
    hidden: int
    """Model width h."""
    ffn: int
    """MLP intermediate size f."""
    heads: int
    """Query heads n_q."""
    kv_heads: int
    """Key/value heads n_kv (GQA groups)."""
    vocab: int
    """Vocabulary size (padded to 128 × TP by the memory model)."""
    head_dim: int | None = None
    """Per-head width d; None = hidden / heads."""
    swiglu: bool = True
    """Gated MLP (3 matrices h×f) vs GELU (2 matrices)."""
    tied: bool = False
    """Input embedding shared with the output layer."""

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def layer_matmul_params(self) -> int:
        """QKV + output projection + MLP weights of one layer (norms and biases are negligible)."""
        h, d, f = self.hidden, self.d, self.ffn
        return h * self.heads * d + 2 * h * self.kv_heads * d + self.heads * d * h + (3 if self.swiglu else 2) * h * f

    def layer_params(self) -> int:
        """All parameters of one layer (adds the QKV bias and the two RMSNorm weights)."""
        return self.layer_matmul_params() + (self.heads + 2 * self.kv_heads) * self.d + 2 * self.hidden

    def num_params(self) -> int:
        return self.layers * self.layer_params() + self.vocab * self.hidden * (1 if self.tied else 2)

    def fwd_flops_per_token(self, seq_length: int, causal: bool = True) -> tuple[float, float, float]:
        """Forward FLOPs per token split as (layer GEMMs, causal attention, logits)."""
        s_eff = seq_length / 2 if causal else seq_length
        gemm = 2.0 * self.layers * self.layer_matmul_params()
        attn = 2.0 * self.layers * s_eff * 2 * self.heads * self.d
        return gemm, attn, 2.0 * self.hidden * self.vocab

    def train_flops_per_token(self, seq_length: int, causal: bool = True) -> float:
        """Model FLOPs per trained token: 3 × forward (the MFU numerator; recompute not counted)."""
        return 3.0 * sum(self.fwd_flops_per_token(seq_length, causal))


def from_arch(arch) -> ModelShape:
    """A :class:`~megatron_lwz.models.presets.ModelArch` as a planner shape."""
    return ModelShape(layers=arch.num_layers, hidden=arch.hidden_size, ffn=arch.ffn_hidden_size,
                      heads=arch.num_attention_heads, kv_heads=arch.num_query_groups, vocab=arch.vocab_size,
                      swiglu=True, tied=arch.tie_word_embeddings)


def from_preset(name: str) -> ModelShape:
    """A ``models.presets`` entry (ValueError naming the choices for an unknown name)."""
    from megatron_lwz.models.presets import PRESETS

    if name not in PRESETS:
        raise ValueError(f"--model {name!r}: unknown preset; choose one of {sorted(PRESETS)}")
    return from_arch(PRESETS[name])
