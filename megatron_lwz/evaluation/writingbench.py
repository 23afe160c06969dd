"""WritingBench critic scores (``lwz eval writingbench``): one judge request per (query, criterion).

Procedure (X-PLUG/WritingBench ``evaluate_benchmark.py`` + ``calculate_scores.py``; protocol presets in
``protocols.py``): for every query with a generation, each of its criteria is judged separately with
the protocol's prompt and sampling; only the response's ``<answer>`` text is shown (``answer_policy``;
the release strips everything up to ``</think>``). A reply counts when it holds a JSON object with an
integer ``score`` 1–10 and a string ``reason`` (the first such object after any reasoning, as the
release's ``extract_score_json``); otherwise it is re-asked ``judge.reask`` times, then counted as a
failed judgment and left out of the means.

Aggregation: per query, the mean of its judged criteria; per run, ``score`` = mean over queries
(the issue's definition; with five criteria per query it equals the release's mean over all criterion
scores, reported as ``score_all_criteria``), per-``domain1`` / ``domain2`` means of the query scores.
Several generation files (runs of the same system) give ``score`` = mean of the run scores and
``score_std`` over runs. Results: ``judgments.jsonl`` (every raw judgment), ``query_scores.jsonl``,
``summary.json`` (with the protocol, judge model / sampling / max tokens and generation lengths).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from megatron_lwz.evaluation.data import (
    WBQuery, judged_text, read_generation_meta, read_generations, read_writingbench)
from megatron_lwz.evaluation.judging import Asked, JudgeConfig, ask_parsed, make_client
from megatron_lwz.evaluation.protocols import WRITINGBENCH, WritingBenchProtocol
from megatron_lwz.rewards.length import AnswerPolicy, count_words
from megatron_lwz.rewards.llm_client import ChatResult, OpenAIClient, Sampling, strip_reasoning
from megatron_lwz.metrics.run_dir import prepare_run_dir
from megatron_lwz.rewards.records_io import BadRecords, write_jsonl_atomic


@dataclass(kw_only=True)
class WritingBenchConfig:
    """``lwz eval writingbench``."""

    generations: list[str]
    """Generation files (JSONL id/prompt/response), one per generation run of the same system."""
    benchmark: str
    """WritingBench query file (index, domain1, domain2, query, criteria|checklist)."""
    judge: JudgeConfig
    """The critic / LLM judge endpoint."""
    out_dir: str = "eval/writingbench"
    """Results directory (judgments, per-query scores, summary, judge cache)."""
    protocol: str = "writingbench-v1"
    """Named preset: one of protocols.WRITINGBENCH."""
    answer_policy: AnswerPolicy = "whole_text"
    """What the judge sees: the <answer> text ('whole_text' falls back to the reply minus <think>)."""
    max_queries: int | None = None
    """Judge only the first N queries (a partial result, flagged as such)."""

    def __post_init__(self) -> None:
        if self.protocol not in WRITINGBENCH:
            raise ValueError(f"protocol {self.protocol!r} is not one of {sorted(WRITINGBENCH)}")
        if not self.generations:
            raise ValueError("generations: need at least one file")


def parse_score(text: str) -> tuple[int, str] | None:
    """(score, reason) from a critic reply, or None (see module doc for the rule)."""
    body = strip_reasoning(text)
    decoder = json.JSONDecoder()
    pos = body.find("{")
    while pos >= 0:
        try:
            obj, _ = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "score" in obj and "reason" in obj:
            score, reason = obj["score"], obj["reason"]
            ok = isinstance(score, (int, float)) and not isinstance(score, bool) and score == int(score)
            if ok and 1 <= score <= 10 and isinstance(reason, str):
                return int(score), reason
            return None
        pos = body.find("{", pos + 1)
    return None


@dataclass
class _Job:
    run: int
    query: WBQuery
    criterion: dict[str, Any]


def _jobs(cfg: WritingBenchConfig, queries: list[WBQuery], bad: BadRecords, protocol: WritingBenchProtocol):
    """(jobs, conversations, generations missing per run, answer word counts per run)."""
    jobs, conversations, missing = [], [], [0] * len(cfg.generations)
    words: list[list[int]] = [[] for _ in cfg.generations]
    for run, path in enumerate(cfg.generations):
        gens = read_generations(path, bad)
        for q in queries:
            gen = gens.get(q.index)
            if gen is None:
                missing[run] += 1
                continue
            text = judged_text(gen.response, cfg.answer_policy)
            words[run].append(count_words(text))
            for criterion in q.criteria:
                jobs.append(_Job(run, q, criterion))
                conversations.append(protocol.render(criterion, q.query, text))
    return jobs, conversations, missing, words


def _judgment_record(cfg: WritingBenchConfig, job: _Job, asked: Asked) -> dict[str, Any]:
    reply = asked.reply
    score, reason = asked.parsed if asked.parsed is not None else (None, None)
    return {"run": job.run, "generations": cfg.generations[job.run], "index": job.query.index,
            "domain1": job.query.domain1, "domain2": job.query.domain2, "criterion": job.criterion.get("name"),
            "score": score, "reason": reason, "error": asked.error, "attempts": asked.attempts,
            "cached": isinstance(reply, ChatResult) and reply.cached, "prompt_tokens": asked.prompt_tokens,
            "completion_tokens": asked.completion_tokens,
            "reply": reply.text if isinstance(reply, ChatResult) else None}


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _aggregate_run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-query means, run score, domain means of one run's judgment records."""
    per_query: dict[str, list[int]] = defaultdict(list)
    domains: dict[str, tuple[str, str]] = {}
    for r in records:
        domains[r["index"]] = (r["domain1"], r["domain2"])
        if r["score"] is not None:
            per_query[r["index"]].append(r["score"])
    query_scores = {i: sum(s) / len(s) for i, s in per_query.items()}
    by1, by2 = defaultdict(list), defaultdict(list)
    for index, score in query_scores.items():
        by1[domains[index][0]].append(score)
        by2[domains[index][1]].append(score)
    return {"score": _mean(query_scores.values()),
            "score_all_criteria": _mean(r["score"] for r in records if r["score"] is not None),
            "by_domain": {d: sum(v) / len(v) for d, v in sorted(by1.items())},
            "by_domain2": {d: sum(v) / len(v) for d, v in sorted(by2.items())},
            "queries_scored": len(query_scores), "queries_unscored": len(domains) - len(query_scores),
            "judged": sum(r["score"] is not None for r in records), "failed": sum(r["score"] is None for r in records),
            "query_scores": query_scores}


def _combine_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    scores = [r["score"] for r in runs if r["score"] is not None]
    domains = sorted({d for r in runs for d in r["by_domain"]})
    return {"score": _mean(scores), "score_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "by_domain": {d: _mean(r["by_domain"][d] for r in runs if d in r["by_domain"]) for d in domains},
            "judged": sum(r["judged"] for r in runs), "failed": sum(r["failed"] for r in runs)}


def run_writingbench(cfg: WritingBenchConfig, client: OpenAIClient | None = None) -> dict[str, Any]:
    """Judge, aggregate, write the results directory; returns the summary (see module doc)."""
    protocol = WRITINGBENCH[cfg.protocol]
    out = prepare_run_dir(cfg.out_dir, cfg, is_rank0=True)  # config.yaml (resolved) + versions.json
    bad = BadRecords()
    queries = read_writingbench(cfg.benchmark, bad)[: cfg.max_queries]
    jobs, conversations, missing, words = _jobs(cfg, queries, bad, protocol)
    client = client or make_client(cfg.judge, protocol.judge_model, out)
    sampling = Sampling(temperature=_pick(cfg.judge.temperature, protocol.temperature),
                        top_p=_pick(cfg.judge.top_p, protocol.top_p),
                        max_tokens=_pick(cfg.judge.max_tokens, protocol.max_tokens))
    asked = ask_parsed(client, conversations, sampling, parse_score, reask=cfg.judge.reask, desc="WritingBench")
    records = [_judgment_record(cfg, job, a) for job, a in zip(jobs, asked)]
    write_jsonl_atomic(out / "judgments.jsonl", records)
    runs = [_aggregate_run([r for r in records if r["run"] == run]) for run in range(len(cfg.generations))]
    write_jsonl_atomic(out / "query_scores.jsonl", [{"run": i, "index": q, "score": s}
                                              for i, run in enumerate(runs) for q, s in run["query_scores"].items()])
    summary = _combine_runs(runs)
    summary.update(_provenance(cfg, protocol, client, sampling, words, missing, len(queries), bad))
    summary["score_leaderboard"] = None if summary["score"] is None else summary["score"] * protocol.leaderboard_scale
    summary["runs"] = [{k: v for k, v in r.items() if k != "query_scores"} | {"generations": cfg.generations[i]}
                       for i, r in enumerate(runs)]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def _provenance(cfg, protocol, client, sampling, words, missing, num_queries, bad) -> dict[str, Any]:
    return {"protocol": protocol.name, "protocol_detail": protocol.describe(),
            "partial": num_queries < protocol.num_queries or any(missing), "queries": num_queries, "missing_generations": missing,
            "judge": {"url": cfg.judge.url, "model": client.cfg.model, "temperature": sampling.temperature,
                      "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, "reask": cfg.judge.reask},
            "generation": [{"file": path, "answer_words_mean": _mean(words[i]), "meta": read_generation_meta(path)}
                           for i, path in enumerate(cfg.generations)],
            "usage": client.usage.as_dict(), "bad_records": bad.count, "bad_examples": bad.examples[:10]}


def _pick(value, default):
    return default if value is None else value

