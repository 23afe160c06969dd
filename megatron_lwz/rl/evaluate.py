"""Held-out evaluation of the GRPO policy (``rl.eval``, see ``rl.config.EvalConfig``).

The policy after ``s`` updates answers the same held-out prompts with the same sampling seed every
time (greedy by default), through the rollout engine that produced the training samples — so the
weights it evaluates are exactly the synced ones. Answers are scored by the training reward
components (Length Eq. 3, Writing RM, Format) with ``overlong.policy = 'none'``: each answer is scored
as written, a truncated one included, since an evaluation has no group to take a 'worst' value from.
Logged at step ``s`` as ``eval/reward/<name>/mean``, ``eval/reward/total/mean`` (Eq. 5 weights),
``eval/rollout/length_in_range_frac``…, and the answers dumped to ``<run_dir>/eval/step_XXXXX.jsonl``.

Split in two for the loop: ``generate`` while the engine is awake (before the training rollout),
``report`` once it sleeps (vLLM frees its memory before the Writing RM scores).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from megatron_lwz.rewards.composite import RewardScorer, WritingScorer
from megatron_lwz.rl.metrics import dump_samples, rollout_metrics
from megatron_lwz.rl.prompts import PromptDataConfig, load_prompts
from megatron_lwz.rl.step import rollout
from megatron_lwz.rollout.types import RolloutGroup, SamplingParams


class Evaluator:
    """Generates and scores the held-out set when ``rl.eval`` says it is due; inert without ``rl.eval.path``."""

    def __init__(self, cfg, engine, engine_kind: str, ctx, score_writing: WritingScorer | None) -> None:
        self.cfg, self.engine, self.engine_kind, self.ctx = cfg, engine, engine_kind, ctx
        self.eval = cfg.rl.eval
        self.prompts = []
        if self.eval.path is not None:
            data = PromptDataConfig(path=self.eval.path, template=cfg.prompts.template, max_prompts=self.eval.max_prompts)
            self.prompts = load_prompts(data, field="rl.eval.path").records
        as_written = dataclasses.replace(cfg.reward.overlong, policy="none")
        self.scorer = RewardScorer(dataclasses.replace(cfg.reward, overlong=as_written, num_workers=0),
                                   score_writing=score_writing)
        self.weights = cfg.reward.weight_vector()
        self._generate_s = 0.0

    def params(self, cfg, step: int, dp_rank: int) -> SamplingParams:
        """The same seed at every evaluation (per DP rank), so only the weights change between them."""
        rl = cfg.rl
        return SamplingParams(n=self.eval.samples_per_prompt, temperature=self.eval.temperature, top_p=rl.top_p,
                              max_tokens=rl.max_tokens, stop=list(rl.stop), seed=self.eval.seed + 1000 * dp_rank,
                              logprobs=False)

    def generate(self, step: int) -> list[RolloutGroup]:
        """Answers of the policy after ``step`` updates when an evaluation is due, else []."""
        if not self.prompts or not self.eval.due(step, self.cfg.rl.num_steps):
            return []
        start = time.perf_counter()
        groups = rollout(self.engine, self.engine_kind, self.prompts, self.cfg, step, self.ctx, params=self.params)
        self._generate_s = time.perf_counter() - start
        return groups

    def report(self, groups: list[RolloutGroup], step: int, logger, run_dir: Path) -> dict[str, float]:
        """Score ``groups`` (every rank: the Writing RM is collective), log ``eval/*`` at ``step``, dump answers."""
        if not groups:
            return {}
        self.engine.sleep()  # idempotent; vLLM frees its memory before the Writing RM runs
        start = time.perf_counter()
        metrics = self.scorer.score(groups)
        metrics.update(rollout_metrics(groups, self.weights))
        out = {f"eval/{k}": v for k, v in metrics.items()}
        out.update({"eval/time/generate_s": self._generate_s, "eval/time/score_s": time.perf_counter() - start})
        logger.log(step, out, echo=False)
        if self.ctx.is_rank0:
            print(f"eval @ step {step}: total={out['eval/reward/total/mean']:.4f} "
                  f"in_range={out['eval/rollout/length_in_range_frac']:.3f} ({len(groups)} prompts)", flush=True)
            dump_samples(groups, run_dir / "eval" / f"step_{step:05d}.jsonl", -1, step)
        return out
