"""``lwz data split-prompts``: hold out RL prompts for ``rl.eval``, disjoint from training by text.

Input: a ``lwz data predict-length`` output (one ``{question, length_lower, length_upper, …}`` per
line). Two prompts are the *same text* when their questions agree after Unicode NFKC, case folding
and whitespace collapsing (:func:`text_key`); every copy of a text goes to the same side, so no
held-out question is ever trained on, however the dump duplicated it. Held-out prompts are drawn
uniformly (seeded) among the *usable* texts — a valid range other than the unfulfillable [0, 0],
which GRPO drops anyway — one record per text; the training file keeps every other record as read
(its order included). Malformed lines are counted, shown as ``file:line: why`` and skipped.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_lwz.rewards.records_io import BadRecords, iter_records, write_jsonl_atomic


@dataclass(kw_only=True)
class SplitConfig:
    """How many prompts to hold out and where both halves go."""

    heldout: int = 128
    """Number of distinct held-out texts (the GRPO recipe's ``rl.eval`` set)."""
    seed: int = 1234
    """Seed of the held-out draw (the same input and seed give the same split)."""
    question_key: str = "question"
    """Record field holding the prompt text."""


def text_key(question: str) -> str:
    """The identity of a prompt text: NFKC, casefolded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split())


def _usable(record: dict[str, Any]) -> bool:
    lower, upper = record.get("length_lower"), record.get("length_upper")
    return isinstance(lower, int) and isinstance(upper, int) and 0 <= lower <= upper and upper > 0


def split_prompts(input_path: str | Path, train_out: str | Path, heldout_out: str | Path,
                  cfg: SplitConfig) -> dict[str, Any]:
    """Write the two files; returns a summary (counts, languages, skipped lines)."""
    paths = {Path(input_path).resolve(), Path(train_out).resolve(), Path(heldout_out).resolve()}
    if len(paths) != 3:
        raise ValueError("split-prompts: --input, --train-out and --heldout-out must be three different files")
    bad, records = BadRecords(), []
    for where, raw in iter_records(input_path, bad):
        question = raw.get(cfg.question_key)
        if not isinstance(question, str) or not question.strip():
            bad.add(where, f"missing or empty '{cfg.question_key}'")
            continue
        records.append((text_key(question), raw))
    usable = sorted({key for key, raw in records if _usable(raw)})
    if len(usable) < cfg.heldout:
        raise ValueError(f"{input_path}: {len(usable)} distinct usable prompts, fewer than --heldout {cfg.heldout}")
    chosen = set(random.Random(cfg.seed).sample(usable, cfg.heldout))
    heldout, train, seen = [], [], set()
    for key, raw in records:
        if key not in chosen:
            train.append(raw)
        elif key not in seen:
            seen.add(key)
            heldout.append(raw)
    write_jsonl_atomic(train_out, train)
    write_jsonl_atomic(heldout_out, heldout)
    languages: dict[str, int] = {}
    for raw in heldout:
        lang = str(raw.get("language", "?"))
        languages[lang] = languages.get(lang, 0) + 1
    return {"input": str(input_path), "records": len(records), "distinct_texts": len({k for k, _ in records}),
            "train": len(train), "train_out": str(train_out), "heldout": len(heldout), "heldout_out": str(heldout_out),
            "heldout_languages": languages, "duplicates_of_heldout_dropped": sum(k in chosen for k, _ in records)
            - len(heldout), "bad_records": bad.count, "bad_examples": bad.examples}
