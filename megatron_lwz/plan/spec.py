"""What the planner is asked about: the job (:class:`Job`, :class:`GrpoSpec`) and one candidate layout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from megatron_lwz.plan.shape import ModelShape


@dataclass(frozen=True, kw_only=True)
class Layout:
    """One parallel layout of the trained model (CP = 1: the data path does not split sequences)."""

    tp: int
    """Tensor parallel size."""
    pp: int
    """Pipeline stages."""
    vpp: int | None
    """Model chunks per stage (interleaved 1F1B); None = not interleaved."""
    dp: int
    """Data parallel size = GPUs / (TP × PP)."""
    sp: bool
    """Megatron sequence parallelism over the TP group."""
    recompute: Literal["none", "selective", "full"]
    """Activation recomputation (selective = core attention, megatron-core's default module list)."""
    fp8: bool
    """FP8 GEMMs (Transformer Engine, hybrid recipe)."""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class GrpoSpec:
    """The GRPO-specific part of a job: rollout shape, engines and the reward model."""

    prompts: int = 64
    """Prompts per step."""
    group: int = 32
    """Samples per prompt (G)."""
    prompt_mean: int = 300
    """Mean prompt tokens (template included)."""
    response_mean: int = 5000
    """Mean generated tokens per sample."""
    response_max: int = 14000
    """Generation cap (the long tail decodes this many steps)."""
    workload: Literal["lognormal", "longwriter"] = "lognormal"
    """Response-length distribution: log-normal with mean ``response_mean``, or the rollout
    simulator's LongWriter-Zero workload (its own mean)."""
    minibatches: int = 4
    """Optimizer updates per rollout."""
    gen_tp: int = 8
    """vLLM tensor parallel size."""
    engines: int | None = None
    """vLLM engines (None = one per gen_tp GPUs; our vllm_engine runs one on node 0: 1)."""
    gen_mem_fraction: float = 0.32
    """vLLM gpu_memory_utilization (weights + KV + graphs) on the engine GPUs."""
    rm: ModelShape | None = None
    """Reward model scoring every sample (None: rule rewards only)."""
    rm_input_mean: int = 3500
    """Mean tokens the RM reads per sample."""


@dataclass(frozen=True, kw_only=True)
class Job:
    """A training job: kind, sequence length, batch and the communication-overlap switches."""

    kind: Literal["cpt", "rm", "grpo"] = "cpt"
    """cpt/pretrain (LM loss), rm (pairwise BT, scalar head), grpo (policy + rollout)."""
    seq_length: int = 4096
    """Tokens per sequence (grpo: the packed micro-batch token budget)."""
    global_batch: int = 512
    """Sequences per optimizer step (rm: pairs; grpo: ignored, = prompts × group)."""
    micro_batch: int = 1
    """Sequences per micro-batch (rm: pairs)."""
    tp_comm_overlap: bool = True
    """TE userbuffers overlap of TP all-gather/reduce-scatter with GEMMs (needs SP; cpt only, see
    :attr:`userbuffers`)."""
    overlap_grad_reduce: bool = True
    """DP gradient reduce-scatter overlapped with backward."""
    overlap_param_gather: bool = True
    """DP parameter all-gather overlapped with forward."""
    distributed_optimizer: bool = True
    """Adam state sharded over DP."""
    grpo: GrpoSpec = field(default_factory=GrpoSpec)
    """Rollout and RM shape (kind=grpo only)."""

    @property
    def userbuffers(self) -> bool:
        """TP-communication overlap is in effect: asked for and the job is ``cpt``. TE userbuffers are
        registered once for one micro-batch shape (parallel/tp_overlap.py), so our RM (pairs) and GRPO
        (packed samples) trainers run without them, and the planner models them that way."""
        return self.tp_comm_overlap and self.kind == "cpt"

    @property
    def sequences_per_step(self) -> int:
        if self.kind == "grpo":
            return self.grpo.prompts * self.grpo.group
        return self.global_batch * (2 if self.kind == "rm" else 1)
