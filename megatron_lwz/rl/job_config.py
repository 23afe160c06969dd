"""Config of ``lwz grpo``: LongWriter-Zero RL (paper §4–6) on the shared engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_lwz.config.base import ConfigError
from megatron_lwz.config.schema import (
    CheckpointConfig, LoggingConfig, ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig, SchedulerConfig,
)
from megatron_lwz.data.tokenizer import TokenizerConfig
from megatron_lwz.rewards.composite import RewardConfig
from megatron_lwz.rl.config import BatchingConfig, EvalConfig, LossConfig
from megatron_lwz.rl.prompts import PromptDataConfig
from megatron_lwz.rollout.config import RolloutConfig


@dataclass(kw_only=True)
class GRPOConfig:
    """The RL algorithm's own knobs (paper §5: G = 32, T = 0.8, top-p = 1.0, 14K tokens, 150 steps)."""

    num_steps: int = 150
    """GRPO iterations (one rollout each; ``batching.num_minibatches`` optimizer steps per iteration)."""
    prompts_per_step: int = 64
    """Prompts per rollout (not given by the paper; 64 × G=32 = 2048 samples per rollout)."""
    group_size: int = 32
    """G: samples per prompt."""
    temperature: float = 0.8
    """Rollout temperature."""
    top_p: float = 1.0
    """Rollout nucleus mass."""
    max_tokens: int = 14000
    """Maximum response tokens."""
    stop: list[str] = field(default_factory=lambda: ["</answer>", "<|user|>", "<|endoftext|>"])
    """Stop strings (kept in the text); the released model's list."""
    seed: int = 1234
    """Sampling seed base (step s uses seed + s)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Clipped surrogate, KL, aggregation."""
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    """Mini-batches per rollout, micro-batch token budget, dynamic sampling."""
    dump_samples: int = 16
    """Rollout samples written to <run_dir>/rollouts/step_XXXXX.jsonl per step (-1 = all)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation (off unless ``rl.eval.path`` is set)."""
    off_policy_steps: int = 0
    """0: generate, then train (on-policy). 1: one-step-off — iteration n+1 generates (engine pool) while
    iteration n trains, from the weights iteration n−1 produced; needs loss.tis (rl/offpolicy.py)."""


@dataclass(kw_only=True)
class WritingRMConfig:
    """The Bradley–Terry Writing RM, scored on the policy's allocation (same TP/PP/DP layout)."""

    checkpoint: str | None = None
    """Directory of a ``lwz train-rm`` checkpoint; null = no Writing RM (drop 'writing' from reward.components)."""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tie_word_embeddings=False))
    """RM backbone architecture (must match the checkpoint)."""
    max_length: int = 2048
    """Tokens scored per (question, answer); longer answers keep their end."""
    max_prompt_tokens: int = 256
    """Question tokens kept when truncating."""
    micro_batch_size: int = 4
    """Sequences per scoring micro-batch."""


@dataclass(kw_only=True)
class GRPOJobConfig:
    """LongWriter-Zero GRPO: rollout → Length/Writing/Format rewards → Eq. 5 advantages → clipped surrogate."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Policy architecture."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Policy layout (the Writing RM uses the same)."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    """Numerics."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, weight_decay=0.0))
    """Policy optimizer (the paper does not give its LR; 1e-6 is the common GRPO choice for 32B)."""
    scheduler: SchedulerConfig = field(default_factory=lambda: SchedulerConfig(decay_style="constant"))
    """LR schedule (per optimizer step)."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Resume + initial policy (load_dir + load_weights_only)."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Run directory, tensorboard, plots."""
    tokenizer: TokenizerConfig
    """Policy tokenizer."""
    prompts: PromptDataConfig
    """RL prompt data and template."""
    rl: GRPOConfig = field(default_factory=GRPOConfig)
    """Algorithm settings."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Rollout engine (HF on CPU, vLLM on GPU), weight sync and its verification."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward components, Eq. 5 weights, overlong policy."""
    writing_rm: WritingRMConfig = field(default_factory=WritingRMConfig)
    """The Writing RM."""

    def __post_init__(self) -> None:
        if "writing" in self.reward.components and not self.writing_rm.checkpoint:
            raise ConfigError("reward.components has 'writing' but writing_rm.checkpoint is not set; "
                              "train one with `lwz train-rm` or drop 'writing' from the components")
        if "pairwise" in self.reward.components and self.reward.pairwise.judge == "writing_rm" \
                and not self.writing_rm.checkpoint:
            raise ConfigError("reward.pairwise.judge='writing_rm' needs writing_rm.checkpoint (the local pairwise judge)")
        if "rubric" in self.reward.components and self.reward.rubric.cache_dir is None:
            self.reward.rubric.cache_dir = f"{self.logging.run_dir}/rubrics"  # survives resume with the run
        if self.reward.judge is not None and self.reward.judge.cache_path is None:
            self.reward.judge.cache_path = f"{self.logging.run_dir}/judge_cache.sqlite"  # a resume re-asks nothing
        if self.rl.off_policy_steps not in (0, 1):
            raise ConfigError(f"rl.off_policy_steps: must be 0 or 1, got {self.rl.off_policy_steps}")
        if self.rl.off_policy_steps and (self.rollout.engine_gpus is None or not self.rl.loss.tis):
            raise ConfigError("rl.off_policy_steps=1 needs the engine pool (rollout.engine_gpus: 0 or N) and the "
                              "truncated-IS correction (rl.loss.tis: true, rl.loss.logprob_source: recompute)")
        if self.rl.off_policy_steps and self.rollout.engine == "vllm":
            raise ConfigError("rl.off_policy_steps=1 runs the HF engine in its own process; a colocated vLLM engine "
                              "sleeps while the trainer runs (see bench/rollout_sim.py for the projection)")
        if self.rl.group_size < 2:
            raise ConfigError("rl.group_size: GRPO needs at least 2 samples per prompt")
        if "format" in self.reward.components and self.reward.format.structure != self.prompts.template:
            raise ConfigError(f"reward.format.structure ({self.reward.format.structure!r}) must equal prompts.template "
                              f"({self.prompts.template!r}): the Format RM checks the structure the prompt asks for")
