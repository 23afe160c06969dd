"""The one place that knows how Hugging Face Qwen2 tensors map onto megatron-core GPTModel tensors.

Used by HF⇄Megatron conversion (``checkpoint.convert``), by the rollout weight export
(``rollout.export``) and by the parallel-equivalence tests. Pure tensor functions: no process groups.

Layouts (h = hidden, d = head dim, nq/nkv = query/KV heads, r = nq/nkv, f = ffn, V = vocab):

* ``linear_qkv.weight`` (megatron, full): ``[(nq + 2·nkv)·d, h]`` laid out *per query group*:
  for g in 0..nkv-1: ``[q_g (r·d rows); k_g (d rows); v_g (d rows)]``. HF keeps separate
  ``q_proj [nq·d, h]``, ``k_proj [nkv·d, h]``, ``v_proj [nkv·d, h]`` (and biases likewise).
  Because the layout is per group, a contiguous dim-0 TP chunk is exactly TP rank's groups.
* ``linear_fc1.weight``: ``[gate; up]`` = ``[2f, h]``; a TP shard is ``[gate_shard; up_shard]``,
  so TP slicing must split gate and up separately (megatron's ``apply_swiglu_sharded_factory``).
* Vocabulary tensors (embedding, output layer) are padded to ``padded_vocab`` rows with zeros;
  export drops the padding again.
* Norm weights: local spec names ``input_layernorm`` / ``pre_mlp_layernorm``; the TE spec fuses
  them as ``self_attention.linear_qkv.layer_norm_weight`` / ``mlp.linear_fc1.layer_norm_weight``.
  :func:`canonical_name` maps both spellings onto the local one.
* Dist-checkpoint keys (``GPTModel.sharded_state_dict``): decoder layers are stacked on a prepended
  layer axis under one key per tensor (``decoder.layers.mlp.linear_fc2.weight``, global shape
  ``[num_layers, ...]``), and norms always use the TE-fused spelling, whichever spec saved them.
  :func:`checkpoint_key` / :func:`name_from_checkpoint_key` convert.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator

import torch

from megatron_lwz.models.presets import ModelArch

_TE_TO_LOCAL = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
}
_LOCAL_TO_TE = {local: te for te, local in _TE_TO_LOCAL.items()}
_LAYER_RE = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
LAYER_KEY_PREFIX = "decoder.layers."
"""Prefix of the per-layer dist-checkpoint keys (the layer index is the first global axis)."""

# Per-layer megatron (local-spec) name → HF suffix under ``model.layers.{i}.``. QKV/fc1 are special.
_LAYER_SIMPLE = {
    "input_layernorm.weight": "input_layernorm.weight",
    "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
# TP partition dim of each megatron tensor (None = replicated).
_PARTITION_DIM = {
    "self_attention.linear_qkv.weight": 0, "self_attention.linear_qkv.bias": 0,
    "self_attention.linear_proj.weight": 1, "mlp.linear_fc1.weight": 0, "mlp.linear_fc2.weight": 1,
    "input_layernorm.weight": None, "pre_mlp_layernorm.weight": None,
}


NON_LAYER_NAMES = ("embedding.word_embeddings.weight", "decoder.final_layernorm.weight", "output_layer.weight")
"""Megatron parameters outside the decoder layers."""


def canonical_name(name: str) -> str:
    """Strip wrappers (``module.``) and map TE-fused norm names onto the local-spec names."""
    while name.startswith("module."):
        name = name[len("module."):]
    for te, local in _TE_TO_LOCAL.items():
        if name.endswith(te):
            return name[: -len(te)] + local
    return name


def split_layer_name(name: str) -> tuple[int | None, str]:
    """``decoder.layers.3.mlp.linear_fc2.weight`` → (3, 'mlp.linear_fc2.weight'); else (None, name)."""
    match = _LAYER_RE.match(name)
    return (int(match.group(1)), match.group(2)) if match else (None, name)


def partition_dim(name: str) -> int | None:
    """TP partition dim of a (canonical) megatron parameter name, None if replicated."""
    layer, rest = split_layer_name(canonical_name(name))
    if layer is None:
        return 0 if rest in ("embedding.word_embeddings.weight", "output_layer.weight") else None
    return _PARTITION_DIM[rest]


def checkpoint_key(name: str) -> tuple[str, int | None]:
    """Global megatron parameter name → (dist-checkpoint key, index on the layer axis or None).

    ``decoder.layers.3.input_layernorm.weight`` →
    ``("decoder.layers.self_attention.linear_qkv.layer_norm_weight", 3)``.
    """
    layer, rest = split_layer_name(canonical_name(name))
    if layer is None:
        return rest, None
    return LAYER_KEY_PREFIX + _LOCAL_TO_TE.get(rest, rest), layer


def name_from_checkpoint_key(key: str, layer: int | None) -> str:
    """Inverse of :func:`checkpoint_key`: the canonical global name of layer ``layer``'s slice."""
    if key.startswith(LAYER_KEY_PREFIX):
        if layer is None:
            raise ValueError(f"{key!r} is a per-layer key: pass the layer index")
        return canonical_name(f"decoder.layers.{layer}.{key[len(LAYER_KEY_PREFIX):]}")
    return canonical_name(key)


# ----------------------------------------------------------------------------------------------
# TP sharding of full megatron tensors
# ----------------------------------------------------------------------------------------------
_BY_NAME = object()


def tp_shard(name: str, full: torch.Tensor, tp: int, tp_rank: int, *, dim=_BY_NAME) -> torch.Tensor:
    """This TP rank's slice of a full (TP=1) megatron tensor (``dim``: override the name-derived one)."""
    dim = partition_dim(name) if dim is _BY_NAME else dim
    if dim is None or tp == 1:
        return full
    if canonical_name(name).endswith("mlp.linear_fc1.weight"):
        gate, up = full.chunk(2, dim=0)
        return torch.cat([gate.chunk(tp, 0)[tp_rank], up.chunk(tp, 0)[tp_rank]], dim=0)
    return full.chunk(tp, dim=dim)[tp_rank]


def tp_merge(name: str, shards: list[torch.Tensor], *, dim=_BY_NAME) -> torch.Tensor:
    """Inverse of :func:`tp_shard` over all TP ranks' shards (in TP-rank order)."""
    dim = partition_dim(name) if dim is _BY_NAME else dim
    if dim is None or len(shards) == 1:
        return shards[0]
    if canonical_name(name).endswith("mlp.linear_fc1.weight"):
        gates, ups = zip(*(s.chunk(2, dim=0) for s in shards))
        return torch.cat([torch.cat(gates, 0), torch.cat(ups, 0)], dim=0)
    return torch.cat(shards, dim=dim)


# ----------------------------------------------------------------------------------------------
# HF ⇄ megatron, full tensors
# ----------------------------------------------------------------------------------------------
def _qkv_to_megatron(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, arch: ModelArch) -> torch.Tensor:
    g, r, d = arch.num_query_groups, arch.num_attention_heads // arch.num_query_groups, arch.head_dim
    tail = q.shape[1:]
    q = q.reshape(g, r * d, *tail)
    k = k.reshape(g, d, *tail)
    v = v.reshape(g, d, *tail)
    return torch.cat([q, k, v], dim=1).reshape(g * (r + 2) * d, *tail)


def _qkv_from_megatron(qkv: torch.Tensor, arch: ModelArch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g, r, d = arch.num_query_groups, arch.num_attention_heads // arch.num_query_groups, arch.head_dim
    tail = qkv.shape[1:]
    grouped = qkv.reshape(g, (r + 2) * d, *tail)
    q, k, v = grouped.split([r * d, d, d], dim=1)
    return q.reshape(g * r * d, *tail), k.reshape(g * d, *tail), v.reshape(g * d, *tail)


def pad_vocab(t: torch.Tensor, padded_vocab: int) -> torch.Tensor:
    """Append zero rows up to ``padded_vocab`` (embedding / output layer)."""
    if t.shape[0] > padded_vocab:
        raise ValueError(f"vocab tensor has {t.shape[0]} rows, more than the padded size {padded_vocab}")
    if t.shape[0] == padded_vocab:
        return t
    pad = torch.zeros(padded_vocab - t.shape[0], *t.shape[1:], dtype=t.dtype)
    return torch.cat([t, pad], dim=0)


def hf_layer_to_megatron(get: Callable[[str], torch.Tensor], layer: int, arch: ModelArch) -> dict[str, torch.Tensor]:
    """Full megatron tensors of decoder layer ``layer`` (names relative to ``decoder.layers.{layer}.``).

    ``get(hf_name)`` returns one HF tensor (e.g. from a lazily opened safetensors file).
    """
    p = f"model.layers.{layer}."
    attn = p + "self_attn."
    out = {meg: get(p + hf) for meg, hf in _LAYER_SIMPLE.items()}
    out["self_attention.linear_qkv.weight"] = _qkv_to_megatron(
        get(attn + "q_proj.weight"), get(attn + "k_proj.weight"), get(attn + "v_proj.weight"), arch)
    if arch.qkv_bias:
        out["self_attention.linear_qkv.bias"] = _qkv_to_megatron(
            get(attn + "q_proj.bias"), get(attn + "k_proj.bias"), get(attn + "v_proj.bias"), arch)
    out["mlp.linear_fc1.weight"] = torch.cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")], 0)
    return out


def hf_to_megatron(get: Callable[[str], torch.Tensor], arch: ModelArch, padded_vocab: int,
                   layers: Iterable[int] | None = None,
                   non_layer: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (full megatron name, full tensor) for the whole model, layer by layer.

    ``layers`` restricts the decoder layers and ``non_layer`` the other tensors
    (``embedding.word_embeddings.weight``, ``decoder.final_layernorm.weight``,
    ``output_layer.weight``); HF tensors that are not needed are never read. With tied
    embeddings ``output_layer.weight`` is the (padded) input embedding.
    """
    layers = range(arch.num_layers) if layers is None else layers
    wanted = set(NON_LAYER_NAMES if non_layer is None else non_layer)
    if "embedding.word_embeddings.weight" in wanted:
        yield "embedding.word_embeddings.weight", pad_vocab(get("model.embed_tokens.weight"), padded_vocab)
    for i in layers:
        for name, tensor in hf_layer_to_megatron(get, i, arch).items():
            yield f"decoder.layers.{i}.{name}", tensor
    if "decoder.final_layernorm.weight" in wanted:
        yield "decoder.final_layernorm.weight", get("model.norm.weight")
    if "output_layer.weight" in wanted:
        head = get("model.embed_tokens.weight" if arch.tie_word_embeddings else "lm_head.weight")
        yield "output_layer.weight", pad_vocab(head, padded_vocab)


def megatron_to_hf(name: str, full: torch.Tensor, arch: ModelArch) -> list[tuple[str, torch.Tensor]]:
    """HF (name, tensor) pairs of one full megatron tensor; vocab padding removed.

    With tied embeddings ``output_layer.weight`` maps to nothing (HF ties ``lm_head`` itself).
    """
    name = canonical_name(name)
    layer, rest = split_layer_name(name)
    if layer is None:
        if name == "embedding.word_embeddings.weight":
            return [("model.embed_tokens.weight", full[: arch.vocab_size])]
        if name == "output_layer.weight":
            return [] if arch.tie_word_embeddings else [("lm_head.weight", full[: arch.vocab_size])]
        if name == "decoder.final_layernorm.weight":
            return [("model.norm.weight", full)]
        raise KeyError(f"no HF mapping for megatron tensor {name!r}")
    p = f"model.layers.{layer}."
    if rest in _LAYER_SIMPLE:
        return [(p + _LAYER_SIMPLE[rest], full)]
    if rest.startswith("self_attention.linear_qkv."):
        kind = rest.rsplit(".", 1)[1]
        q, k, v = _qkv_from_megatron(full, arch)
        return [(f"{p}self_attn.{n}_proj.{kind}", t) for n, t in (("q", q), ("k", k), ("v", v))]
    if rest == "mlp.linear_fc1.weight":
        gate, up = full.chunk(2, dim=0)
        return [(p + "mlp.gate_proj.weight", gate), (p + "mlp.up_proj.weight", up)]
    raise KeyError(f"no HF mapping for megatron tensor {name!r}")


def hf_names(arch: ModelArch) -> list[str]:
    """Every HF parameter name of the architecture, in HF's module order (tied: no lm_head)."""
    names = ["model.embed_tokens.weight"]
    for i in range(arch.num_layers):
        p = f"model.layers.{i}."
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkv"]
        if arch.qkv_bias:
            names += [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
        names += [p + "self_attn.o_proj.weight", p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight",
                  p + "mlp.down_proj.weight", p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    names.append("model.norm.weight")
    if not arch.tie_word_embeddings:
        names.append("lm_head.weight")
    return names
