"""Config of ``lwz train-rm``: the Bradley–Terry Writing RM (paper Eq. 4) on the shared engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_lwz.config.schema import (
    CheckpointConfig, LoggingConfig, ModelConfig, OptimConfig, ParallelConfig, PrecisionConfig,
    SchedulerConfig, TrainLoopConfig,
)
from megatron_lwz.rewards.rm_data import RMDataConfig


@dataclass(kw_only=True)
class RMJobConfig:
    """Writing RM: GPTModel backbone (any TP/PP/DP) + scalar head on the final token, loss −log σ(r_w − r_l).

    ``train.global_batch_size`` / ``train.micro_batch_size`` count *pairs* (each pair is two sequences).
    Initialise the backbone from a policy/pretraining checkpoint with ``checkpoint.load_dir`` +
    ``checkpoint.load_weights_only=true`` (the vocabulary head is dropped, the scalar head starts fresh).
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig(tie_word_embeddings=False))
    """Backbone architecture; must be untied (the output layer becomes the scalar head)."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """Layout (same engine as the policy)."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    """Numerics."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, weight_decay=0.0))
    """Optimizer."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """LR schedule."""
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    """Steps and batch sizes (in pairs); eval_interval evaluates held-out pairwise accuracy."""
    data: RMDataConfig
    """Preference pairs and tokenisation."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Save/resume; load_dir + load_weights_only initialise the backbone."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Run directory, tensorboard, plots."""
