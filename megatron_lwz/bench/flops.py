"""Model FLOPs per token and MFU for the Qwen2 decoder (documented formula, incl. the attention term).

Training FLOPs per token (forward + backward = 3 × forward, one multiply-add = 2 FLOPs):

    F_token = 6 · (L · P_layer + h · V)  +  6 · L · s_eff · (2 · n_q · d)

* ``P_layer = h·n_q·d + 2·h·n_kv·d + n_q·d·h + 3·h·f`` — matmul weights of one layer (QKV, output
  projection, SwiGLU gate/up/down); norms, biases and the embedding lookup are negligible.
* ``h·V`` — the output layer (logits).
* attention: per layer and token, QKᵀ and AV each cost ``2·s·n_q·d`` forward; with a causal mask
  only half the keys are visited, so ``s_eff = s / 2`` (the FlashAttention convention).
  At s = 32K on Qwen2.5-32B this term is ~25% of the total (4% at 4K), which is why it must be counted.

MFU = achieved model FLOPs/s ÷ peak FLOPs/s of the hardware (no recompute FLOPs counted).
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_lwz.models.presets import ModelArch

# Dense peak throughput per device, FLOP/s (vendor numbers, no sparsity).
PEAK_FLOPS = {"h100-bf16": 989e12, "h100-fp8": 1979e12, "h800-bf16": 989e12, "a100-bf16": 312e12}


def matmul_params(arch: ModelArch) -> int:
    h, d, f = arch.hidden_size, arch.head_dim, arch.ffn_hidden_size
    nq, nkv = arch.num_attention_heads, arch.num_query_groups
    per_layer = h * nq * d + 2 * h * nkv * d + nq * d * h + 3 * h * f
    return arch.num_layers * per_layer + h * arch.vocab_size


def train_flops_per_token(arch: ModelArch, seq_length: int, causal: bool = True) -> float:
    """Forward + backward FLOPs per trained token at sequence length ``seq_length``."""
    s_eff = seq_length / 2 if causal else seq_length
    attn = arch.num_layers * s_eff * 2 * arch.num_attention_heads * arch.head_dim
    return 6.0 * matmul_params(arch) + 6.0 * attn


def mfu(tokens_per_s: float, arch: ModelArch, seq_length: int, num_devices: int, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1]; None when the peak is unknown (e.g. on CPU)."""
    if not peak_flops:
        return None
    return tokens_per_s * train_flops_per_token(arch, seq_length) / (num_devices * peak_flops)


@dataclass(frozen=True, kw_only=True)
class FlopsBreakdown:
    """Training FLOPs per token split into the terms of the module formula."""

    layers: float
    """6 · L · P_layer (QKV, output projection, SwiGLU)."""
    logits: float
    """6 · h · V (output layer)."""
    attention: float
    """6 · L · s_eff · 2 · n_q · d (QKᵀ and AV)."""

    @property
    def total(self) -> float:
        return self.layers + self.logits + self.attention

    @property
    def attention_share(self) -> float:
        return self.attention / self.total


def flops_breakdown(arch: ModelArch, seq_length: int, causal: bool = True) -> FlopsBreakdown:
    """The three terms of :func:`train_flops_per_token` (their sum equals it)."""
    logits = 6.0 * arch.hidden_size * arch.vocab_size
    attention = train_flops_per_token(arch, seq_length, causal) - 6.0 * matmul_params(arch)
    return FlopsBreakdown(layers=6.0 * matmul_params(arch) - logits, logits=logits, attention=attention)


def tokens_per_s_at_mfu(arch: ModelArch, seq_length: int, mfu_target: float, peak_flops: float) -> float:
    """Tokens/s per device that reach ``mfu_target`` on hardware with ``peak_flops`` (inverse of :func:`mfu`)."""
    return mfu_target * peak_flops / train_flops_per_token(arch, seq_length)
