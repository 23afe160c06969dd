"""Distributed-correctness contract of rl.loss: summing micro-batch contributions (over micro-batches and
simulated DP ranks) reproduces the one-call mini-batch loss, its gradient and its metric sums."""

import pytest
import torch

from megatron_lwz.rl.batching import pack_microbatches
from megatron_lwz.rl.config import LossConfig
from megatron_lwz.rl.loss import count_normalisers, policy_loss

B, T = 12, 40


def _minibatch(seed: int):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, 8, (B,), generator=g)
    resp = torch.randint(1, T - 8, (B,), generator=g)
    resp[3] = 0  # a row with no loss tokens (e.g. an empty response): must count in neither normaliser
    cols = torch.arange(T)[None, :]
    mask = ((cols >= prompt[:, None] - 1) & (cols < prompt[:, None] - 1 + resp[:, None])).float()
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    data = {
        "logprobs": old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64),  # ρ spread over both clips
        "old_logprobs": old,
        "ref_logprobs": old + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64),
        "rollout_logprobs": old + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64),
        "entropy": torch.rand(B, T, generator=g, dtype=torch.float64) * 4,
        "loss_mask": mask,
    }
    return data, torch.randn(B, generator=g, dtype=torch.float64), (prompt + resp).tolist()


def _run(data, adv, rows, cfg, n_tok, n_seq):
    idx = torch.as_tensor(rows)
    width = int(torch.nonzero(data["loss_mask"][idx].sum(0)).max()) + 1 if data["loss_mask"][idx].sum() else 1
    part = {k: v[idx, :width] for k, v in data.items()}  # each micro-batch trimmed to its own width
    logp = part.pop("logprobs").clone().requires_grad_(True)
    loss, metrics = policy_loss(logp, part.pop("old_logprobs"), adv[idx], part.pop("loss_mask"), cfg,
                                num_tokens_global=n_tok, num_seqs_global=n_seq, **part)
    loss.backward()
    grad = torch.zeros(B, T, dtype=torch.float64)
    grad[idx, :width] = logp.grad
    return loss.detach(), grad, metrics


CONFIGS = [
    LossConfig(),
    LossConfig(aggregation="seq-mean-token-mean", kl_coef=0.05, entropy_coef=0.01),
    LossConfig(aggregation="seq-mean-token-sum-norm", norm_length=T, dual_clip=3.0, tis=True, clip_eps_high=0.28),
    LossConfig(kl_coef=0.1, kl_estimator="k2", tis=True, tis_cap=1.5, entropy_coef=0.001),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.aggregation)
@pytest.mark.parametrize("seed", [0, 1])
def test_microbatch_contributions_sum_to_minibatch_loss(cfg, seed):
    data, adv, lengths = _minibatch(seed)
    n_tok, n_seq = count_normalisers(data["loss_mask"])
    assert n_seq == B - 1
    full_loss, full_grad, full_metrics = _run(data, adv, list(range(B)), cfg, n_tok, n_seq)

    # 2 DP ranks × equal micro-batch counts, packed by a small token budget so there are several each
    layout = pack_microbatches(lengths, token_budget=80, dp_size=2)
    assert len(layout[0]) == len(layout[1]) >= 2
    total, grad, metric_sums = torch.zeros((), dtype=torch.float64), torch.zeros(B, T, dtype=torch.float64), {}
    for rank in layout:
        # each rank re-derives the global normalisers from its micro-batches (a SUM all-reduce in real runs)
        for mb in rank:
            loss, g, metrics = _run(data, adv, mb, cfg, n_tok, n_seq)
            total, grad = total + loss, grad + g
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + v
    assert abs(total.item() - full_loss.item()) < 1e-6
    torch.testing.assert_close(grad, full_grad, rtol=0, atol=1e-9)
    assert metric_sums.keys() == full_metrics.keys()
    for k in full_metrics:
        assert metric_sums[k].item() == pytest.approx(full_metrics[k].item(), abs=1e-5), k


def test_normalisers_from_micro_batches_add_up():
    data, _, lengths = _minibatch(3)
    parts = [count_normalisers(data["loss_mask"][torch.as_tensor(mb)])
             for rank in pack_microbatches(lengths, 80, 3) for mb in rank]
    assert tuple(map(sum, zip(*parts))) == count_normalisers(data["loss_mask"])


@pytest.mark.parametrize("cfg", CONFIGS[:3], ids=lambda c: c.aggregation)
def test_matches_naive_per_sequence_formula(cfg):
    """One-call loss vs an explicit per-sequence loop of the aggregation formulas in the module docstring."""
    data, adv, _ = _minibatch(5)
    cfg_plain = LossConfig(aggregation=cfg.aggregation, norm_length=cfg.norm_length)
    n_tok, n_seq = count_normalisers(data["loss_mask"])
    loss, _ = policy_loss(data["logprobs"], data["old_logprobs"], adv, data["loss_mask"], cfg_plain,
                          num_tokens_global=n_tok, num_seqs_global=n_seq)
    seq_terms = []
    for i in range(B):
        sel = data["loss_mask"][i] > 0
        if not sel.any():
            continue
        rho = (data["logprobs"][i, sel] - data["old_logprobs"][i, sel]).exp()
        l = -torch.minimum(rho * adv[i], rho.clamp(0.8, 1.2) * adv[i])
        seq_terms.append((l.sum(), int(sel.sum())))
    if cfg.aggregation == "token-mean":
        ref = sum(s for s, _ in seq_terms) / sum(n for _, n in seq_terms)
    elif cfg.aggregation == "seq-mean-token-mean":
        ref = sum(s / n for s, n in seq_terms) / len(seq_terms)
    else:
        ref = sum(s / cfg.norm_length for s, _ in seq_terms) / len(seq_terms)
    assert loss.item() == pytest.approx(float(ref), abs=1e-9)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.aggregation)
def test_context_parallel_shards_with_seq_num_tokens(cfg):
    """Each row split column-wise into two shards (as CP would) still sums to the one-call loss."""
    data, adv, _ = _minibatch(7)
    n_tok, n_seq = count_normalisers(data["loss_mask"])
    full, full_grad, _ = _run(data, adv, list(range(B)), cfg, n_tok, n_seq)
    seq_tokens = data["loss_mask"].sum(-1)
    total = torch.zeros((), dtype=torch.float64)
    grad = torch.zeros(B, T, dtype=torch.float64)
    for cols in (slice(0, T // 2), slice(T // 2, T)):
        shard = {k: v.clone() for k, v in data.items()}
        keep = torch.zeros(T, dtype=torch.bool)
        keep[cols] = True
        shard["loss_mask"] = shard["loss_mask"] * keep
        logp = shard.pop("logprobs").clone().requires_grad_(True)
        loss, _ = policy_loss(logp, shard.pop("old_logprobs"), adv, shard.pop("loss_mask"), cfg,
                              num_tokens_global=n_tok, num_seqs_global=n_seq, seq_num_tokens=seq_tokens, **shard)
        loss.backward()
        total, grad = total + loss.detach(), grad + logp.grad
    assert abs(total.item() - full.item()) < 1e-9
    torch.testing.assert_close(grad, full_grad, rtol=0, atol=1e-12)
