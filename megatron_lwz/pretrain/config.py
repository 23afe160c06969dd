"""Config of ``lwz pretrain``: the shared tree plus the data recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_lwz.config.schema import (
    CheckpointConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    ParallelConfig,
    PrecisionConfig,
    SchedulerConfig,
    TrainLoopConfig,
)
from megatron_lwz.data.blend import DataConfig


@dataclass(kw_only=True)
class PretrainJobConfig:
    """Continual pretraining (paper §7): next-token loss on a weighted blend of packed documents."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Architecture (preset / HF config.json / explicit fields)."""
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    """TP/PP/VPP/CP and the distributed optimizer."""
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    """bf16 on GPU, fp32 on CPU; optional FP8 through TE."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW hyper-parameters and grad clipping."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Warmup + cosine decay."""
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    """Batch sizes, steps, evaluation cadence."""
    data: DataConfig
    """The data recipe (sources, weights, sequence length, split)."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Save/resume policy."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Run directory, tensorboard, plots."""
    peak_tflops_per_device: float | None = None
    """Peak dense TFLOP/s of one device for MFU (null: 989 on H100/H800 bf16, none on CPU)."""
