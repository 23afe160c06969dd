"""Config of the GRPO loss (``rl/loss.py``) and of rollout → trainer batching (``rl/batching.py``).

The lead nests these in the GRPO job config (``rl.loss``, ``rl.batching``). Defaults reproduce the
LongWriter-Zero objective (paper Eq. 1–2: clipped surrogate, ε = 0.2, β = 0) with the one choice the
paper leaves open — loss aggregation — set to DAPO/verl ``token-mean`` (see ``LossConfig.aggregation``).
Stdlib only, so config loading never pulls in torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_lwz.config.base import ConfigError

Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


@dataclass(kw_only=True)
class LossConfig:
    """Clipped-surrogate GRPO loss (paper Eq. 1–2) with optional KL, entropy, dual-clip and TIS."""

    clip_eps_low: float = 0.2
    """ε_low: the ratio is clipped below at 1 − ε_low (paper ε = 0.2)."""
    clip_eps_high: float = 0.2
    """ε_high: the ratio is clipped above at 1 + ε_high (DAPO 'clip-higher' uses 0.28; paper 0.2)."""
    dual_clip: float | None = None
    """Dual-clip constant c > 1 (Ye et al. 2020): for A < 0 the per-token loss is capped at −c·A; null = off."""
    kl_coef: float = 0.0
    """β of the KL penalty to the frozen reference policy (paper β = 0: no reference model is needed)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """Per-token KL(π_θ‖π_ref) estimator; k3 = exp(ref − logp) − (ref − logp) − 1 (GRPO/DeepSeekMath)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight η: the loss gets −η·H_t per token (needs per-token entropies; 0 = off)."""
    aggregation: Aggregation = "token-mean"
    """Per-token → mini-batch loss; length biases in rl/loss.py. token-mean (DAPO/verl): no per-sample length bias."""
    norm_length: int | None = None
    """Constant divisor of seq-mean-token-sum-norm (Dr. GRPO); set it to the rollout max_tokens (14000)."""
    tis: bool = False
    """Truncated importance sampling: multiply the surrogate by w_t = min(exp(old − rollout), tis_cap), detached."""
    tis_cap: float = 2.0
    """C of TIS: the cap on the per-token importance weight π_old,trainer / π_rollout (verl/slime default 2)."""
    logprob_source: Literal["recompute", "rollout"] = "recompute"
    """PPO 'old' log-probs: a trainer forward under θ_old ('recompute') or the engine's ('rollout', no TIS)."""

    def __post_init__(self) -> None:
        if not 0 <= self.clip_eps_low < 1:
            raise ConfigError(f"loss.clip_eps_low: must be in [0, 1), got {self.clip_eps_low}")
        if self.clip_eps_high < 0:
            raise ConfigError(f"loss.clip_eps_high: must be ≥ 0, got {self.clip_eps_high}")
        if self.dual_clip is not None and self.dual_clip <= 1:
            raise ConfigError(f"loss.dual_clip: must be > 1 (typically 3) or null, got {self.dual_clip}")
        if self.kl_coef < 0:
            raise ConfigError(f"loss.kl_coef: must be ≥ 0, got {self.kl_coef}")
        if self.entropy_coef < 0:
            raise ConfigError(f"loss.entropy_coef: must be ≥ 0 (a bonus), got {self.entropy_coef}")
        if self.aggregation == "seq-mean-token-sum-norm":
            if self.norm_length is None or self.norm_length < 1:
                raise ConfigError(
                    "loss.norm_length: seq-mean-token-sum-norm needs a positive constant length, "
                    f"e.g. the rollout max_tokens (got {self.norm_length})"
                )
        if self.tis_cap <= 0:
            raise ConfigError(f"loss.tis_cap: must be > 0, got {self.tis_cap}")
        if self.tis and self.logprob_source == "rollout":
            raise ConfigError(
                "loss.tis: with loss.logprob_source='rollout' the PPO ratio is already π_θ/π_rollout, so the TIS "
                "weight exp(old − rollout) would be 1; set logprob_source='recompute' to use TIS, or tis=false"
            )


@dataclass(kw_only=True)
class BatchingConfig:
    """Scored groups → trainer batches: dynamic sampling, mini-batches and token-budget micro-batches.

    Truncated (overlong) samples are handled where they are scored: ``reward.overlong`` (worst / none /
    DAPO soft punishment / DAPO filtering), see rewards/composite.py.
    """

    num_minibatches: int = 1
    """Optimizer updates per rollout: the rollout batch is split into this many mini-batches (1 = on-policy)."""
    micro_token_budget: int = 16384
    """Max padded tokens per micro-batch (rows × longest row); a longer single sequence gets its own micro-batch."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards are identical across samples (off: the paper has none)."""

    def __post_init__(self) -> None:
        if self.num_minibatches < 1:
            raise ConfigError(f"batching.num_minibatches: must be ≥ 1, got {self.num_minibatches}")
        if self.micro_token_budget < 1:
            raise ConfigError(f"batching.micro_token_budget: must be ≥ 1, got {self.micro_token_budget}")


@dataclass(kw_only=True)
class EvalConfig:
    """Held-out evaluation during GRPO (verl's ``val_before_train`` + ``test_freq``): the current policy
    answers a fixed prompt set before the first update, every ``interval`` iterations and after the
    last; answers are scored by the same reward components, each as written (truncated ones too), and
    logged as ``eval/…``. Unlike the training reward, the prompts do not change between evaluations,
    so the curve shows the policy's progress rather than which prompts were drawn."""

    path: str | None = None
    """Held-out prompt file (same format as ``prompts.path``); null = no evaluation."""
    interval: int = 10
    """Evaluate when the iteration count is a multiple of this (0 = only before the first and after the last)."""
    max_prompts: int | None = 64
    """First N usable held-out prompts (null = all)."""
    samples_per_prompt: int = 1
    """Answers per prompt."""
    temperature: float = 0.0
    """Sampling temperature of the evaluation (0 = greedy, vLLM/verl's validation default)."""
    seed: int = 4321
    """Sampling seed (the same every evaluation, so only the policy changes)."""

    def __post_init__(self) -> None:
        if self.interval < 0:
            raise ConfigError(f"rl.eval.interval: must be ≥ 0, got {self.interval}")
        if self.samples_per_prompt < 1:
            raise ConfigError(f"rl.eval.samples_per_prompt: must be ≥ 1, got {self.samples_per_prompt}")
        if self.temperature < 0:
            raise ConfigError(f"rl.eval.temperature: must be ≥ 0 (0 = greedy), got {self.temperature}")

    def due(self, step: int, num_steps: int) -> bool:
        """Whether the policy after ``step`` updates is evaluated."""
        if self.path is None:
            return False
        return step in (0, num_steps) or (self.interval > 0 and step % self.interval == 0)
