"""Target length ranges [L_lower, L_upper] for RL prompts (paper.md §1.3): explicit requests first,
then the paper's QwQ-32B range prompt through any generator, cached into the prompt dataset.

Order per record:
1. an existing valid ``length_lower``/``length_upper`` (from the input, or from a previous run's
   output: reruns skip finished records) is kept (``length_source`` unchanged or 'given');
2. ``parse_explicit_length`` (±10% rules; ``length_source = 'explicit'``);
3. the paper's prompt (``build_range_prompt``) sent to a ``generate(prompts) -> texts`` callable
   (an OpenAI-compatible endpoint through ``OpenAIClient.generate``, or our own rollout engine);
   replies are parsed by ``parse_range_reply`` and validated (``validate_range``); invalid replies are
   re-asked up to ``attempts`` times (``length_source = 'llm'``);
4. otherwise ``length_source = 'failed'`` with ``length_error``, no range (a rerun retries it).

Validation of LLM ranges (the prompt's own rules): integers, 0 ≤ lower ≤ upper ≤ 12,000,
upper − lower ≤ 3,000. Bounds that are not multiples of 100 are rounded outward (lower down, upper up)
rather than rejected, then re-checked. ``[0, 0]`` is valid: "unfulfillable", kept in the file, dropped
from RL data by ``read_prompt_records``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from megatron_lwz.rewards.length import PREDICTOR_MAX_UPPER, detect_language
from megatron_lwz.rewards.length_parse import parse_explicit_length
from megatron_lwz.rewards.llm_client import EndpointConfig, extract_json, strip_reasoning
from megatron_lwz.rewards.records_io import BadRecords, iter_records, stable_prompt_id, write_jsonl_atomic

logger = logging.getLogger(__name__)

RANGE_PROMPT_TEMPLATE = """You are a professional query text–length assessor. Based on the type of the query content, you should:
1. Deeply understand the core requirement of the query (e.g., essay, blog post, summary, outline, thesis section, etc.). For example, the query "How do I start writing my thesis from scratch" asks for guidance on "how to begin writing a thesis," so you would estimate a word-count range of [400, 800], rather than the total words needed to complete the entire thesis [7000, 10000].
2. Choose a lower bound that is a multiple of 100, with a minimum of 0.
3. Choose an upper bound that is a multiple of 100, with a maximum of 12,000. If the reasonable range certainly exceeds these limits, output: {"range": [0, 0]}
4. Ignore the 10% of extreme length cases to keep the range reasonable for most scenarios, and ensure the difference between upper and lower bounds does not exceed 3,000.
5. If the query contains an explicit word-count requirement, set the range to ±10% of that number. - For "write a 2,000-word essay," output: {"range": [1800, 2200]} - For "no more than 2,000 words," output [1800, 2000]; for "at least 2,000 words," output [2000, 2200].
6. If the query cannot be fulfilled under the given conditions—for example, "Read and analyze this paper" without providing the paper, or "Analyze a project's prospects" without specifying the project details—then output: {"range": [0, 0]}
Example:
Input "Write a high school essay" → {"range": [800, 1000]}
Input "Complete an academic paper on green cities" → {"range": [6000, 10000]}
Please process the current query: User Query
Analyze and output the JSON range accordingly."""
"""The paper's range-assessor prompt, verbatim (paper.md §1.3); "User Query" is the query slot."""
QUERY_SLOT = "Please process the current query: User Query"
MAX_RANGE_WIDTH = 3000
DONE_SOURCES = frozenset({"given", "explicit", "llm"})
_RANGE_FALLBACK_RE = re.compile(r"\[\s*(\d[\d,]*)\s*,\s*(\d[\d,]*)\s*\]")

TextGenerator = Callable[[list[str]], Sequence[Any]]
"""``generate(prompts) -> texts``; an element may be an Exception for a prompt that failed."""


class RangeError(ValueError):
    """An LLM reply holds no valid length range."""


def build_range_prompt(query: str) -> str:
    """The paper's prompt with ``query`` in the "User Query" slot."""
    return RANGE_PROMPT_TEMPLATE.replace(QUERY_SLOT, f"Please process the current query: {query}")


def validate_range(lower: Any, upper: Any) -> tuple[int, int]:
    """Check an LLM range against the prompt's rules; rounds outward to multiples of 100."""
    if isinstance(lower, float) and lower.is_integer():
        lower = int(lower)
    if isinstance(upper, float) and upper.is_integer():
        upper = int(upper)
    if not (isinstance(lower, int) and isinstance(upper, int)) or isinstance(lower, bool) or isinstance(upper, bool):
        raise RangeError(f"range bounds must be integers, got {lower!r}, {upper!r}")
    if not 0 <= lower <= upper:
        raise RangeError(f"need 0 <= lower <= upper, got [{lower}, {upper}]")
    lower, upper = lower // 100 * 100, -(-upper // 100) * 100
    if upper > PREDICTOR_MAX_UPPER:
        raise RangeError(f"upper {upper} exceeds the {PREDICTOR_MAX_UPPER} cap (the prompt asks for [0, 0] then)")
    if upper - lower > MAX_RANGE_WIDTH:
        raise RangeError(f"range [{lower}, {upper}] is wider than {MAX_RANGE_WIDTH}")
    return lower, upper


def parse_range_reply(text: str) -> tuple[int, int]:
    """The validated range in a predictor reply (JSON ``{"range": [lo, hi]}`` after any reasoning)."""
    obj = extract_json(text)
    if isinstance(obj, dict) and "range" in obj:
        value = obj["range"]
        if not (isinstance(value, list) and len(value) == 2):
            raise RangeError(f'"range" must be a two-item list, got {value!r}')
        return validate_range(value[0], value[1])
    matches = _RANGE_FALLBACK_RE.findall(strip_reasoning(text))  # e.g. a bare "[1800, 2200]" (rule 5)
    if not matches:
        raise RangeError(f"no range found in reply: {text[-200:]!r}")
    lower, upper = (int(v.replace(",", "")) for v in matches[-1])
    return validate_range(lower, upper)


@dataclass(kw_only=True)
class LengthPredictorConfig:
    """How ``lwz data predict-length`` fills length ranges."""

    question_key: str = "question"
    """Field of each input record holding the raw user request."""
    use_explicit_parser: bool = True
    """Try the deterministic explicit-request parser before the LLM."""
    attempts: int = 3
    """LLM queries per prompt until its reply holds a valid range."""
    batch_size: int = 256
    """Prompts per generate() call (results are checkpointed to <output>.partial after each batch)."""
    endpoint: EndpointConfig | None = None
    """OpenAI-compatible endpoint; None = explicit parser only (or pass generate= in Python)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes copied into the summary (e.g. the model that produced the ranges)."""


def _has_range(record: dict[str, Any]) -> bool:
    lo, hi = record.get("length_lower"), record.get("length_upper")
    return isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi


def predict_with_llm(questions: Sequence[str], generate: TextGenerator, attempts: int = 3
                     ) -> list[tuple[int, int] | str]:
    """Range (or an error message) per question; invalid replies are re-asked ``attempts`` times."""
    results: list[tuple[int, int] | str] = ["not attempted"] * len(questions)
    pending = list(range(len(questions)))
    for _ in range(max(1, attempts)):
        if not pending:
            break
        replies = generate([build_range_prompt(questions[i]) for i in pending])
        if len(replies) != len(pending):
            raise RuntimeError(f"generate() returned {len(replies)} texts for {len(pending)} prompts")
        still = []
        for i, reply in zip(pending, replies):
            try:
                if isinstance(reply, BaseException):
                    raise RangeError(f"request failed: {reply}")
                results[i] = parse_range_reply(str(reply))
            except RangeError as err:
                results[i] = str(err)
                still.append(i)
        pending = still
    return results


def _annotate(record: dict[str, Any], question: str) -> dict[str, Any]:
    record.setdefault("prompt_id", stable_prompt_id(question))
    if record.get("language") not in ("en", "zh"):
        record["language"] = detect_language(question)
    return record


def _load_cache(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}
    for path in paths:
        if path.exists():
            for _, record in iter_records(path, BadRecords()):
                if _has_range(record) and record.get("length_source") in DONE_SOURCES and "prompt_id" in record:
                    cache[str(record["prompt_id"])] = record
    return cache


def _resolve_locally(records: list[dict[str, Any]], questions: list[str], cache: dict[str, dict[str, Any]],
                     cfg: LengthPredictorConfig, counts: dict[str, int]) -> list[int]:
    """Fill records from the input itself, the cache and the explicit parser; return the rest."""
    todo = []
    for i, (record, question) in enumerate(zip(records, questions)):
        cached = cache.get(str(record["prompt_id"]))
        if _has_range(record):
            record.setdefault("length_source", "given")
            counts["given"] += 1
        elif cached is not None:
            record.update({k: cached[k] for k in ("length_lower", "length_upper", "length_source")})
            counts["cached"] += 1
        elif cfg.use_explicit_parser and (found := parse_explicit_length(question)) is not None:
            record.update(length_lower=found.lower, length_upper=found.upper, length_source="explicit")
            counts["explicit"] += 1
        else:
            todo.append(i)
    return todo


def predict_file(input_path: str | Path, output_path: str | Path, cfg: LengthPredictorConfig,
                 generate: TextGenerator | None = None) -> dict[str, Any]:
    """JSONL in → JSONL out with length_lower/length_upper/length_source/language; returns a summary."""
    output_path = Path(output_path)
    partial = output_path.with_name(output_path.name + ".partial")
    bad = BadRecords()
    records, questions = [], []
    for where, record in iter_records(input_path, bad):
        question = record.get(cfg.question_key)
        if not isinstance(question, str) or not question.strip():
            bad.add(where, f"missing or empty '{cfg.question_key}'")
            continue
        records.append(_annotate(record, question))
        questions.append(question)
    cache = _load_cache([output_path, partial])
    counts = {"given": 0, "cached": 0, "explicit": 0, "llm": 0, "failed": 0}
    todo = _resolve_locally(records, questions, cache, cfg, counts)
    if todo and generate is None:
        logger.warning("%d records need the LLM predictor but no endpoint/generator was given", len(todo))
    with open(partial, "a", encoding="utf-8") as checkpoint:
        for start in range(0, len(todo) if generate is not None else 0, cfg.batch_size):
            chunk = todo[start:start + cfg.batch_size]
            results = predict_with_llm([questions[i] for i in chunk], generate, cfg.attempts)
            for i, result in zip(chunk, results):
                if isinstance(result, tuple):
                    records[i].update(length_lower=result[0], length_upper=result[1], length_source="llm")
                    checkpoint.write(json.dumps(records[i], ensure_ascii=False) + "\n")
                    counts["llm"] += 1
                else:
                    records[i].update(length_source="failed", length_error=result)
            checkpoint.flush()
            logger.info("predict-length: %d/%d LLM prompts done", min(start + len(chunk), len(todo)), len(todo))
    for record in records:
        if _has_range(record):
            record.pop("length_error", None)
        elif record.get("length_source") != "failed":
            record["length_source"] = "unresolved"  # needs the LLM, none was given
    counts["failed"] = sum(1 for r in records if r["length_source"] == "failed")
    counts["unresolved"] = sum(1 for r in records if r["length_source"] == "unresolved")
    write_jsonl_atomic(output_path, records)
    partial.unlink(missing_ok=True)
    unfulfillable = sum(1 for r in records if r.get("length_lower") == 0 and r.get("length_upper") == 0)
    return {"input": str(input_path), "output": str(output_path), "records": len(records),
            "bad_records": bad.count, "bad_examples": bad.examples, "unfulfillable": unfulfillable,
            **counts, **cfg.extra}
