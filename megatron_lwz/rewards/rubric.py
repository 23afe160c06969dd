"""Query-only rubric reward (``reward.rubric``), beyond the paper (after IP-GRM).

Per prompt, one rubric is written from the prompt alone — before any answer is seen, so no answer can
steer it — or taken from the prompt file (``criteria`` in the WritingBench format: a list of
``{name, criteria_description, "1-2", "3-4", "5-6", "7-8", "9-10"}``). Generated rubrics are cached on
disk, one JSON file per prompt keyed by the SHA-256 of the question (``cache_dir``; default
``<run_dir>/rubrics``, so a resumed run asks for no rubric twice). A failed or unparseable rubric is not
cached (asked again next time) and its prompt's samples fail this component for the step.

Each answer is then scored on every criterion, 1–10, in one judge request: the judge replies with
JSON ``{"scores": [s_1, …, s_K]}`` (criterion order; a ``{name: score}`` mapping is accepted too).
Reward = (mean_k s_k − 1) / 9 ∈ [0, 1] (the normalised mean).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.judge import ChatClient, JudgeStats, Message, ask
from megatron_lwz.rewards.length import AnswerPolicy, extract_answer
from megatron_lwz.rewards.llm_client import LLMError, extract_json
from megatron_lwz.rollout.types import Sample

SCALE_KEYS = ("1-2", "3-4", "5-6", "7-8", "9-10")


@dataclass(kw_only=True)
class RubricConfig:
    """Rubric reward: rubric generation (from the prompt alone), its cache, and answer scoring."""

    num_criteria: int = 5
    """Criteria requested per generated rubric (WritingBench uses 5)."""
    cache_dir: str | None = None
    """Directory of generated rubrics (one JSON per prompt); null = <logging.run_dir>/rubrics."""
    answer_policy: AnswerPolicy = "well_formed"
    """How the scored answer is extracted from a response ('' when there is none)."""

    def __post_init__(self) -> None:
        if not 1 <= self.num_criteria <= 20:
            raise ConfigError(f"reward.rubric.num_criteria must be in [1, 20], got {self.num_criteria}")


def parse_criteria(value: Any, where: str = "criteria") -> tuple[dict[str, str], ...]:
    """Validate a WritingBench criteria list; raises ValueError naming ``where`` and the bad entry."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list of criteria, got {str(value)[:80]!r}")
    out = []
    for k, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                not isinstance(item.get("criteria_description"), str):
            raise ValueError(f"{where}[{k}]: need 'name' and 'criteria_description' strings")
        out.append({key: str(item[key]) for key in ("name", "criteria_description", *SCALE_KEYS) if key in item})
    return tuple(out)


def rubric_key(question: str) -> str:
    return hashlib.sha256(question.encode("utf-8")).hexdigest()


def generation_messages(question: str, num_criteria: int) -> list[Message]:
    """The rubric-writing conversation: the request only, never an answer."""
    system = ("You write evaluation rubrics for writing tasks. From the user's writing request alone, "
              f"write exactly {num_criteria} criteria specific to this request that a strong answer must "
              "meet (content, structure, style, explicit constraints). Reply with JSON only: "
              '{"criteria": [{"name": "...", "criteria_description": "...", "1-2": "...", "3-4": "...", '
              '"5-6": "...", "7-8": "...", "9-10": "..."}]} where each score band says what earns it.')
    return [{"role": "system", "content": system}, {"role": "user", "content": f"[Writing request]\n{question}"}]


def scoring_messages(question: str, criteria: Sequence[dict[str, str]], answer: str) -> list[Message]:
    """The per-answer scoring conversation: every criterion scored 1–10 in one reply."""
    lines = []
    for k, c in enumerate(criteria, start=1):
        bands = "; ".join(f"{band}: {c[band]}" for band in SCALE_KEYS if band in c)
        lines.append(f"{k}. {c['name']}: {c['criteria_description']}" + (f" ({bands})" if bands else ""))
    system = ("You are a strict judge of writing. Score the response on each criterion from 1 to 10 using "
              "its description and score bands. Reply with JSON only: "
              f'{{"scores": [s_1, ..., s_{len(criteria)}]}} in criterion order.')
    user = f"[Writing request]\n{question}\n\n[Criteria]\n" + "\n".join(lines) + f"\n\n[Response]\n{answer}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_scores(text: str, criteria: Sequence[dict[str, str]]) -> list[float]:
    """Scores in criterion order from a judge reply; LLMError when missing, incomplete or out of [1, 10]."""
    reply = extract_json(text)
    raw = reply.get("scores") if isinstance(reply, dict) else None
    if isinstance(raw, dict):
        raw = [raw.get(c["name"]) for c in criteria]
    if not isinstance(raw, list) or len(raw) != len(criteria):
        raise LLMError(f"rubric judge: expected {len(criteria)} scores, got {str(raw)[:120]!r}")
    scores = []
    for s in raw:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 1 <= s <= 10:
            raise LLMError(f"rubric judge: score {s!r} is not a number in [1, 10]")
        scores.append(float(s))
    return scores


class RubricCache:
    """Generated rubrics on disk (``<dir>/<sha256(question)>.json``), written atomically."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def get(self, question: str) -> tuple[dict[str, str], ...] | None:
        path = self.dir / f"{rubric_key(question)}.json"
        try:
            return parse_criteria(json.loads(path.read_text(encoding="utf-8"))["criteria"], str(path))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, question: str, criteria: Sequence[dict[str, str]]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{rubric_key(question)}.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"question": question, "criteria": list(criteria)}, ensure_ascii=False, indent=1),
                       encoding="utf-8")
        os.replace(tmp, path)


class RubricChannel:
    """Fills one normalised rubric score per sample (or an error string) for groups of scored samples."""

    name = "rubric"
    collective = False

    def __init__(self, cfg: RubricConfig, client: ChatClient, cache_dir: str | Path) -> None:
        self.cfg, self.client = cfg, client
        self.cache = RubricCache(cache_dir)
        self.stats = JudgeStats()

    def rubrics(self, groups: Sequence[Sequence[Sample]]) -> tuple[dict[str, Any], dict[str, float]]:
        """question → criteria (or an error string) for every prompt of the rollout."""
        found: dict[str, Any] = {}
        supplied = cached = 0
        for samples in groups:
            prompt = samples[0].prompt if samples else None
            if prompt is None or prompt.question in found:
                continue
            if getattr(prompt, "criteria", None):
                found[prompt.question], supplied = tuple(prompt.criteria), supplied + 1
            elif (hit := self.cache.get(prompt.question)) is not None:
                found[prompt.question], cached = hit, cached + 1
        todo = [q for q in dict.fromkeys(s[0].prompt.question for s in groups if s) if q not in found]
        texts = ask(self.client, [generation_messages(q, self.cfg.num_criteria) for q in todo], self.stats)
        for question, text in zip(todo, texts):
            try:
                if isinstance(text, LLMError):
                    raise text
                reply = extract_json(text)
                found[question] = parse_criteria(reply.get("criteria") if isinstance(reply, dict) else None, "rubric")
                self.cache.put(question, found[question])
            except (LLMError, ValueError) as err:
                found[question] = f"rubric generation failed: {err}"
        return found, {"reward/rubric/generated": float(len(todo)), "reward/rubric/cache_hits": float(cached),
                       "reward/rubric/supplied": float(supplied),
                       "reward/rubric/failed_rubrics": float(sum(isinstance(v, str) for v in found.values()))}

    def score(self, groups: Sequence[Sequence[Sample]]) -> tuple[list[list[float | str]], dict[str, float]]:
        """Normalised mean criterion score per sample and ``reward/rubric/*`` metrics."""
        found, metrics = self.rubrics(groups)
        jobs, convs = [], []
        values: list[list[float | str]] = [[0.0] * len(samples) for samples in groups]
        for g, samples in enumerate(groups):
            for i, sample in enumerate(samples):
                criteria = found[sample.prompt.question]
                if isinstance(criteria, str):
                    values[g][i] = criteria
                    continue
                answer = extract_answer(sample.response_text, self.cfg.answer_policy) or ""
                jobs.append((g, i, criteria))
                convs.append(scoring_messages(sample.prompt.question, criteria, answer))
        texts = ask(self.client, convs, self.stats)
        failed, means = 0, []
        for (g, i, criteria), text in zip(jobs, texts):
            try:
                scores = parse_scores(text, criteria) if not isinstance(text, LLMError) else None
                if scores is None:
                    raise text
                means.append(statistics.fmean(scores))
                values[g][i] = (means[-1] - 1.0) / 9.0
            except LLMError as err:
                failed += 1
                values[g][i] = f"rubric judgment failed: {err}"
        metrics.update({"reward/rubric/judgments": float(len(jobs)), "reward/rubric/failed_judgments": float(failed),
                        "reward/rubric/criterion_score_mean": statistics.fmean(means) if means else float("nan")})
        metrics.update(self.stats.take("reward/rubric/judge"))
        return values, metrics
