"""Per-GPU memory of a layout, by category (GiB), from the Korthikanti et al. 2022 activation formulas.

Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (2022), §4:
per layer and micro-batch a GPT layer stores ``s·b·h·(34 + 5·a·s/h)`` bytes, ``s·b·h·(10 + 24/t +
5·a·s/(h·t))`` with TP t, and ``s·b·h/t·(34 + 5·a·s/h)`` with TP + SP (eqs. 1–5); full recompute
keeps only the layer input ``2·s·b·h`` (÷ t with SP); 1F1B keeps the first stage's ``L/p`` layers
for ``p`` micro-batches (= L layers) and interleaving multiplies that by ``1 + (p−1)/(p·v)``.
Our models run without dropout and with fused (flash) attention, so the dropout masks and the
``5·a·s/h`` softmax term drop out and the per-token bytes of one layer are, term by term
(what autograd saves, bf16):

    norm inputs 2·2h + QKV/fc1 inputs 2·2h + q and attention output 2·2q + k, v 4·kv_dim
    + MLP: SwiGLU fc1 output 4f and fc2 input 2f (GELU: 2f + 2f)

(with FP8 GEMMs TE saves the QKV, fc1 and fc2 inputs as FP8: h + h + f bytes fewer)

= ``12h + 4·kv_dim + 6f`` for Qwen2 (q = h). Without SP the first two groups (8h) stay replicated
over TP, the rest is ÷ t. Selective recompute (core attention) frees nothing further once attention
is fused (the s² scores are never stored), so it only costs time here.

State per parameter: bf16 weights 2 B, fp32 main grads 4 B (grad_reduce_in_fp32), Adam fp32
master + m + v 12 B (÷ DP with the distributed optimizer), FP8 weight + transpose copies 2 B.
The last stage adds the logits: ``s·b·V/t`` × 10 B for the LM loss (bf16 logits, fp32 softmax,
fp32 grad), × 16 B for GRPO (log-probs and entropy too), none for the RM's scalar head.
Fixed per GPU: CUDA context + NCCL buffers (``CONTEXT_GIB``) and, with TP overlap, TE's userbuffers
(``UB_BUFFERS_*``). GRPO (:func:`grpo_phase_gib`): the RM's bf16 weights stay resident; vLLM holds
``gen_mem_fraction × HBM`` while it generates and ``VLLM_ASLEEP_GIB`` while the trainer runs.
The rehearsal's measurements rescale these categories (``calibration.py``).
"""

from __future__ import annotations

from megatron_lwz.plan.hardware import GIB
from megatron_lwz.plan.shape import ModelShape
from megatron_lwz.plan.spec import Job, Layout

CONTEXT_GIB = 1.5
"""CUDA context (~0.5 GiB) and NCCL communicator buffers (~1 GiB at 64 ranks) per GPU: an assumption
shared with the rehearsal (``parallel/rehearsal.py`` CONTEXT_BYTES, pinned equal by a test), which
cannot measure it on CPU, so it is never calibrated. Allocator fragmentation is the headroom's job."""
VLLM_ASLEEP_GIB = 1.0
"""What a level-2-asleep vLLM keeps on its GPUs while the trainer runs."""
UB_BUFFERS_AG, UB_BUFFERS_RS = 8, 4
"""TE 2.20 ``initialize_ub`` registers one ``[tokens, hidden]`` userbuffer per overlapped GEMM: 8
all-gather ones (uint8 under FP8, else bf16) and 4 reduce-scatter ones (bf16)
(transformer_engine/pytorch/module/base.py, ``layers_all_gather_overlap`` /
``layers_reduce_scatter_overlap``), whatever the TP size."""
LOGIT_BYTES = {"cpt": 10, "grpo": 16, "rm": 0}
"""Bytes per logit element on the last stage, by job kind (module doc)."""


def padded_vocab(vocab: int, tp: int) -> int:
    """Megatron pads the vocabulary to a multiple of 128 × TP."""
    m = 128 * tp
    return -(-vocab // m) * m


def params_per_gpu(shape: ModelShape, lay: Layout) -> tuple[float, float]:
    """Parameters on the first and on the last pipeline stage of one TP rank."""
    layers = shape.layers * shape.layer_params() / (lay.pp * lay.tp)
    table = padded_vocab(shape.vocab, lay.tp) * shape.hidden / lay.tp
    if lay.pp == 1:
        return (layers + table * (1 if shape.tied else 2),) * 2
    return layers + table, layers + table


def act_bytes_per_token(shape: ModelShape, lay: Layout) -> float:
    """Bytes one layer saves per token on one TP rank, no recompute (module doc)."""
    q, kv, f = shape.heads * shape.d, shape.kv_heads * shape.d, shape.ffn
    replicated = 8 * shape.hidden
    sharded = 4 * q + 4 * kv + (6 if shape.swiglu else 4) * f
    if lay.fp8:  # TE keeps the QKV, fc1 and fc2 GEMM inputs in FP8 (1 B) for the weight gradient
        replicated, sharded = replicated - 2 * shape.hidden, sharded - f
    return (replicated + sharded) / lay.tp if lay.sp else replicated + sharded / lay.tp


def microbatches(job: Job, lay: Layout) -> int:
    """Micro-batches per DP rank per optimizer step (≥ 1)."""
    per_mb = job.micro_batch * (2 if job.kind == "rm" else 1)
    return max(1, job.sequences_per_step // (per_mb * lay.dp))


def activation_bytes(shape: ModelShape, lay: Layout, job: Job, last_stage: bool = False) -> float:
    """Activations held at the 1F1B peak on the first stage (``p`` micro-batches in flight) or on
    the last stage (one)."""
    tokens = job.seq_length * job.micro_batch * (2 if job.kind == "rm" else 1)
    per_layer = tokens * act_bytes_per_token(shape, lay)
    in_flight = 1 if last_stage else min(lay.pp, microbatches(job, lay))
    interleave = 1.0 if not lay.vpp or last_stage else 1.0 + (lay.pp - 1) / (lay.pp * lay.vpp)
    stage_layers = shape.layers / lay.pp
    if lay.recompute == "full":
        inputs = tokens * 2 * shape.hidden / (lay.tp if lay.sp else 1)
        return stage_layers * in_flight * interleave * inputs + 2 * per_layer  # + one layer re-materialised
    return stage_layers * in_flight * interleave * per_layer


def logits_bytes(shape: ModelShape, lay: Layout, job: Job) -> float:
    tokens = job.seq_length * job.micro_batch
    return tokens * padded_vocab(shape.vocab, lay.tp) / lay.tp * LOGIT_BYTES[job.kind]


def userbuffer_bytes(shape: ModelShape, lay: Layout, job: Job) -> float:
    """TE userbuffers of TP-communication overlap (``UB_BUFFERS_*``); 0 when it is off."""
    if not (job.userbuffers and lay.sp and lay.tp > 1):
        return 0.0
    tokens = job.seq_length * job.micro_batch
    return tokens * shape.hidden * (UB_BUFFERS_AG * (1 if lay.fp8 else 2) + UB_BUFFERS_RS * 2)


def memory_breakdown(shape: ModelShape, lay: Layout, job: Job, hbm_gib: float | None = None) -> dict[str, float]:
    """GiB per category on the busiest GPU: the first pipeline stage (most activations) or the last
    (logits), whichever holds more; with PP = 1 one GPU holds both. GRPO adds the RM's weights and
    vLLM's budget ``gen_mem_fraction × hbm_gib`` while awake (rollout; :func:`peak_gib` puts the
    phases together)."""
    first, last = params_per_gpu(shape, lay)
    stages = [(first, activation_bytes(shape, lay, job), 0.0 if lay.pp > 1 else logits_bytes(shape, lay, job))]
    if lay.pp > 1:
        stages.append((last, activation_bytes(shape, lay, job, last_stage=True), logits_bytes(shape, lay, job)))
    best: dict[str, float] = {}
    for params, act, logits in stages:
        out = {
            "weights": 2 * params / GIB,
            "grads": 4 * params / GIB,
            "optimizer": 12 * params / (lay.dp if job.distributed_optimizer else 1) / GIB,
            "fp8": (2 * params / GIB) if lay.fp8 else 0.0,
            "activations": act / GIB,
            "logits": logits / GIB,
            "context": CONTEXT_GIB,
            "userbuffers": userbuffer_bytes(shape, lay, job) / GIB,
        }
        if job.kind == "grpo":
            if hbm_gib is None:
                raise ValueError("memory_breakdown of a GRPO job needs hbm_gib (vLLM's budget is a share of it)")
            rm = job.grpo.rm
            out["rm_weights"] = (2 * rm.num_params() / lay.tp / GIB) if rm else 0.0
            out["vllm"] = job.grpo.gen_mem_fraction * hbm_gib
        if sum(out.values()) > sum(best.values()):
            best = out
    return best


def grpo_phase_gib(parts: dict[str, float]) -> dict[str, float]:
    """GRPO's two memory phases on one GPU: ``rollout`` = trainer state + RM + vLLM awake (no
    activations), ``train`` = trainer state + RM + activations + logits + a level-2-asleep vLLM."""
    resident = sum(v for k, v in parts.items() if k not in ("activations", "logits", "vllm"))
    return {"rollout": resident + parts["vllm"],
            "train": resident + parts["activations"] + parts["logits"] + VLLM_ASLEEP_GIB}


def peak_gib(parts: dict[str, float], job: Job) -> float:
    """Peak GiB: all categories at once; GRPO: the larger of its two phases (:func:`grpo_phase_gib`)."""
    if job.kind != "grpo":
        return sum(parts.values())
    return max(grpo_phase_gib(parts).values())
