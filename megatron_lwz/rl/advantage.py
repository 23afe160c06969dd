"""Group-normalised GRPO advantages with LongWriter-Zero's advantage balancing (paper Eq. 5).

Eq. 5 ("instead of averaging the unnormalized rewards, the average is computed over the individual
advantages", paper.md §4)::

    A_k[i]  = (r_k[i] − mean_G(r_k)) / (std_G(r_k) + eps)        per component k, within one group
    A[i]    = Σ_k w_k · A_k[i],   Σ_k w_k = 1                     (paper: w_k = 1/3 for length/writing/format)

``mode='reward_mean'`` keeps the paper's ablation: r[i] = Σ_k w_k r_k[i], then one normalisation.

Choices the paper leaves open, fixed here:

* std estimator: **sample std (Bessel, divide by G − 1)** by default, matching TRL and verl GRPO, so
  advantages are comparable with those implementations; ``unbiased=False`` gives the population std.
* eps = 1e-6, added to the std (not under a square root).
* A zero-variance group (all valid rewards of a component equal, incl. a group with < 2 valid samples)
  contributes exactly 0 for that component, not (r − mean)/eps round-off noise.
* ``mask`` (optional, bool (N, G)): False entries (e.g. DAPO-filtered overlong samples, padding of
  uneven groups) are excluded from mean/std and get advantage 0.

Beyond the paper, constraint gating (``reward.gate``, RLMR's hard-constraint gate): after Eq. 5, a
sample that violates a gate gets ``min(0, min_j A[j])`` over its group's valid samples (the group's
lowest advantage; a non-constant group always has one < 0 since the A_k are centred), or a configured
value ≤ 0 — so a violating sample's advantage is never positive (``gate_advantages``).

The advantage is one scalar per sample (sequence level, like the paper's objective); the loss
broadcasts it over the sample's tokens. Pure torch, no megatron, no torch.distributed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Mapping, Sequence

import torch

if TYPE_CHECKING:
    from megatron_lwz.rewards.composite import RewardConfig
    from megatron_lwz.rollout.types import RolloutGroup

AdvantageMode = Literal["advantage_mean", "reward_mean"]


def group_normalize(rewards: torch.Tensor, eps: float = 1e-6, mask: torch.Tensor | None = None,
                    unbiased: bool = True) -> torch.Tensor:
    """(r − group mean) / (group std + eps) along the last dim; 0 for constant groups and masked entries.

    rewards: (N, G); mask: (N, G) bool or None. Returns (N, G) in the rewards' float dtype (computed
    in float64).
    """
    adv = _group_normalize64(rewards, eps, mask, unbiased)
    return adv.to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def _group_normalize64(rewards: torch.Tensor, eps: float, mask: torch.Tensor | None,
                       unbiased: bool) -> torch.Tensor:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (num_groups, G), got shape {tuple(rewards.shape)}")
    r = rewards.to(torch.float64)  # (N, G): float64 so the hand-checkable values match to 1e-12
    valid = torch.ones_like(r, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    if valid.shape != r.shape:
        raise ValueError(f"mask shape {tuple(valid.shape)} != rewards shape {tuple(r.shape)}")
    count = valid.sum(dim=-1, keepdim=True)  # (N, 1)
    r_valid = torch.where(valid, r, torch.zeros_like(r))
    mean = r_valid.sum(dim=-1, keepdim=True) / count.clamp_min(1)  # (N, 1)
    centered = torch.where(valid, r - mean, torch.zeros_like(r))  # (N, G)
    dof = (count - 1) if unbiased else count
    std = torch.sqrt((centered**2).sum(dim=-1, keepdim=True) / dof.clamp_min(1))  # (N, 1)
    big = torch.finfo(torch.float64).max
    r_max = torch.where(valid, r, torch.full_like(r, -big)).amax(dim=-1, keepdim=True)
    r_min = torch.where(valid, r, torch.full_like(r, big)).amin(dim=-1, keepdim=True)
    constant = (r_max <= r_min) | (count < 2)  # (N, 1) exact test: no round-off noise / eps blow-up
    return torch.where(constant | ~valid, torch.zeros_like(r), centered / (std + eps))  # (N, G) float64


def _normalised_weights(names: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    if not weights:
        return {name: 1.0 / len(names) for name in names}
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"weights for unknown rewards {sorted(unknown)}; rewards are {list(names)}")
    raw = {name: float(weights.get(name, 1.0)) for name in names}  # unlisted rewards weigh 1
    if any(w < 0 for w in raw.values()) or sum(raw.values()) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {raw}")
    total = sum(raw.values())
    return {name: w / total for name, w in raw.items()}


def balanced_advantages(rewards: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None,
                        eps: float = 1e-6, mode: AdvantageMode = "advantage_mean",
                        mask: torch.Tensor | None = None, unbiased: bool = True) -> torch.Tensor:
    """Eq. 5: weighted mean of per-reward group-normalised advantages (or the 'reward_mean' ablation).

    rewards: name → (num_groups, G) tensor; weights (unlisted names weigh 1) are normalised to sum 1
    (None = equal, the paper's 1/3 each).
    Returns (num_groups, G).
    """
    if not rewards:
        raise ValueError("balanced_advantages needs at least one reward")
    names = list(rewards)
    shapes = {tuple(t.shape) for t in rewards.values()}
    if len(shapes) != 1:
        raise ValueError(f"all rewards must have the same (num_groups, G) shape, got {sorted(shapes)}")
    w = _normalised_weights(names, weights)
    if mode == "advantage_mean":
        parts = [w[n] * _group_normalize64(rewards[n], eps, mask, unbiased) for n in names]
        out = torch.stack(parts).sum(dim=0)  # (N, G)
    elif mode == "reward_mean":
        combined = torch.stack([w[n] * rewards[n].to(torch.float64) for n in names]).sum(dim=0)  # (N, G)
        out = _group_normalize64(combined, eps, mask, unbiased)
    else:
        raise ValueError(f"mode must be 'advantage_mean' or 'reward_mean', got {mode!r}")
    dtype = next(iter(rewards.values())).dtype
    return out.to(dtype if dtype.is_floating_point else torch.float32)


def gate_advantages(adv: torch.Tensor, violated: torch.Tensor, mask: torch.Tensor | None = None,
                    value: float | None = None) -> torch.Tensor:
    """Constraint-gated advantages on top of Eq. 5 (RLMR): violating samples get the group's lowest
    advantage ``min(0, min_j A[j])`` over valid j, or ``value`` (≤ 0) when given; masked entries keep theirs.

    adv: (N, G) Eq. 5 advantages; violated: (N, G) bool. Returns (N, G) in adv's dtype.
    """
    if violated.shape != adv.shape:
        raise ValueError(f"violated shape {tuple(violated.shape)} != advantages shape {tuple(adv.shape)}")
    if value is not None and value > 0:
        raise ValueError(f"a gated advantage must be <= 0, got {value}")
    valid = torch.ones_like(violated, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    big = torch.finfo(adv.dtype).max
    lowest = torch.where(valid, adv, torch.full_like(adv, big)).amin(dim=-1, keepdim=True).clamp_max(0.0)  # (N, 1)
    target = lowest if value is None else torch.full_like(lowest, float(value))
    return torch.where(violated.to(torch.bool) & valid, target.expand_as(adv), adv)


def gate_rewards(rewards: torch.Tensor, violated: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reward-level gate (``reward.gate.mode='reward'``): violators take their group's minimum of this
    component over valid samples, before Eq. 5 (so A_k ≤ 0 for them and the A_k stay centred). (N, G)."""
    valid = torch.ones_like(violated, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    r = rewards.to(torch.float64)
    lowest = torch.where(valid, r, torch.full_like(r, torch.finfo(torch.float64).max)).amin(dim=-1, keepdim=True)
    return torch.where(violated.to(torch.bool) & valid, lowest.expand_as(r), r)


def advantages_for_groups(groups: Sequence[RolloutGroup], cfg: RewardConfig) -> torch.Tensor:
    """Per-sample float32 advantages of scored rollout groups under a RewardConfig.  # (num_groups, G_max)

    Uneven groups are padded (padding gets 0); with ``cfg.overlong.policy == 'filter'`` truncated
    samples are masked out; with ``cfg.gate`` thresholds, violating samples are gated after Eq. 5
    (``gate_advantages``). Row i, column j is ``groups[i].samples[j]``.
    """
    from megatron_lwz.rewards.gate import violated_gates

    if not groups:
        return torch.zeros(0, 0)
    width = max(len(g.samples) for g in groups)
    mask = torch.zeros(len(groups), width, dtype=torch.bool)  # (N, G)
    violated = torch.zeros(len(groups), width, dtype=torch.bool)  # (N, G)
    tensors = {name: torch.zeros(len(groups), width, dtype=torch.float64) for name in cfg.components}
    drop_truncated = cfg.overlong.policy == "filter"
    for i, group in enumerate(groups):
        for j, sample in enumerate(group.samples):
            missing = [n for n in cfg.components if n not in sample.rewards]
            if missing:
                raise ValueError(f"sample {j} of prompt {group.prompt.prompt_id} has no reward {missing}; "
                                 "run RewardScorer.score first")
            mask[i, j] = not (drop_truncated and sample.truncated)
            violated[i, j] = bool(violated_gates(sample, cfg.gate))
            for name in cfg.components:
                tensors[name][i, j] = sample.rewards[name]
    if cfg.gate.enabled and cfg.gate.mode == "reward":
        tensors = {name: gate_rewards(t, violated, mask) for name, t in tensors.items()}
    adv = balanced_advantages(tensors, cfg.weight_vector(), cfg.advantage_eps, cfg.combine, mask, cfg.unbiased_std)
    if cfg.gate.enabled and cfg.gate.mode == "advantage":
        adv = gate_advantages(adv, violated, mask, cfg.gate.advantage)
    return adv.float()  # (N, G_max) float32, the dtype the policy loss consumes
