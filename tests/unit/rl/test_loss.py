"""Hand-computed checks of the GRPO loss (paper Eq. 1–2, ε = 0.2): clip branches, aggregation modes, KL, TIS."""

import math

import pytest
import torch

from megatron_lwz.rl.config import LossConfig
from megatron_lwz.rl.loss import (count_normalisers, entropy_from_logits, kl_estimate, logprobs_from_logits,
                                  policy_loss, summarize_metrics)


def _one_token(log_ratio: float, adv: float, cfg: LossConfig):
    """Loss and d loss / d logp for a single token with logp − old = log_ratio."""
    logp = torch.tensor([[log_ratio]], dtype=torch.float64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=torch.float64)
    loss, metrics = policy_loss(logp, old, torch.tensor([adv]), torch.ones(1, 1), cfg,
                                num_tokens_global=1, num_seqs_global=1)
    loss.backward()
    return loss.item(), logp.grad.item(), metrics


@pytest.mark.parametrize("ratio, adv, loss, grad, clip_key", [
    (1.5, 2.0, -2.4, 0.0, "clipped_high_count"),    # −min(1.5·2, 1.2·2): clipped above, no gradient
    (0.5, -1.0, 0.8, 0.0, "clipped_low_count"),     # −min(0.5·(−1), 0.8·(−1)) = 0.8: clipped below
    (1.1, 2.0, -2.2, -2.2, None),                   # inside [0.8, 1.2]: −ρA, gradient −A·ρ
    (0.5, 2.0, -1.0, -1.0, None),                   # A > 0 and ρ < 1−ε: min picks ρA (pessimistic), unclipped
    (1.5, -1.0, 1.5, 1.5, None),                    # A < 0 and ρ > 1+ε: min picks ρA, unclipped
])
def test_clip_branches_by_hand(ratio, adv, loss, grad, clip_key):
    value, g, metrics = _one_token(math.log(ratio), adv, LossConfig())
    assert value == pytest.approx(loss, abs=1e-9)
    assert g == pytest.approx(grad, abs=1e-9)
    for key in ("clipped_high_count", "clipped_low_count"):
        assert metrics[key].item() == (1.0 if key == clip_key else 0.0)


def test_asymmetric_clip_and_dual_clip_by_hand():
    value, g, _ = _one_token(math.log(1.5), 2.0, LossConfig(clip_eps_high=0.28))
    assert value == pytest.approx(-2.56) and g == 0.0  # −min(3, 1.28·2)
    value, g, _ = _one_token(math.log(1.25), 2.0, LossConfig(clip_eps_high=0.28))
    assert value == pytest.approx(-2.5) and g == pytest.approx(-2.5)  # 1.25 < 1.28: unclipped
    # A = −1, ρ = 4: plain clip gives −min(−4, −1.2) = 4; dual-clip c = 3 caps it at −c·A = 3, no gradient
    value, g, metrics = _one_token(math.log(4.0), -1.0, LossConfig(dual_clip=3.0))
    assert value == pytest.approx(3.0) and g == 0.0 and metrics["dual_clipped_count"].item() == 1.0
    value, g, _ = _one_token(math.log(4.0), -1.0, LossConfig())
    assert value == pytest.approx(4.0) and g == pytest.approx(4.0)
    value, g, _ = _one_token(math.log(2.0), -1.0, LossConfig(dual_clip=3.0))  # ρ < c: dual clip inactive
    assert value == pytest.approx(2.0) and g == pytest.approx(2.0)


def _two_sequences():
    """Seq 0: 1 loss token, A = 1, ρ = 1 → l = [−1]. Seq 1: 3 loss tokens, A = −0.5, ρ = [1, 1.1, 1] →
    l = [0.5, max(0.55, 0.5) = 0.55, 0.5]. Padding holds garbage (inf/nan) that must not leak."""
    inf, nan = float("inf"), float("nan")
    logp = torch.tensor([[inf, -1.0, nan, nan, nan],
                         [nan, -2.0, -3.0 + math.log(1.1), -1.5, inf]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[0.0, -1.0, 0.0, 0.0, 0.0],
                        [0.0, -2.0, -3.0, -1.5, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[0, 1, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.float32)
    return logp, old, torch.tensor([1.0, -0.5]), mask


@pytest.mark.parametrize("aggregation, norm_length, expected", [
    ("token-mean", None, (-1 + 1.55) / 4),                        # all 4 tokens equal: 0.1375
    ("seq-mean-token-mean", None, (-1 / 1 + 1.55 / 3) / 2),        # −0.241666…
    ("seq-mean-token-sum-norm", 4, (-1 + 1.55) / (4 * 2)),         # 0.06875
    ("seq-mean-token-sum-norm", 10, (-1 + 1.55) / (10 * 2)),       # 0.0275
])
def test_aggregation_modes_by_hand(aggregation, norm_length, expected):
    logp, old, adv, mask = _two_sequences()
    cfg = LossConfig(aggregation=aggregation, norm_length=norm_length)
    n_tok, n_seq = count_normalisers(mask)
    assert (n_tok, n_seq) == (4, 2)
    loss, metrics = policy_loss(logp, old, adv, mask, cfg, num_tokens_global=n_tok, num_seqs_global=n_seq)
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[mask == 0] == 0).all()
    assert metrics["pg_loss_sum"].item() == pytest.approx(0.55, abs=1e-6)
    assert metrics["loss_tokens_count"].item() == 4 and metrics["loss_seqs_count"].item() == 2


def test_gradient_is_minus_adv_ratio_over_n_on_unclipped_tokens():
    ratios = torch.tensor([[1.1, 1.5, 0.9, 0.5], [1.1, 1.5, 0.9, 0.5]], dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0])
    # clipped: row 0 (A > 0) at ρ = 1.5; row 1 (A < 0) at ρ = 0.5; everything else unclipped
    clipped = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    old = torch.randn(2, 4, dtype=torch.float64)
    logp = (old + ratios.log()).requires_grad_(True)
    loss, m = policy_loss(logp, old, adv, torch.ones(2, 4), LossConfig(), num_tokens_global=8, num_seqs_global=2)
    loss.backward()
    expected = torch.where(clipped, 0.0, -adv.double()[:, None] * ratios / 8)
    torch.testing.assert_close(logp.grad, expected, rtol=0, atol=1e-12)
    assert m["clipped_high_count"].item() == 1 and m["clipped_low_count"].item() == 1


def test_on_policy_with_kl_is_minus_mean_advantage():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.5, -0.6])
    cfg = LossConfig(kl_coef=0.1)
    loss, m = policy_loss(logp, logp.detach().clone(), adv, mask, cfg, num_tokens_global=3, num_seqs_global=2,
                          ref_logprobs=logp.detach().clone())
    assert m["kl_ref_sum"].item() == 0.0
    assert loss.item() == pytest.approx(-(2 * 1.5 + 1 * -0.6) / 3)  # token-weighted −mean(A) = −0.8


def test_k3_kl_value_and_gradient_by_hand():
    # logp − ref = log 2: k3 = exp(−log 2) + log 2 − 1 = log 2 − 0.5; d/dlogp = 1 − exp(ref − logp) = 0.5
    logp = torch.tensor([[math.log(0.5)]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[math.log(0.25)]], dtype=torch.float64)
    loss, m = policy_loss(logp, logp.detach(), torch.zeros(1), torch.ones(1, 1), LossConfig(kl_coef=1.0),
                          num_tokens_global=1, num_seqs_global=1, ref_logprobs=ref)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2) - 0.5) and m["kl_ref_sum"].item() == pytest.approx(0.19314718)
    assert logp.grad.item() == pytest.approx(0.5)
    one = torch.tensor([[math.log(2)]])
    assert kl_estimate(one, torch.zeros(1, 1), "k1").item() == pytest.approx(math.log(2))
    assert kl_estimate(one, torch.zeros(1, 1), "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)


def test_kl_requires_reference():
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), LossConfig(kl_coef=0.1),
                    num_tokens_global=1, num_seqs_global=1)


def test_tis_weights_capped_at_c():
    # on-policy ratio 1, A = 1 → pg = −1 per token; old − rollout = log 3 → w = min(3, 2) = 2, log 1.5 → 1.5
    logp = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    rollout = torch.tensor([[-math.log(3.0), -math.log(1.5)]], dtype=torch.float64)
    cfg = LossConfig(tis=True, tis_cap=2.0)
    loss, m = policy_loss(logp, logp.detach(), torch.ones(1), torch.ones(1, 2), cfg, num_tokens_global=2,
                          num_seqs_global=1, rollout_logprobs=rollout)
    loss.backward()
    assert loss.item() == pytest.approx((-2.0 - 1.5) / 2)
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -0.75]], dtype=torch.float64))  # −A·ρ·w/N
    assert m["tis_capped_count"].item() == 1 and m["tis_weight_sum"].item() == pytest.approx(3.5)
    assert m["rollout_abs_logprob_diff_sum"].item() == pytest.approx(math.log(3.0) + math.log(1.5))
    with pytest.raises(ValueError, match="rollout_logprobs"):
        policy_loss(logp, logp.detach(), torch.ones(1), torch.ones(1, 2), cfg, num_tokens_global=2, num_seqs_global=1)


def test_entropy_bonus():
    ent = torch.full((1, 2), 2.0, requires_grad=True)
    loss, m = policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2),
                          LossConfig(entropy_coef=0.01), num_tokens_global=2, num_seqs_global=1, entropy=ent)
    loss.backward()
    assert loss.item() == pytest.approx(-0.02) and m["entropy_sum"].item() == pytest.approx(4.0)
    torch.testing.assert_close(ent.grad, torch.full((1, 2), -0.005))


def test_logits_helpers_by_hand():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # p = [0.25, 0.75]
    assert logprobs_from_logits(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.75))
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_from_logits(logits).item() == pytest.approx(h)


def test_summarize_metrics_and_shape_errors():
    out = summarize_metrics({"loss_tokens_count": 4.0, "loss_seqs_count": 2.0, "ratio_sum": 4.4,
                             "ratio_sq_sum": 4.88, "clipped_high_count": 1.0, "pg_loss_sum": 2.0})
    assert out["ratio_mean"] == pytest.approx(1.1) and out["ratio_std"] == pytest.approx(math.sqrt(1.22 - 1.21))
    assert out["clipped_high_frac"] == 0.25 and out["pg_loss_mean"] == 0.5 and out["loss_seqs"] == 2.0
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3), LossConfig(),
                    num_tokens_global=6, num_seqs_global=2)
    with pytest.raises(ValueError, match="num_tokens_global"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1), LossConfig(),
                    num_tokens_global=0, num_seqs_global=1)
