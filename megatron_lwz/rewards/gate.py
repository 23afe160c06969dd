"""Constraint gates on the composite reward (``reward.gate``), beyond the paper.

RLMR-style constraint gating ("hard requirements first"): a sample that violates a hard requirement
must never be reinforced, whatever its prose. Named components act as gates: a sample whose value of
gate component k is below ``thresholds[k]`` *violates* it (e.g. ``length < 1.0`` = answer out of its
requested range, ``format < 0.5`` = broken structure or keyword stuffing). A violating sample's
advantage is replaced, after Eq. 5's per-component normalisation and averaging, by the lowest
advantage of its group (or by ``advantage``, a configured value ≤ 0); see
``megatron_lwz.rl.advantage.gate_advantages``. That breaks the zero sum of a group's advantages (many
violators → a net-negative update; docs/ablations.md measured it); ``mode='reward'`` instead gives a
violator its group's minimum of every component *before* Eq. 5 (``gate_rewards``): still never a
positive advantage (each A_k is then ≤ 0), and the advantages stay centred. A sample whose gate component *failed* (raised, judge
unreachable) is not gated: a failure says nothing about the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rollout.types import Sample


@dataclass(kw_only=True)
class GateConfig:
    """Constraint-gated advantages: components whose low values veto a positive advantage."""

    thresholds: dict[str, float] = field(default_factory=dict)
    """Gate component → minimum passing value (value < threshold = violated), e.g.
    {length: 1.0, format: 0.5}; each must be in reward.components (weight 0 = gate only). Empty = off."""
    mode: Literal["advantage", "reward"] = "advantage"
    """'advantage': after Eq. 5, a violator's advantage becomes its group's lowest (or ``advantage``);
    'reward': before Eq. 5, a violator's value of every component becomes its group's minimum, so the
    advantages stay zero-sum (still never positive for a violator)."""
    advantage: float | None = None
    """Advantage of a violating sample ('advantage' mode): null = the lowest advantage of its group (≤ 0),
    or a fixed value ≤ 0."""

    def __post_init__(self) -> None:
        if self.advantage is not None and self.advantage > 0:
            raise ConfigError(f"reward.gate.advantage must be <= 0 (a gated sample is never reinforced), "
                              f"got {self.advantage}")

    @property
    def enabled(self) -> bool:
        return bool(self.thresholds)


def violated_gates(sample: Sample, cfg: GateConfig) -> list[str]:
    """Names of the gates ``sample`` violates (components that failed on it are skipped)."""
    return [name for name, threshold in cfg.thresholds.items()
            if name in sample.rewards and name not in sample.reward_failures and sample.rewards[name] < threshold]


def gate_metrics(samples: list[Sample], cfg: GateConfig) -> dict[str, float]:
    """reward/gate/violated_frac and reward/gate/<name>/violated_frac."""
    if not cfg.enabled or not samples:
        return {}
    hits = [violated_gates(s, cfg) for s in samples]
    out = {"reward/gate/violated_frac": sum(bool(h) for h in hits) / len(samples)}
    for name in cfg.thresholds:
        out[f"reward/gate/{name}/violated_frac"] = sum(name in h for h in hits) / len(samples)
    return out
