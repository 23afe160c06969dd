"""Worker (1 rank): read an hf-to-mcore checkpoint with plain megatron-core — no megatron_lwz code
except the CPU compatibility layer (CUDA → CPU shims; unnecessary on a GPU box).

Builds ``GPTModel`` + ``TransformerConfig`` (local spec) by hand for the tiny-gqa3 architecture,
takes the padded vocab from the checkpoint's own tensor metadata, loads it with
``dist_checkpointing.load`` and writes the logits of the probe tokens.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from megatron.core import dist_checkpointing, parallel_state, tensor_parallel
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer import TransformerConfig

from megatron_lwz.parallel import cpu_compat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True, help="the checkpoint directory itself (…/release)")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cpu_compat.install()
    torch.distributed.init_process_group("gloo")
    parallel_state.initialize_model_parallel(1, 1)
    tensor_parallel.model_parallel_cuda_manual_seed(0)
    vocab = dist_checkpointing.load_tensors_metadata(args.ckpt)["embedding.word_embeddings.weight"].global_shape[0]
    config = TransformerConfig(
        num_layers=4, hidden_size=96, ffn_hidden_size=160, num_attention_heads=6, num_query_groups=2,
        kv_channels=16, normalization="RMSNorm", layernorm_epsilon=1e-6, gated_linear_unit=True,
        activation_func=F.silu, add_bias_linear=False, add_qkv_bias=True, hidden_dropout=0.0,
        attention_dropout=0.0, bias_activation_fusion=False, masked_softmax_fusion=False,
        bias_dropout_fusion=False, apply_rope_fusion=False, persist_layer_norm=False,
        gradient_accumulation_fusion=False, use_cpu_initialization=True, params_dtype=torch.float32,
    )
    model = GPTModel(config=config, transformer_layer_spec=get_gpt_layer_local_spec(normalization="RMSNorm"),
                     vocab_size=vocab, max_sequence_length=256, pre_process=True, post_process=True,
                     parallel_output=False, share_embeddings_and_output_weights=False,
                     position_embedding_type="rope", rotary_base=10000)
    loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, args.ckpt)
    model.load_state_dict(loaded["model"])
    model.eval()
    tokens = torch.load(args.tokens)
    with torch.no_grad():
        logits = model(tokens, torch.arange(tokens.shape[1]).expand_as(tokens), None)  # (B, T, padded V)
    with open(args.out, "w") as fh:
        json.dump({"logits": logits.tolist(), "padded_vocab": vocab}, fh)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
