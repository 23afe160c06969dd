"""FLOPs/token formula (megatron_lwz.bench.flops) against numbers worked out by hand and against
torch's own FLOP counter on Hugging Face's Qwen2 (forward + backward)."""

from __future__ import annotations

import pytest
import torch

from megatron_lwz.bench.flops import flops_breakdown, matmul_params, mfu, tokens_per_s_at_mfu, train_flops_per_token
from megatron_lwz.models.presets import PRESETS, ModelArch

# L=2, h=8, n_q=2, n_kv=1, d=4, f=16, V=10
TINY = ModelArch(num_layers=2, hidden_size=8, ffn_hidden_size=16, num_attention_heads=2, num_query_groups=1,
                 vocab_size=10, max_position_embeddings=64, rope_theta=1e4, norm_eps=1e-6,
                 tie_word_embeddings=False, qkv_bias=True)


def test_tiny_by_hand():
    # P_layer = h·nq·d + 2·h·nkv·d + nq·d·h + 3·h·f = 64 + 64 + 64 + 384 = 576; ×L = 1152; + h·V = 80
    assert matmul_params(TINY) == 1232
    # s = 6, causal: s_eff = 3; attention = 6·L·s_eff·2·nq·d = 6·2·3·2·2·4 = 576; dense = 6·1232 = 7392
    assert train_flops_per_token(TINY, 6) == 7392 + 576
    # non-causal: s_eff = 6 → attention 1152
    assert train_flops_per_token(TINY, 6, causal=False) == 7392 + 1152
    parts = flops_breakdown(TINY, 6)
    assert (parts.layers, parts.logits, parts.attention) == (6 * 1152, 6 * 80, 576)
    assert parts.total == 7968 and parts.attention_share == pytest.approx(576 / 7968)


def test_qwen25_32b_at_32k_by_hand():
    arch = PRESETS["qwen2.5-32b"]  # L=64, h=5120, nq=40, nkv=8, d=128, f=27648, V=152064
    per_layer = 5120 * 40 * 128 + 2 * 5120 * 8 * 128 + 40 * 128 * 5120 + 3 * 5120 * 27648
    assert per_layer == 487_587_840
    assert matmul_params(arch) == 64 * 487_587_840 + 5120 * 152064 == 31_984_189_440
    parts = flops_breakdown(arch, 32768)
    assert parts.attention == 6 * 64 * 16384 * 2 * 40 * 128 == 64_424_509_440
    assert parts.total == train_flops_per_token(arch, 32768) == 256_329_646_080
    assert parts.attention_share == pytest.approx(0.25133, abs=1e-5)
    # MFU round trip: the tokens/s that give 40% on a 989 TFLOP/s device give mfu = 0.4
    tps = tokens_per_s_at_mfu(arch, 32768, 0.4, 989e12)
    assert tps == pytest.approx(0.4 * 989e12 / 256_329_646_080)
    assert mfu(tps * 8, arch, 32768, 8, 989e12) == pytest.approx(0.4)
    assert mfu(1.0, arch, 32768, 1, None) is None


def test_matches_torch_flop_counter_on_hf_qwen2():
    """FlopCounterMode counts every matmul (eager attention computes the full s×s scores, so the
    non-causal formula applies) of HF's model, forward + backward, independently of our formula."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**TINY.to_hf_config())
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg)
    hf_matmul = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    assert hf_matmul == matmul_params(TINY)
    batch, seq = 3, 6
    tokens = torch.randint(0, TINY.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(tokens, labels=tokens).loss.backward()
    assert counter.get_total_flops() == train_flops_per_token(TINY, seq, causal=False) * batch * seq
