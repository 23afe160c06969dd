"""Per-token log-probs and entropy from vocab-parallel logits, without gathering the vocabulary.

With TP, each rank holds logits for V/TP vocabulary entries. For 14K-token GRPO sequences a full
``[s, b, V]`` gather would cost s·b·V floats per rank (14K × 152K × 4 B ≈ 8.5 GB per sequence), so
the softmax normaliser is computed with two small all-reduces over the TP group instead
(max, then sum of exp), which is what megatron's ``vocab_parallel_cross_entropy`` does:
``log p(y) = −CE(logits, y)``. Both functions are differentiable.
"""

from __future__ import annotations

import torch


def mask_padded_vocab(logits: torch.Tensor, vocab_size: int | None, tp_rank: int) -> torch.Tensor:
    """Set the logits of Megatron's vocabulary padding (ids ≥ ``vocab_size``) to −inf.

    The embedding is padded to a multiple of 128×TP; those rows are not tokens. Left in, each adds
    exp(logit) to the softmax normaliser, so trainer log-probs would disagree with the rollout
    engine's (which has the true vocabulary) — by log(1 + #pad/Z), e.g. 84 extra ones at init.
    """
    local = logits.shape[-1]
    start = tp_rank * local
    if vocab_size is None or start + local <= vocab_size:
        return logits
    pad = torch.arange(start, start + local, device=logits.device) >= vocab_size  # (V/TP,)
    return logits.masked_fill(pad, torch.finfo(logits.dtype).min)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, tp_group=None, *, vocab_size: int | None = None,
                   tp_rank: int = 0) -> torch.Tensor:
    """log π(targets) from vocab-parallel logits (padding ids excluded when ``vocab_size`` is given).

    logits: (..., V/TP) of this TP rank (fp32 recommended); targets: (...) global token ids.
    Returns (...) float32 log-probs, identical on every TP rank.
    NOTE: megatron's kernel overwrites fp32 ``logits`` in place (exp of shifted logits, to save a
    [s, b, V/TP] buffer): compute anything else from the logits (entropy) before calling this.
    """
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    logits = mask_padded_vocab(logits.float(), vocab_size, tp_rank)
    return -vocab_parallel_cross_entropy(logits, targets, 0.0, tp_group)


def token_entropy(logits: torch.Tensor, tp_group=None, *, vocab_size: int | None = None,
                  tp_rank: int = 0) -> torch.Tensor:
    """Entropy H(π(·|context)) per position from vocab-parallel logits: (..., V/TP) → (...).

    H = logsumexp(z) − Σ softmax(z)·z, each sum all-reduced over TP (forward all-reduce,
    identity backward — correct because every TP rank then holds the same scalar loss).
    """
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    z = mask_padded_vocab(logits.float(), vocab_size, tp_rank)
    zmax = z.max(dim=-1, keepdim=True).values.detach()
    if tp_group is not None and torch.distributed.get_world_size(tp_group) > 1:
        torch.distributed.all_reduce(zmax, op=torch.distributed.ReduceOp.MAX, group=tp_group)
        reduce = lambda t: reduce_from_tensor_model_parallel_region(t, group=tp_group)  # noqa: E731
    else:
        reduce = lambda t: t  # noqa: E731
    exp = torch.exp(z - zmax)  # padded ids: exp(min − max) = 0
    sum_exp = reduce(exp.sum(dim=-1, keepdim=True))
    sum_exp_z = reduce((exp * z).sum(dim=-1, keepdim=True))
    logsumexp = torch.log(sum_exp) + zmax
    return (logsumexp - sum_exp_z / sum_exp).squeeze(-1)
