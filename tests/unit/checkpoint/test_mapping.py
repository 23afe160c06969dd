"""The HF ⇄ megatron mapping module against references we did not write: Hugging Face's own
Qwen2 parameter names and shapes, Megatron's documented fused-QKV order (``q1 q2 k1 v1 | q3 q4 k2
v2`` in ``transformer/attention.py``) and megatron-core's SwiGLU checkpoint factory
(``apply_swiglu_sharded_factory``), which defines where each TP rank's fc1 rows live globally.
"""

from __future__ import annotations

import pytest
import torch

from megatron_lwz.checkpoint import mapping
from megatron_lwz.models.presets import PRESETS, padded_vocab_size

ARCH = PRESETS["tiny-gqa3"]  # 6 query heads, 2 KV groups (3 per group), head dim 16, vocab 300


def hf_state(tied: bool) -> dict[str, torch.Tensor]:
    """Random tensors with the names and shapes of a real HF Qwen2ForCausalLM of this arch."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=ARCH.vocab_size, hidden_size=ARCH.hidden_size,
                         intermediate_size=ARCH.ffn_hidden_size, num_hidden_layers=2,
                         num_attention_heads=ARCH.num_attention_heads, num_key_value_heads=ARCH.num_query_groups,
                         tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    state = {name: torch.randn_like(p) for name, p in model.named_parameters()}  # tied: no lm_head here
    return state


def arch2(tied: bool):
    import dataclasses

    return dataclasses.replace(ARCH, num_layers=2, tie_word_embeddings=tied)


@pytest.mark.parametrize("tied", [False, True])
def test_hf_names_match_transformers(tied):
    assert sorted(mapping.hf_names(arch2(tied))) == sorted(hf_state(tied))


@pytest.mark.parametrize("tied", [False, True])
def test_round_trip_hf_megatron_hf_is_exact(tied):
    arch, hf = arch2(tied), hf_state(tied)
    padded = padded_vocab_size(arch.vocab_size, 128, 2)
    megatron = dict(mapping.hf_to_megatron(hf.__getitem__, arch, padded))
    assert megatron["embedding.word_embeddings.weight"].shape == (512, arch.hidden_size)
    assert torch.count_nonzero(megatron["output_layer.weight"][arch.vocab_size:]) == 0  # zero padding
    if tied:
        assert torch.equal(megatron["output_layer.weight"], megatron["embedding.word_embeddings.weight"])
    back = {}
    for name, tensor in megatron.items():
        for hf_name, t in mapping.megatron_to_hf(name, tensor, arch):
            assert hf_name not in back
            back[hf_name] = t
    assert set(back) == set(hf)
    for name, tensor in hf.items():
        assert torch.equal(back[name], tensor), name


def test_fused_qkv_is_grouped_like_megatron_documents():
    """Rows of q/k/v are labelled by (kind, head, row); the fused tensor must read, per KV group g,
    the g-th block of query heads (HF head order), then k head g, then v head g."""
    arch, d = ARCH, ARCH.head_dim
    label = lambda kind, n_heads: torch.tensor(  # noqa: E731  (B, 1) labels: kind*10000 + head*100 + row
        [[kind * 10000 + h * 100 + r] for h in range(n_heads) for r in range(d)], dtype=torch.float32)
    q, k, v = label(1, arch.num_attention_heads), label(2, arch.num_query_groups), label(3, arch.num_query_groups)
    hf = {"model.layers.0.self_attn.q_proj.weight": q, "model.layers.0.self_attn.k_proj.weight": k,
          "model.layers.0.self_attn.v_proj.weight": v}
    hf.update({f"model.layers.0.self_attn.{x}_proj.bias": t[:, 0] for x, t in zip("qkv", (q, k, v))})
    others = {"input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.o_proj.weight",
              "mlp.down_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight"}
    hf.update({f"model.layers.0.{o}": torch.zeros(1) for o in others})
    fused = mapping.hf_layer_to_megatron(hf.__getitem__, 0, arch)
    expected = []
    per_group = arch.num_attention_heads // arch.num_query_groups  # 3
    for g in range(arch.num_query_groups):
        expected += [1 * 10000 + h * 100 + r for h in range(g * per_group, (g + 1) * per_group) for r in range(d)]
        expected += [2 * 10000 + g * 100 + r for r in range(d)]
        expected += [3 * 10000 + g * 100 + r for r in range(d)]
    assert fused["self_attention.linear_qkv.weight"][:, 0].tolist() == expected
    assert fused["self_attention.linear_qkv.bias"].tolist() == expected


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_fc1_tp_shards_land_where_megatron_checkpoints_put_them(tp):
    from megatron.core.dist_checkpointing import ShardedTensor
    from megatron.core.transformer.mlp import apply_swiglu_sharded_factory

    f, h = 8 * tp, 3
    full = torch.arange(2 * f * h, dtype=torch.float32).reshape(2 * f, h)  # [gate; up]
    name = "decoder.layers.0.mlp.linear_fc1.weight"
    shards = [mapping.tp_shard(name, full, tp, r) for r in range(tp)]
    assert torch.equal(mapping.tp_merge(name, shards), full)
    rebuilt = torch.full_like(full, -1.0)
    for rank, shard in enumerate(shards):
        sh = ShardedTensor.from_rank_offsets("fc1", shard, (0, rank, tp), replica_id=0)
        for piece in apply_swiglu_sharded_factory(sh, ()).build():
            rows = slice(piece.global_offset[0], piece.global_offset[0] + piece.local_shape[0])
            rebuilt[rows] = piece.data
    assert torch.equal(rebuilt, full), "our TP shard of fc1 must be megatron's [gate_r; up_r]"


@pytest.mark.parametrize("name,dim", [
    ("decoder.layers.1.self_attention.linear_qkv.weight", 0), ("decoder.layers.1.self_attention.linear_qkv.bias", 0),
    ("decoder.layers.1.self_attention.linear_proj.weight", 1), ("decoder.layers.1.mlp.linear_fc2.weight", 1),
    ("embedding.word_embeddings.weight", 0), ("output_layer.weight", 0),
    ("decoder.layers.1.input_layernorm.weight", None), ("decoder.final_layernorm.weight", None),
])
def test_tp_shard_merge_round_trip(name, dim):
    full = torch.randn(8, 12) if not name.endswith(("bias", "layernorm.weight")) else torch.randn(8)
    assert mapping.partition_dim(name) == dim
    shards = [mapping.tp_shard(name, full, 4, r) for r in range(4)]
    if dim is not None:
        assert shards[1].shape[dim] == full.shape[dim] // 4
    assert torch.equal(mapping.tp_merge(name, shards), full)


def test_checkpoint_keys_use_stacked_layers_and_te_norm_names():
    cases = {
        "decoder.layers.3.input_layernorm.weight": ("decoder.layers.self_attention.linear_qkv.layer_norm_weight", 3),
        "decoder.layers.0.pre_mlp_layernorm.weight": ("decoder.layers.mlp.linear_fc1.layer_norm_weight", 0),
        "module.decoder.layers.2.mlp.linear_fc1.weight": ("decoder.layers.mlp.linear_fc1.weight", 2),
        "embedding.word_embeddings.weight": ("embedding.word_embeddings.weight", None),
    }
    for name, expected in cases.items():
        assert mapping.checkpoint_key(name) == expected
        assert mapping.name_from_checkpoint_key(*expected) == mapping.canonical_name(name)
    with pytest.raises(ValueError, match="layer index"):
        mapping.name_from_checkpoint_key("decoder.layers.mlp.linear_fc2.weight", None)


def test_hf_to_megatron_reads_only_what_is_asked():
    hf = hf_state(tied=False)
    read = []

    def get(name):
        read.append(name)
        return hf[name]

    out = dict(mapping.hf_to_megatron(get, arch2(False), 384, layers=[1], non_layer=["decoder.final_layernorm.weight"]))
    assert "decoder.final_layernorm.weight" in out and "embedding.word_embeddings.weight" not in out
    assert all(n.startswith("model.layers.1.") or n == "model.norm.weight" for n in read)
    with pytest.raises(ValueError, match="more than the padded size"):
        mapping.pad_vocab(torch.zeros(400, 2), 384)
