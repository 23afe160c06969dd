"""Per-token log-probs and entropy from vocab-parallel logits, without gathering the vocabulary.

With TP, each rank holds logits for V/TP vocabulary entries. For 14K-token GRPO sequences a full
``[s, b, V]`` gather would cost s·b·V floats per rank (14K × 152K × 4 B ≈ 8.5 GB per sequence), so
the softmax normaliser is computed with two small all-reduces over the TP group instead
(max, then sum of exp), which is what megatron's ``vocab_parallel_cross_entropy`` does:
``log p(y) = −CE(logits, y)``. Both functions are differentiable.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, tp_group=None) -> torch.Tensor:
    """log π(targets) from vocab-parallel logits.

    logits: (..., V/TP) of this TP rank (fp32 recommended); targets: (...) global token ids.
    Returns (...) float32 log-probs, identical on every TP rank.
    """
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    return -vocab_parallel_cross_entropy(logits.float(), targets, 0.0, tp_group)


def token_entropy(logits: torch.Tensor, tp_group=None) -> torch.Tensor:
    """Entropy H(π(·|context)) per position from vocab-parallel logits: (..., V/TP) → (...).

    H = logsumexp(z) − Σ softmax(z)·z, each sum all-reduced over TP (forward all-reduce,
    identity backward — correct because every TP rank then holds the same scalar loss).
    """
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    z = logits.float()
    zmax = z.max(dim=-1, keepdim=True).values.detach()
    if tp_group is not None and torch.distributed.get_world_size(tp_group) > 1:
        torch.distributed.all_reduce(zmax, op=torch.distributed.ReduceOp.MAX, group=tp_group)
        reduce = lambda t: reduce_from_tensor_model_parallel_region(t, group=tp_group)  # noqa: E731
    else:
        reduce = lambda t: t  # noqa: E731
    exp = torch.exp(z - zmax)
    sum_exp = reduce(exp.sum(dim=-1, keepdim=True))
    sum_exp_z = reduce((exp * z).sum(dim=-1, keepdim=True))
    logsumexp = torch.log(sum_exp) + zmax
    return (logsumexp - sum_exp_z / sum_exp).squeeze(-1)
