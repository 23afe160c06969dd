"""Synthetic run directories in the layout `lwz grpo` writes (config.yaml, metrics.jsonl, eval dumps)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

PROMPTS = [f"p{i:02d}" for i in range(24)]
RANGE = (100, 200)


def write_run(run_dir: Path, scores: dict[int, dict[str, float]], *, words: dict[str, int] | None = None) -> Path:
    """One run: ``scores[step][prompt_id]`` is the length reward of that prompt's answer (format 1, writing 0.5)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"reward": {"components": ["length", "writing", "format"]}}))
    rows = []
    for step, per_prompt in scores.items():
        (run_dir / "eval").mkdir(exist_ok=True)
        with open(run_dir / "eval" / f"step_{step:05d}.jsonl", "w") as fh:
            for pid, value in per_prompt.items():
                fh.write(json.dumps({"step": step, "prompt_id": pid, "length_range": list(RANGE),
                                     "answer_words": (words or {}).get(pid, 150),
                                     "rewards": {"length": value, "writing": 0.5, "format": 1.0}}) + "\n")
        rows.append({"step": step, "eval/reward/total/mean": 0.0})
        rows.append({"step": step + 1, "reward/total/mean": sum(per_prompt.values()) / len(per_prompt)})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def study_runs(root: Path, effect: float, seeds: int, *, seed_effects: list[float] | None = None,
               noise: float = 0.1, rng_seed: int = 0) -> dict[str, dict[int, Path]]:
    """Baseline 'a' and variant 'b'; b's last-step length reward = a's + effect (+ seed_effects[s]) + noise."""
    rng = random.Random(rng_seed)
    out: dict[str, dict[int, Path]] = {"a": {}, "b": {}}
    for s in range(seeds):
        prompt_level = {p: rng.gauss(0.5, 0.15) for p in PROMPTS}  # prompt difficulty, shared by both arms
        for arm, shift in (("a", 0.0), ("b", effect + (seed_effects[s] if seed_effects else 0.0))):
            first = {p: prompt_level[p] - 0.2 for p in PROMPTS}
            last = {p: prompt_level[p] + shift + rng.gauss(0.0, noise) for p in PROMPTS}
            out[arm][s] = write_run(root / arm / f"seed{s}", {0: first, 8: last})
    return out
