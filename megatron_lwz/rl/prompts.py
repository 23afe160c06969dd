"""RL prompt dataset: JSONL / parquet records with a predicted length range → PromptRecords.

Records need ``question`` (or ``prompt``) and ``length_lower``/``length_upper`` (from
``lwz data predict-length``); ``prompt_id`` and ``language`` are derived when absent (language
by CJK detection, as the paper's template choice). Optional: ``reference`` (a reference answer, for
``reward.pairwise.opponent=reference``) and ``criteria`` (a WritingBench rubric, for ``reward.rubric``).
Unfulfillable ranges [0, 0] are dropped by default (paper §1.3). Malformed records are counted and reported with file:line, never fatal.
The stream is an endless sequence of per-epoch shuffles; the only progress state is the number
of prompts consumed (stored in the checkpoint), so a resumed run sees exactly the same prompts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from megatron_lwz.config.base import ConfigError
from megatron_lwz.data.stream import record_skip, shuffled_stream
from megatron_lwz.rollout.types import PromptRecord
from megatron_lwz.rollout.templates import is_chinese


@dataclass(kw_only=True)
class PromptDataConfig:
    """Where RL prompts come from and how they are templated."""

    path: str
    """JSONL (.jsonl/.jsonl.gz) or parquet file of prompt records."""
    template: Literal["think", "direct"] = "think"
    """'think' = the paper's think prompt (EN/ZH by CJK detection); 'direct' = the Direct-Answer ablation."""
    drop_unfulfillable: bool = True
    """Drop records whose range is [0, 0] (the predictor's 'cannot be fulfilled / too long')."""
    shuffle_seed: int = 1234
    """Seed of the per-epoch shuffle."""
    max_prompts: int | None = None
    """Keep only the first N usable records (a fixed subset: smoke tests, the CPU demo); null = all."""

    def __post_init__(self) -> None:
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ConfigError(f"prompts.max_prompts: must be ≥ 1 or null, got {self.max_prompts}")


@dataclass
class PromptSet:
    records: list[PromptRecord]
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def _rows(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield i, row
        return
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if line.strip():
                yield i, line


def _record(raw, lineno: int) -> PromptRecord:
    rec = json.loads(raw) if isinstance(raw, str) else raw
    question = rec.get("question", rec.get("prompt"))
    if not isinstance(question, str) or not question.strip():
        raise KeyError("question")
    lower, upper = int(rec["length_lower"]), int(rec["length_upper"])
    if lower < 0 or upper < lower:
        raise ValueError(f"bad length range [{lower}, {upper}]")
    pid = rec.get("prompt_id") or hashlib.sha1(question.encode()).hexdigest()[:16]
    lang = rec.get("language") or ("zh" if is_chinese(question) else "en")
    reference = rec.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise TypeError(f"'reference' must be a string, got {type(reference).__name__}")
    criteria = rec.get("criteria")
    if criteria is not None:
        from megatron_lwz.rewards.rubric import parse_criteria

        criteria = parse_criteria(criteria, "criteria")
    return PromptRecord(prompt_id=str(pid), question=question, length_lower=lower, length_upper=upper, language=lang,
                        reference=reference or None, criteria=criteria)


def load_prompts(cfg: PromptDataConfig, field: str = "prompts.path") -> PromptSet:
    """Usable records of ``cfg.path`` (``field`` names the config entry in errors)."""
    path = Path(cfg.path)
    if not path.is_file():
        raise FileNotFoundError(f"{field}: {path} does not exist")
    out = PromptSet(records=[])
    for lineno, raw in _rows(path):
        try:
            rec = _record(raw, lineno)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            record_skip(out.skipped, out.examples, f"{path}:{lineno}", err)
            continue
        if cfg.drop_unfulfillable and rec.length_upper == 0:
            out.skipped["unfulfillable"] = out.skipped.get("unfulfillable", 0) + 1
            continue
        out.records.append(rec)
        if cfg.max_prompts is not None and len(out.records) == cfg.max_prompts:
            break
    if not out.records:
        raise ValueError(f"{path}: no usable prompts ({out.skipped}); examples: {out.examples}")
    return out


def prompt_batch(records: list[PromptRecord], seed: int, consumed: int, count: int) -> list[PromptRecord]:
    """Prompts ``consumed .. consumed+count`` of the endless per-epoch-shuffled stream."""
    return [records[i] for i in shuffled_stream(len(records), seed, consumed, count)]
