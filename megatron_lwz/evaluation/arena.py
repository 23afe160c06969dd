"""Arena-Write style pairwise evaluation (``lwz eval arena``) → Bradley–Terry Elo.

Every pair of systems is compared on every prompt both answered, twice, with the order swapped
(Arena-Write: "each pair is evaluated twice with flipped order to reduce position bias"). A judgment
is one ordered comparison: verdict ``A`` = the first-shown answer wins (score 1), ``B`` = the second
wins (score 0), ``C`` = tie (½). Unusable replies are re-asked, then counted as failed and left out.

Reported: Elo of every system (``elo.py``: BT MLE, base 10, scale 400, mean 1000 or ``--anchor``) with
95 % bootstrap intervals over prompts, the win-rate matrix, ``position_bias`` = share of decisive
verdicts won by the first-shown answer (0.5 = none), ``judgments`` (usable) and ``failed``.
Results directory: ``judgments.jsonl`` (raw), ``summary.json``, ``win_rate.csv``, ``elo.png``,
``win_rate.png`` and the judge cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron_lwz.evaluation.data import Generation, judged_text, read_generation_meta, read_generations
from megatron_lwz.evaluation.elo import EloConfig, EloResult, Outcome, compute_elo
from megatron_lwz.evaluation.judging import JudgeConfig, ask_parsed, make_client
from megatron_lwz.evaluation.pairwise import ScoreFn, pair_messages, parse_verdict, rm_verdicts
from megatron_lwz.evaluation.report import plot_elo, plot_win_rate
from megatron_lwz.rewards.length import AnswerPolicy
from megatron_lwz.rewards.llm_client import ChatResult, OpenAIClient, Sampling
from megatron_lwz.metrics.run_dir import prepare_run_dir
from megatron_lwz.rewards.records_io import BadRecords, write_jsonl_atomic

SCORE = {"A": 1.0, "B": 0.0, "C": 0.5}


@dataclass(kw_only=True)
class ArenaConfig:
    """``lwz eval arena``."""

    generations: list[str]
    """One generations file per system (JSONL id/prompt/response)."""
    names: list[str] | None = None
    """System names (default: the file names without .jsonl)."""
    judge: JudgeConfig | None = None
    """LLM judge endpoint (exactly one of judge / rm_checkpoint)."""
    rm_checkpoint: str | None = None
    """Writing RM checkpoint as an offline pairwise judge (``--judge rm:CKPT``)."""
    rm_margin: float = 0.0
    """RM judge: |r_A − r_B| ≤ margin is a tie."""
    judge_prompt: str = "writing"
    """Pairwise prompt preset (pairwise.PAIR_PROMPTS)."""
    judge_temperature: float = 0.0
    """LLM judge temperature when judge.temperature is unset (greedy, like MT-Bench's judges)."""
    judge_max_tokens: int = 2048
    """LLM judge reply budget when judge.max_tokens is unset."""
    out_dir: str = "eval/arena"
    """Results directory."""
    answer_policy: AnswerPolicy = "whole_text"
    """What the judge sees of each response (the <answer> text)."""
    max_prompts: int | None = None
    """Use only the first N shared prompt ids (sorted)."""
    elo: EloConfig = field(default_factory=EloConfig)
    """Elo normalisation, virtual ties and bootstrap."""

    def __post_init__(self) -> None:
        if len(self.generations) < 2:
            raise ValueError("arena: need at least two generation files")
        if (self.judge is None) == (self.rm_checkpoint is None):
            raise ValueError("arena: give exactly one judge: an endpoint URL or rm:CHECKPOINT")
        if self.names is not None and len(self.names) != len(self.generations):
            raise ValueError(f"arena: {len(self.names)} names for {len(self.generations)} generation files")
        if self.judge is not None and not self.judge.model:
            raise ValueError("arena: the LLM judge needs a model name (--judge-model)")


def system_names(cfg: ArenaConfig) -> list[str]:
    names = list(cfg.names) if cfg.names else [Path(p).name.removesuffix(".jsonl") for p in cfg.generations]
    if len(set(names)) != len(names):
        raise ValueError(f"arena: system names must be unique, got {names} (pass --names)")
    return names


def comparisons(gens: dict[str, dict[str, Generation]], names: list[str], max_prompts: int | None):
    """Ordered (prompt id, first, second) for every pair × shared prompt × both orders."""
    out = []
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            shared = sorted(set(gens[x]) & set(gens[y]))[:max_prompts]
            for pid in shared:
                out += [(pid, x, y), (pid, y, x)]
    return out


def _question(gens, names, pid) -> str:
    return next((gens[n][pid].prompt for n in names if pid in gens[n] and gens[n][pid].prompt), "")


def _judge(cfg: ArenaConfig, comps, gens, names, out: Path, client, score_fn):
    """Per comparison: (verdict | None, judgment record fields)."""
    texts = [(_question(gens, names, p), judged_text(gens[x][p].response, cfg.answer_policy),
              judged_text(gens[y][p].response, cfg.answer_policy)) for p, x, y in comps]
    if cfg.rm_checkpoint is not None:
        score_fn = score_fn or _load_rm(cfg.rm_checkpoint)
        verdicts = rm_verdicts(score_fn, [t[0] for t in texts], [t[1] for t in texts], [t[2] for t in texts],
                               margin=cfg.rm_margin)
        return [(v, {"judge": "rm", "rm_margin_value": d, "error": None}) for v, d in verdicts], None
    client = client or make_client(cfg.judge, cfg.judge.model, out)
    sampling = Sampling(temperature=cfg.judge.temperature if cfg.judge.temperature is not None else cfg.judge_temperature,
                        top_p=cfg.judge.top_p,
                        max_tokens=cfg.judge.max_tokens if cfg.judge.max_tokens is not None else cfg.judge_max_tokens)
    conversations = [pair_messages(cfg.judge_prompt, q, a, b) for q, a, b in texts]
    asked = ask_parsed(client, conversations, sampling, parse_verdict, reask=cfg.judge.reask, desc="arena")
    rows = []
    for a in asked:
        reply = a.reply
        rows.append((a.parsed, {"judge": client.cfg.model, "error": a.error, "attempts": a.attempts,
                                "cached": isinstance(reply, ChatResult) and reply.cached,
                                "prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
                                "reply": reply.text if isinstance(reply, ChatResult) else None}))
    return rows, client


def _load_rm(checkpoint: str) -> ScoreFn:
    from megatron_lwz.evaluation.rm_judge import load_writing_rm

    return load_writing_rm(checkpoint)


def run_arena(cfg: ArenaConfig, client: OpenAIClient | None = None, score_fn: ScoreFn | None = None) -> dict[str, Any]:
    """Judge every comparison, fit Elo, write the results directory; returns the summary."""
    out = prepare_run_dir(cfg.out_dir, cfg, is_rank0=True)  # config.yaml (resolved) + versions.json
    names, bad = system_names(cfg), BadRecords()
    gens = {n: read_generations(p, bad) for n, p in zip(names, cfg.generations)}
    comps = comparisons(gens, names, cfg.max_prompts)
    if not comps:
        raise ValueError("arena: the generation files share no prompt id")
    judged, client = _judge(cfg, comps, gens, names, out, client, score_fn)
    records, outcomes = [], []
    for (pid, x, y), (verdict, extra) in zip(comps, judged):
        records.append({"prompt_id": pid, "first": x, "second": y, "verdict": verdict, **extra})
        if verdict is not None:
            outcomes.append(Outcome(pid, x, y, SCORE[verdict]))
    write_jsonl_atomic(out / "judgments.jsonl", records)
    result = compute_elo(outcomes, names, cfg.elo)
    summary = _summary(cfg, names, result, records, client, bad)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _write_win_csv(out / "win_rate.csv", names, result)
    plot_elo(names, result.elo, result.ci, out / "elo.png")
    plot_win_rate(names, result.win_rate(), out / "win_rate.png")
    return summary


def _summary(cfg, names, result: EloResult, records, client, bad) -> dict[str, Any]:
    decisive = [r for r in records if r["verdict"] in ("A", "B")]
    rate = result.win_rate()
    return {"elo": result.elo, "ci": {n: list(v) for n, v in result.ci.items()},
            "judgments": sum(r["verdict"] is not None for r in records),
            "failed": sum(r["verdict"] is None for r in records),
            "position_bias": (sum(r["verdict"] == "A" for r in decisive) / len(decisive)) if decisive else None,
            "ties": sum(r["verdict"] == "C" for r in records), "prompts": result.num_prompts,
            "win_rate": {a: {b: (None if rate[i, j] != rate[i, j] else float(rate[i, j]))
                             for j, b in enumerate(names) if j != i} for i, a in enumerate(names)},
            "elo_config": vars(cfg.elo), "bootstrap_used": result.bootstrap_used,
            "judge": ({"rm_checkpoint": cfg.rm_checkpoint, "margin": cfg.rm_margin} if cfg.rm_checkpoint else
                      {"url": cfg.judge.url, "model": cfg.judge.model, "prompt": cfg.judge_prompt}),
            "usage": client.usage.as_dict() if client is not None else None,
            "generation": {n: {"file": p, "meta": read_generation_meta(p)} for n, p in zip(names, cfg.generations)},
            "bad_records": bad.count, "bad_examples": bad.examples[:10]}


def _write_win_csv(path: Path, names: list[str], result: EloResult) -> None:
    rate = result.win_rate()
    lines = [",".join(["row_vs_col", *names])]
    for i, name in enumerate(names):
        lines.append(",".join([name, *("" if rate[i, j] != rate[i, j] else f"{rate[i, j]:.4f}" for j in range(len(names)))]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
