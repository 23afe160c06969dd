"""The shared part of the typed config tree: model, parallelism, precision, optimizer, schedule,
training loop, checkpointing and logging. Job configs (pretrain / RM / GRPO) compose these.

Field docstrings are the documentation; ``lwz <job> --config X.yaml a.b=c`` overrides any field.
Local checks live in ``__post_init__``; cross-field and environment checks in ``config.validate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_lwz.config.base import ConfigError


@dataclass(kw_only=True)
class ModelConfig:
    """Qwen2.5-architecture GPT. Start from ``preset`` or ``hf_config``; any non-null field overrides it."""

    preset: str | None = None
    """Preset name: qwen2.5-{0.5b,1.5b,3b,7b,14b,32b,72b}, tiny, tiny-gqa3 (see models/presets.py)."""
    hf_config: str | None = None
    """Path to a Hugging Face config.json (or its directory) to take the architecture from."""
    num_layers: int | None = None
    """Transformer layers."""
    hidden_size: int | None = None
    """Model width."""
    ffn_hidden_size: int | None = None
    """SwiGLU intermediate size."""
    num_attention_heads: int | None = None
    """Query heads."""
    num_query_groups: int | None = None
    """Key/value heads (GQA groups)."""
    vocab_size: int | None = None
    """Tokenizer vocabulary size before padding (padding to 128×TP happens at build time)."""
    max_position_embeddings: int | None = None
    """Longest sequence the RoPE tables are built for."""
    rope_theta: float | None = None
    """RoPE base frequency (1e6 for Qwen2.5)."""
    norm_eps: float | None = None
    """RMSNorm epsilon."""
    tie_word_embeddings: bool | None = None
    """Share input embedding and output layer (Qwen2.5 ≤ 3B tie; 7B+ do not)."""
    qkv_bias: bool | None = None
    """Bias on the fused QKV projection (True for Qwen2)."""
    make_vocab_size_divisible_by: int = 128
    """Vocab is padded to a multiple of this × TP (Megatron convention)."""
    init_method_std: float = 0.02
    """Std of the normal init for random-init models."""
    layer_spec: Literal["auto", "local", "te"] = "auto"
    """'te' (Transformer Engine, needs CUDA+TE), 'local' (pure torch), 'auto' = te when available."""
    recompute: Literal["none", "full", "selective"] = "none"
    """Activation recomputation: full (uniform, per layer) or selective (core attention only)."""
    recompute_num_layers: int = 1
    """Layers per recompute chunk with recompute='full'."""
    swiglu_fusion: bool = False
    """Fused SwiGLU kernel (megatron ``bias_activation_fusion``; our linears have no bias): one pass
    over the fc1 output instead of separate silu/mul kernels and their backward (CUDA)."""
    rope_fusion: bool = False
    """Transformer Engine's fused RoPE kernel (megatron ``apply_rope_fusion``; CUDA + TE)."""
    gradient_accumulation_fusion: bool = False
    """TE's weight-gradient GEMMs accumulate straight into the fp32 ``main_grad`` buffer instead of
    writing a wgrad tensor and adding it per micro-batch (CUDA + TE layer spec)."""


@dataclass(kw_only=True)
class ParallelConfig:
    """Process layout. DP is derived: world_size / (TP × PP × CP)."""

    tensor_parallel: int = 1
    """Tensor-parallel size (TP): shards attention heads and MLP columns."""
    pipeline_parallel: int = 1
    """Pipeline-parallel stages (PP)."""
    virtual_pipeline_parallel: int | None = None
    """Model chunks per pipeline stage (interleaved 1F1B); null = non-interleaved."""
    context_parallel: int = 1
    """Context-parallel size (CP) for long sequences (GPU + TE only)."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism over the TP group (needs TP > 1)."""
    distributed_optimizer: bool = True
    """Shard optimizer state over DP (ZeRO-1 style, megatron DistributedOptimizer)."""
    overlap_grad_reduce: bool = False
    """Overlap DP gradient reduce-scatter with backward."""
    overlap_param_gather: bool = False
    """Overlap DP parameter all-gather with forward (needs the distributed optimizer)."""
    tp_comm_overlap: bool = False
    """Overlap TP all-gather/reduce-scatter with the GEMMs (Transformer Engine userbuffers): CUDA + TE,
    sequence_parallel, and fixed micro-batch shapes (pretraining: data.seq_length × micro_batch_size)."""
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """torch.distributed backend; auto = nccl with CUDA, gloo without."""
    timeout_minutes: float = 15.0
    """Timeout of the training collectives (the default group and megatron's TP/PP/DP groups): short,
    so a hung step ends the job within minutes with a flight-recorder dump and every rank's Python
    stacks (parallel/diagnostics.py). Must exceed the slowest step phase that waits on them, e.g. a
    checkpoint save. Waits for another rank's rollout use host_timeout_minutes instead."""
    host_timeout_minutes: float = 120.0
    """Timeout of the host (gloo) group on which ranks wait while another rank generates (GRPO
    rollouts): waits there cost no GPU, unlike a spinning NCCL kernel beside vLLM's workers."""
    nccl_trace_buffer_size: int = 2000
    """NCCL flight recorder (TORCH_FR_BUFFER_SIZE): the last N collectives per process group, written
    per rank on a collective timeout (TORCH_NCCL_DUMP_ON_TIMEOUT); 0 = off. An exported value wins."""
    debug_dir: str | None = None
    """Directory of the per-rank hang records: ``nccl_trace_rank_<rank>`` flight-recorder dumps and
    ``stacks.rank<NNNNN>.txt`` stack dumps. slurm/launch.sh sets ``$RUNS_DIR/debug/<job id>``;
    null = stacks to stderr, flight-recorder dumps to torch's default (/tmp on each node)."""
    stack_dumps: bool = True
    """faulthandler on every rank: all threads' Python stacks on a fatal signal (the NCCL watchdog
    aborts a rank after a collective timeout) and on ``stack_dump_signal``."""
    stack_dump_signal: Literal["SIGUSR2", "SIGQUIT", "SIGWINCH"] | None = "SIGUSR2"
    """Signal that dumps the stacks and lets the process run on (SIGTERM / SIGUSR1 are preemption)."""
    seed: int = 1234
    """Base random seed (megatron's model-parallel RNG tracker is seeded from it)."""
    world_size: int | None = None
    """GPUs this recipe is written for (nodes × GPUs per node); checked at job start when set, and the
    world ``lwz rehearse`` rehearses by default. null = any world size divisible by TP × PP × CP."""

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel", "context_parallel"):
            if getattr(self, name) < 1:
                raise ConfigError(f"parallel.{name}: must be ≥ 1, got {getattr(self, name)}")
        if self.virtual_pipeline_parallel is not None and self.virtual_pipeline_parallel < 2:
            raise ConfigError("parallel.virtual_pipeline_parallel: use null (not interleaved) or ≥ 2")


@dataclass(kw_only=True)
class PrecisionConfig:
    """Numerics. On CPU everything runs in fp32."""

    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Parameter/compute dtype; auto = bf16 with CUDA, fp32 without. Optimizer master weights stay fp32."""
    fp8: Literal["hybrid", "e4m3"] | None = None
    """FP8 GEMMs via Transformer Engine (GPU + TE only): hybrid = e4m3 fwd / e5m2 bwd."""
    fp8_recipe: Literal["delayed", "tensorwise", "blockwise", "mxfp8"] = "delayed"
    """TE FP8 scaling recipe (mxfp8 needs Blackwell)."""
    fp8_param_gather: bool = False
    """Keep FP8 copies of parameters for the DP all-gather (saves memory and bandwidth)."""


@dataclass(kw_only=True)
class OptimConfig:
    """Adam(W) through megatron-core's optimizer (distributed optimizer when enabled)."""

    lr: float = 3e-4
    """Peak learning rate."""
    min_lr: float = 0.0
    """Floor of the decay schedule."""
    weight_decay: float = 0.1
    """Decoupled weight decay (AdamW)."""
    adam_beta1: float = 0.9
    """Adam β1."""
    adam_beta2: float = 0.95
    """Adam β2."""
    adam_eps: float = 1e-8
    """Adam ε."""
    clip_grad: float = 1.0
    """Global gradient-norm clip (0 = off)."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr: must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"optim.min_lr: must be in [0, optim.lr={self.lr}], got {self.min_lr}")


@dataclass(kw_only=True)
class SchedulerConfig:
    """Learning-rate schedule: linear warmup then decay (megatron OptimizerParamScheduler)."""

    warmup_steps: int = 0
    """Linear warmup steps from 0 to optim.lr."""
    decay_style: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warmup, down to optim.min_lr at the last step."""
    decay_steps: int | None = None
    """Steps over which to decay (warmup included); null = the job's total steps."""


@dataclass(kw_only=True)
class CheckpointConfig:
    """megatron dist_checkpointing saves; atomic publish via a temp dir + `latest` marker."""

    save_dir: str | None = None
    """Where checkpoints go; null = <run_dir>/checkpoints."""
    load_dir: str | None = None
    """Resume or initialise from here; null = save_dir (auto-resume if a checkpoint exists)."""
    load_weights_only: bool = False
    """Take only model weights from load_dir (e.g. a converted HF model): fresh optimizer, step 0."""
    save_interval: int = 0
    """Save every N steps (0 = only at the end and on a preemption signal)."""
    keep_last: int = 2
    """Keep this many newest checkpoints (older ones are deleted after a successful publish)."""
    save_on_signal: bool = True
    """On SIGTERM/SIGUSR1 (SLURM preemption or --signal), save at the next step boundary and exit."""
    exit_code_on_signal: int = 0
    """Process exit code after a signal-triggered save (0, or e.g. 124 for an sbatch requeue wrapper)."""
    stop_before_time_limit: bool = True
    """Stop and save (exit code exit_code_on_signal) when the next step plus a save would not end before
    the job's end time: LWZ_JOB_END_TIME (Unix s), SLURM_JOB_END_TIME or squeue; no-op outside SLURM."""
    time_limit_margin_s: float = 60.0
    """Seconds kept free after that save (teardown, requeue)."""
    save_time_estimate_s: float = 120.0
    """Save duration the time-limit check assumes until a save of this run has been measured."""
    async_save: bool = True
    """Interval saves are written by a forked process while training goes on (megatron's async
    checkpointing); the `latest` marker moves once every rank has finished. Saves at a stop (signal,
    time limit) and at the last step are synchronous."""
    fully_parallel: bool = True
    """megatron's fully-parallel save / load wrappers over the DP group: weights replicated over DP are
    written and read once, the work spread over the DP ranks."""
    distopt_io: Literal["sharded", "gather"] = "sharded"
    """Distributed-optimizer state: 'sharded' = each rank writes / reads only its own slice (host RAM ≈
    its DistOpt shard); 'gather' = megatron's fully_reshardable code, which gathers every TP×PP shard on
    every rank (12 bytes × params / (TP·PP) of host RAM). Same files, loadable at any TP / PP / DP."""


@dataclass(kw_only=True)
class LoggingConfig:
    """Run directory, console and tensorboard."""

    run_dir: str = "runs/default"
    """Everything of a run goes here: resolved config, versions, tensorboard, plots, checkpoints."""
    log_interval: int = 1
    """Console / tensorboard every N steps."""
    tensorboard: bool = True
    """Write tensorboard scalars to <run_dir>/tb."""
    plots: bool = True
    """Write PNG plots of the logged curves at the end of the run."""
    progress: bool = True
    """Show a progress bar on rank 0."""


@dataclass(kw_only=True)
class TrainLoopConfig:
    """Batching and step counts of a supervised loop (pretraining, RM training)."""

    micro_batch_size: int = 1
    """Sequences per micro-batch per DP rank."""
    global_batch_size: int = 8
    """Sequences per optimizer step over all DP ranks (= micro × DP × #micro-batches)."""
    train_steps: int = 100
    """Optimizer steps."""
    eval_interval: int = 0
    """Evaluate every N steps (0 = never)."""
    eval_iters: int = 2
    """Micro-batch groups (global batches) per evaluation."""

    def __post_init__(self) -> None:
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                f"train.global_batch_size={self.global_batch_size} is not a multiple of "
                f"train.micro_batch_size={self.micro_batch_size}"
            )
