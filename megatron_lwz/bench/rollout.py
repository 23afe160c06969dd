"""``lwz bench rollout``: measured dispatch on real HF engines + the projected 8×8 rollout table.

Measured (this machine): a range-predictor-shaped workload (bench/rollout_workload.py, token counts
scaled to CPU) on ``engines`` HF rollout engines (tiny random-init Qwen2, 1 thread each); each prompt's
samples generate exactly the workload's length (per-request ``max_tokens``, an end-of-text id the
model cannot emit). Round-robin and length-aware dispatch (rollout/dispatch.py) run the same plan
shapes the GRPO loop uses; every engine's share is timed alone, one after the other, so the makespan
(the slowest engine) is what the engines would take side by side on their own hardware, free of
this shared box's core contention. Per-sample seeds make both dispatches draw the same samples —
checked, exit status 1 otherwise.

Projected: bench/rollout_sim.py (calibration and citations there) for the shipped 8×8 GRPO recipe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from megatron_lwz.bench.report import BenchResult, Column


@dataclass(kw_only=True)
class RolloutBenchConfig:
    """Flags of ``lwz bench rollout``."""

    engines: int = 2
    """HF engines for the measured part."""
    prompts: int = 16
    """Prompts of the measured workload."""
    group_size: int = 4
    """Samples per prompt (measured)."""
    max_tokens: int = 384
    """Measured response cap: the recipe's 14,000 tokens scaled to CPU (every length scales alike)."""
    repeats: int = 2
    """Timed runs per dispatch (the fastest per engine is kept)."""
    seed: int = 0
    """Workload and sampling seed."""
    project: bool = True
    """Also run the 8×8 projection."""
    threads: int = 1
    """torch intra-op threads."""
    sim_seed: int = 0
    """Workload seed of the projection."""
    overlap_iterations: int = 3
    """Iterations timed for on-policy vs one-step-off (engine in its own process); 0 = skip."""
    train_passes: int = 3
    """Forward/backward passes of the stand-in training step per iteration."""


class _NoEodTokenizer:
    """Bytes as ids; the end-of-text id lies outside the vocabulary, so lengths are the workload's."""

    eod = -1

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


def _tiny_config() -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)


def _engines(count: int) -> list[Any]:
    from megatron_lwz.rollout.hf_engine import HFRolloutEngine, build_hf_model

    model = build_hf_model(_tiny_config(), dtype="float32", init_seed=1)
    return [HFRolloutEngine(model, _NoEodTokenizer()) for _ in range(count)]


def _measure(cfg: RolloutBenchConfig, policy: str, work, engines) -> dict[str, Any]:
    import dataclasses

    from megatron_lwz.rollout.dispatch import engine_request, merge_groups, plan_dispatch, predicted_tokens
    from megatron_lwz.rollout.types import SamplingParams

    scale = work.max_tokens / 14_000  # the predictor's words → tokens, scaled like the workload
    costs = [predicted_tokens(p, max_tokens=work.max_tokens, think_tokens=round(2250 * scale),
                              tokens_per_word=1.33 * scale) for p in work.prompts]
    plan = plan_dispatch(costs, cfg.group_size, cfg.engines, policy)  # type: ignore[arg-type]
    texts = [p.question for p in work.prompts]
    base = SamplingParams(n=cfg.group_size, temperature=1.0, max_tokens=work.max_tokens, seed=cfg.seed)
    best = [float("inf")] * cfg.engines
    results: list[list] = [[] for _ in range(cfg.engines)]
    for _ in range(cfg.repeats):
        for e, shards in enumerate(plan):
            prompts, shard_texts, params = engine_request(shards, work.prompts, texts, base)
            params = [dataclasses.replace(p, max_tokens=int(work.response_tokens[s.prompt_index, 0]))
                      for p, s in zip(params, shards)]
            start = time.perf_counter()
            results[e] = engines[e].generate(prompts, shard_texts, params) if shards else []
            best[e] = min(best[e], time.perf_counter() - start)
    groups = merge_groups(work.prompts, plan, results, cfg.group_size)
    tokens = sum(len(s.response_token_ids) for g in groups for s in g.samples)
    makespan = max(best)
    return {"makespan_s": makespan, "tokens": tokens, "tokens_per_s": tokens / makespan, "engine_s": best,
            "samples": [[s.response_token_ids for s in g.samples] for g in groups]}


def _overlap(cfg: RolloutBenchConfig, work, rows: list, summary: dict) -> None:
    """Per-iteration wall time, on-policy vs one-step-off (bench/rollout_overlap.py)."""
    from megatron_lwz.bench.rollout_overlap import iteration_seconds
    from megatron_lwz.rollout.types import SamplingParams

    texts = [p.question for p in work.prompts]
    requests = [(work.prompts, texts, [SamplingParams(n=cfg.group_size, temperature=1.0, seed=cfg.seed + it,
                                                      max_tokens=int(work.response_tokens[i, 0]))
                                       for i in range(len(texts))]) for it in range(cfg.overlap_iterations)]
    times = {mode: iteration_seconds(requests, one_step_off=mode == "one_step_off", train_passes=cfg.train_passes,
                                     tiny_config=_tiny_config(), tokenizer_cls=_NoEodTokenizer)
             for mode in ("on_policy", "one_step_off")}
    base = times["on_policy"]
    rows += [{"part": "measured", "variant": f"1 HF engine process, {mode}", "iteration_s": t, "vs_round_robin": t / base}
             for mode, t in times.items()]
    summary["measured"].update({"sync_iteration_s": base, "one_step_off_iteration_s": times["one_step_off"],
                                "one_step_off_vs_sync": times["one_step_off"] / base})


def _workload(cfg: RolloutBenchConfig):
    from megatron_lwz.bench.rollout_workload import make_workload

    work = make_workload(cfg.prompts, cfg.group_size, seed=cfg.seed, scale=cfg.max_tokens / 14_000)
    work.response_tokens[:, :] = work.response_tokens[:, :1]  # one length per prompt (one request cap)
    return work


def run_rollout_bench(cfg: RolloutBenchConfig) -> BenchResult:
    """Measured round-robin vs length-aware on HF engines, then the projected table."""
    import torch

    if cfg.engines < 2:
        raise ValueError(f"--engines={cfg.engines}: the comparison needs at least 2 engines")
    torch.set_num_threads(cfg.threads)
    work, engines = _workload(cfg), _engines(cfg.engines)
    measured = {policy: _measure(cfg, policy, work, engines) for policy in ("round_robin", "length_aware")}
    same = measured["round_robin"].pop("samples") == measured["length_aware"].pop("samples")
    rr = measured["round_robin"]["makespan_s"]
    rows: list[dict[str, Any]] = [
        {"part": "measured", "variant": f"{cfg.engines} HF engines, {p}", "makespan_s": m["makespan_s"],
         "tokens_per_s": m["tokens_per_s"], "vs_round_robin": m["makespan_s"] / rr,
         "engine_s": [round(x, 3) for x in m["engine_s"]]} for p, m in measured.items()]
    summary: dict[str, Any] = {"measured": {"round_robin_makespan_s": rr,
                                            "length_aware_makespan_s": measured["length_aware"]["makespan_s"],
                                            "round_robin_tokens_per_s": measured["round_robin"]["tokens_per_s"],
                                            "length_aware_tokens_per_s": measured["length_aware"]["tokens_per_s"],
                                            "length_aware_vs_round_robin": measured["length_aware"]["makespan_s"] / rr,
                                            "samples_identical": same}}
    if cfg.overlap_iterations > 0:
        _overlap(cfg, work, rows, summary)
    if cfg.project:
        from megatron_lwz.bench.rollout_sim import project

        projected = project(seed=cfg.sim_seed)
        base = projected["1_engine"]["step_min"]
        summary["projected"] = projected
        rows += [{"part": "projected 8x8", "variant": name, "rollout_min": v["rollout_min_per_step"],
                  "idle_share": v["gpu_idle_share"], "step_min": v["step_min"], "days_150": v["days_150_steps"],
                  "vs_round_robin": v["step_min"] / base} for name, v in projected.items()]
    return BenchResult(bench="rollout", title="Rollout dispatch: measured (HF engines, CPU) and projected (8×8 H100, vLLM)",
                       columns=_COLUMNS, rows=rows, summary=summary, notes=_notes(cfg, work, same))


_COLUMNS = [Column(key="part", header="part"), Column(key="variant", header="variant"),
            Column(key="makespan_s", header="makespan s", fmt=".3f"), Column(key="iteration_s", header="iteration s", fmt=".3f"), Column(key="tokens_per_s", header="tokens/s", fmt=".0f"),
            Column(key="rollout_min", header="rollout min/step", fmt=".2f"),
            Column(key="idle_share", header="GPU idle share", fmt=".1%"), Column(key="step_min", header="step min", fmt=".2f"),
            Column(key="days_150", header="days/150 steps", fmt=".2f"), Column(key="vs_round_robin", header="ratio", fmt=".3f")]


def _notes(cfg: RolloutBenchConfig, work, same: bool) -> list[str]:
    lengths = work.response_tokens[:, 0]
    return [f"measured: {cfg.prompts} prompts × {cfg.group_size} samples, response tokens {int(lengths.min())}–"
            f"{int(lengths.max())} (mean {lengths.mean():.0f}; 14K-token cap scaled to {work.max_tokens}); ratio = "
            "makespan / round-robin's (iterations: / on-policy's). Samples identical under both dispatches: " + str(same),
            "projected: 64 prompts × 32 samples, Qwen2.5-32B bf16, vLLM TP 8 per node; ratio = step time / 1 engine's; "
            "one-step-off = R nodes generate while 8 − R train (best R); see bench/rollout_sim.py."]


__all__ = ["RolloutBenchConfig", "run_rollout_bench"]
