"""Discrete-event simulator of one GRPO rollout on N vLLM engines (projection for the 8×8 recipe).

**Engine model** (vLLM V1 continuous batching, FCFS): requests wait in arrival order; one is admitted
while ``running < max_num_seqs`` and its context fits the KV cache below a 1 % watermark; every decode
step adds one token to every running sequence; when the KV cache is full the most recently admitted
request is preempted (``self.running[-1]``, vllm/v1/core/sched/scheduler.py:938, recompute mode) and
re-prefills its prompt + generated tokens when re-admitted. Between events (a finish, a full cache)
the batch is constant, so the simulator advances many steps at once.

**Decode step time** of an engine with ``B`` running sequences holding ``K`` KV tokens::

    t(B, K) = max((W / TP + K · kv_bytes / TP) / (η · HBM),  2 · N · B / TP / (η_c · peak))

(weights and KV are read once per step, memory-bound; the compute term only matters for very large
batches). Calibration of the bandwidth efficiency η on published numbers:

* NVIDIA NIM benchmarks, Llama-3.3-70B-Instruct fp8 on 2 × H100 80 GB (TP 2), NIM 1.8.0 (vLLM/TRT-LLM
  backend), concurrency 1: ITL 18.58 ms (5000 in / 500 out) and 18.91 ms (500 in / 2000 out),
  https://docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance. Weights 70.6 GB / 2 = 35.3 GB per
  GPU at 3.35 TB/s HBM3 take 10.5 ms → η = 10.5 / 18.58 = **0.57** (it absorbs TP all-reduce, kernel
  launch and sampling overheads). Check, same table, concurrency 5 (≈ 26K context tokens, fp8 KV
  80 KiB/token/GPU): the model gives 19.6 ms vs 21.83 ms published (rows at ≥ 25 concurrent requests
  interleave 5000-token prefills and are not used).
* η_c = 0.5 of the 989 TFLOP/s bf16 dense peak (H100 SXM; H800 has the same HBM3 and SMs, only
  NVLink is narrower, which at TP 8 decode message sizes is latency-, not bandwidth-bound).
* Sanity check against peers (peers.md §0.6): NeMo-RL Qwen3-32B GRPO, 32 × H100, 4K generations:
  571 tokens/s/GPU for the whole step; and the recipe's own hand estimate (12K tokens/s per TP 8
  engine at ~160 sequences) — our model gives ~12.7K tokens/s at the same point.

Qwen2.5-32B: 32.76B params (65.5 GB bf16), KV 64 layers × 8 KV heads × 128 × 2 × 2 B = 256 KiB/token;
KV capacity 14.8 GiB per GPU (recipe, ``gpu_memory_utilization`` 0.32) → 486K tokens per TP 8
engine; ``max_num_seqs`` 1024 (vLLM's offline default on H100, vllm/engine/arg_utils.py:2988-2996).
Prefill with prefix caching: a prompt's KV is computed once per group (``prompt / G`` per sample).

Variants (:func:`project`): 1 engine on node 0 (today), 8 engines round-robin, 8 engines length-aware
(rollout/dispatch.py), and one-step-off: R nodes generate iteration n+1 while 8 − R nodes score and
train iteration n (verl's one_step_off layout), the best R reported. Step time = rollout + reward +
train + sync (sync variants) or max(rollout + sync, (reward + train) · 8 / (8 − R)) (one-step-off).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from megatron_lwz.bench.rollout_workload import Workload, make_workload
from megatron_lwz.rollout.dispatch import plan_dispatch, predicted_tokens


@dataclass(kw_only=True)
class DecodeModel:
    """One vLLM engine of ``tp`` GPUs serving a dense model (module docstring for the calibration)."""

    params_b: float = 32.76
    """Model parameters in billions (Qwen2.5-32B)."""
    weight_bytes: float = 65.5e9
    """Weight bytes read per decode step (bf16)."""
    kv_bytes_per_token: int = 262_144
    """KV bytes per token over all layers and heads (Qwen2.5-32B bf16: 256 KiB)."""
    tp: int = 8
    """GPUs per engine (tensor parallel)."""
    hbm_bytes_per_s: float = 3.35e12
    """HBM bandwidth per GPU (H100/H800 SXM HBM3)."""
    bw_efficiency: float = 0.57
    """η, calibrated on the NIM Llama-3.3-70B TP 2 concurrency-1 ITL (module docstring)."""
    peak_flops: float = 989e12
    """bf16 dense peak per GPU (H100/H800 SXM)."""
    flops_efficiency: float = 0.5
    """η_c for the compute-bound bound and for prefill."""
    kv_capacity_tokens: int = 486_000
    """KV-cache tokens per engine (recipe: 14.8 GiB per GPU / 32 KiB per token per GPU)."""
    max_num_seqs: int = 1024
    """vLLM's max running sequences (offline default on H100)."""

    def step_seconds(self, batch: int, kv_tokens: float) -> float:
        """Wall time of one decode step (``batch`` sequences, ``kv_tokens`` in the cache)."""
        kv_tokens = float(kv_tokens)
        memory = (self.weight_bytes + kv_tokens * self.kv_bytes_per_token) / self.tp
        compute = 2.0 * self.params_b * 1e9 * batch / self.tp
        return max(memory / (self.bw_efficiency * self.hbm_bytes_per_s),
                   compute / (self.flops_efficiency * self.peak_flops))

    def prefill_seconds(self, tokens: float) -> float:
        return 2.0 * self.params_b * 1e9 * tokens / self.tp / (self.flops_efficiency * self.peak_flops)


@dataclass(kw_only=True)
class EngineRun:
    """What one simulated engine did."""

    seconds: float
    """Time until its last sequence finished."""
    tokens: int
    """Response tokens generated."""
    preemptions: int = 0
    """Requests preempted (KV cache full) and recomputed."""


def simulate_engine(prompt_tokens: np.ndarray, response_tokens: np.ndarray, model: DecodeModel,
                    prefix_share: int = 1) -> EngineRun:
    """Run one engine on sequences submitted at t = 0 in the given order (module docstring)."""
    prompt = np.asarray(prompt_tokens, dtype=np.int64)
    target = np.asarray(response_tokens, dtype=np.int64)
    n = len(target)
    if n == 0:
        return EngineRun(seconds=0.0, tokens=0)
    if int((prompt + target).max()) > model.kv_capacity_tokens:
        raise ValueError("a single sequence exceeds the engine's KV capacity")
    gen = np.zeros(n, dtype=np.int64)
    waiting, running = deque(range(n)), []
    limit = model.kv_capacity_tokens * 0.99
    t, preemptions = 0.0, 0
    while waiting or running:
        kv = float(sum(prompt[r] + gen[r] for r in running))
        while waiting and len(running) < model.max_num_seqs and kv + prompt[waiting[0]] + gen[waiting[0]] + 1 <= limit:
            r = waiting.popleft()
            t += model.prefill_seconds(float(prompt[r]) / prefix_share + float(gen[r]))
            running.append(r)
            kv += prompt[r] + gen[r]
        idx = np.array(running)
        batch, kv = len(idx), float((prompt[idx] + gen[idx]).sum())
        room = int((model.kv_capacity_tokens - kv) // batch)
        if room < 1:
            waiting.appendleft(running.pop())
            preemptions += 1
            continue
        steps = int(min((target[idx] - gen[idx]).min(), room))
        t += steps * model.step_seconds(batch, kv + batch * (steps - 1) / 2.0)
        gen[idx] += steps
        running = [r for r in running if gen[r] < target[r]]
    return EngineRun(seconds=float(t), tokens=int(target.sum()), preemptions=preemptions)


@dataclass(kw_only=True)
class RolloutRun:
    """One simulated rollout over several engines."""

    seconds: float
    """Makespan: the slowest engine."""
    engines: list[EngineRun] = field(default_factory=list)
    gpus_per_engine: int = 8
    total_gpus: int = 64

    @property
    def idle_share(self) -> float:
        """Share of the job's GPU-seconds of the rollout phase in which a GPU holds no work."""
        busy = sum(e.seconds for e in self.engines) * self.gpus_per_engine
        return 1.0 - busy / (self.total_gpus * self.seconds) if self.seconds > 0 else 0.0


def simulate_rollout(work: Workload, num_engines: int, dispatch: str, model: DecodeModel, *,
                     total_gpus: int = 64) -> RolloutRun:
    """Dispatch ``work`` over ``num_engines`` engines (rollout/dispatch.py) and simulate each."""
    group = work.response_tokens.shape[1]
    costs = [predicted_tokens(p, max_tokens=work.max_tokens) for p in work.prompts]
    plan = plan_dispatch(costs, group, num_engines, dispatch)  # type: ignore[arg-type]
    runs = []
    for shards in plan:
        lengths = [int(x) for s in shards for x in work.response_tokens[s.prompt_index,
                                                                      s.first_sample:s.first_sample + s.num_samples]]
        prompts = np.full(len(lengths), work.prompt_tokens)
        runs.append(simulate_engine(prompts, np.array(lengths, dtype=np.int64), model, prefix_share=group))
    return RolloutRun(seconds=max(r.seconds for r in runs), engines=runs, gpus_per_engine=model.tp,
                      total_gpus=total_gpus)


@dataclass(kw_only=True)
class StepCosts:
    """Non-rollout seconds of one GRPO step on all 64 GPUs (the recipe's estimates; a planner may pass its own)."""

    reward_s: float = 45.0
    """Writing RM scoring (recipe: 2048 × ~3.5K tokens, 72.7B, 35 % MFU on 64 GPUs)."""
    train_s: float = 145.0
    """Old log-probs + 4 updates (recipe: 3.7e18 FLOP at 40 % MFU on 64 GPUs)."""
    sync_s: float = 20.0
    """Weight sync (recipe: 10–30 s through CUDA IPC)."""


def rollout_seconds_per_step(*, num_engines: int = 8, dispatch: str = "length_aware", prompts: int = 64,
                             group_size: int = 32, max_tokens: int = 14_000, seed: int = 0,
                             model: DecodeModel | None = None, total_gpus: int = 64) -> float:
    """Simulated rollout seconds of one step (the planner's entry point, issue 15)."""
    work = make_workload(prompts, group_size, seed=seed, max_tokens=max_tokens)
    return simulate_rollout(work, num_engines, dispatch, model or DecodeModel(), total_gpus=total_gpus).seconds


def project(*, prompts: int = 64, group_size: int = 32, nodes: int = 8, gpus_per_node: int = 8, seed: int = 0,
            costs: StepCosts | None = None, model: DecodeModel | None = None) -> dict[str, dict[str, float]]:
    """Rollout minutes per step, GPU idle share and step minutes of every variant (module docstring)."""
    model, costs = model or DecodeModel(tp=gpus_per_node), costs or StepCosts()
    work = make_workload(prompts, group_size, seed=seed)
    total, rest = nodes * gpus_per_node, costs.reward_s + costs.train_s
    out: dict[str, dict[str, float]] = {}
    for name, engines, policy in (("1_engine", 1, "length_aware"), ("8_engines_round_robin", nodes, "round_robin"),
                                  ("8_engines_length_aware", nodes, "length_aware")):
        run = simulate_rollout(work, engines, policy, model, total_gpus=total)
        step = run.seconds + rest + costs.sync_s
        out[name] = {"rollout_min_per_step": run.seconds / 60, "gpu_idle_share": run.idle_share,
                     "step_min": step / 60, "days_150_steps": 150 * step / 86400,
                     "preemptions": float(sum(e.preemptions for e in run.engines))}
    best = None
    for r in range(1, nodes // 2 + 1):  # keep ≥ half the nodes training (memory of the 32B policy + 72B RM)
        run = simulate_rollout(work, r, "length_aware", model, total_gpus=r * gpus_per_node)
        train = rest * nodes / (nodes - r)
        step = max(run.seconds + costs.sync_s, train)
        idle = 1.0 - (sum(e.seconds for e in run.engines) * gpus_per_node + train * (nodes - r) * gpus_per_node) / (
            step * total)
        if best is None or step < best["step_min"] * 60:
            best = {"rollout_min_per_step": run.seconds / 60, "gpu_idle_share": idle, "step_min": step / 60,
                    "days_150_steps": 150 * step / 86400, "rollout_nodes": float(r),
                    "preemptions": float(sum(e.preemptions for e in run.engines))}
    assert best is not None
    out["one_step_off_length_aware"] = best
    return out
