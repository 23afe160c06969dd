"""Evaluation inputs: generation files, WritingBench query files, prompt / length files.

Every reader counts malformed lines in a ``BadRecords`` (``file:line: why``) and skips them.

* Generation files (what ``lwz eval generate`` writes, or any model's outputs): JSONL with ``id``,
  ``prompt`` and ``response``. A sidecar ``<file>.meta.json`` (written by ``lwz eval generate``) records
  how they were produced (checkpoint, template, sampling, max_tokens); evaluations copy it into their
  results. Ids are compared as strings (WritingBench's integer ``index`` 7 matches generation id "7").
* Prompt files: JSONL whose id is the first of ``id`` / ``index`` / ``idx`` present (else ``line-N``,
  the record number) and whose text is the first of ``prompt`` / ``query`` / ``question`` present —
  WritingBench, Arena-Write and LongBench-Write files are read as they are published.
* WritingBench: ``index``, ``domain1``, ``domain2``, ``query`` and ``criteria`` (the public files call
  the list ``checklist``; both are accepted): a list of ``{name, criteria_description, "1-2", …}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megatron_lwz.rewards.length import AnswerPolicy, extract_answer
from megatron_lwz.rewards.records_io import BadRecords, iter_records

ID_KEYS = ("id", "index", "idx")
TEXT_KEYS = ("prompt", "query", "question")


@dataclass(frozen=True)
class Generation:
    """One answer of one system."""

    id: str
    prompt: str
    response: str


@dataclass(frozen=True)
class WBQuery:
    """One WritingBench query with its instance-specific criteria."""

    index: str
    domain1: str
    domain2: str
    query: str
    criteria: tuple[dict[str, Any], ...]


def record_id(record: dict[str, Any], number: int) -> str:
    """The record's id as a string (first of ID_KEYS present), else ``line-<number>``."""
    for key in ID_KEYS:
        if record.get(key) is not None:
            return str(record[key])
    return f"line-{number}"


def record_text(record: dict[str, Any], key: str | None = None) -> str | None:
    """The prompt text: ``record[key]``, or the first of TEXT_KEYS present; None if none is a string."""
    for k in ((key,) if key else TEXT_KEYS):
        if isinstance(record.get(k), str):
            return record[k]
    return None


def read_prompts(path: str | Path, bad: BadRecords, *, text_key: str | None = None) -> list[tuple[str, dict]]:
    """``(id, record)`` of every usable prompt record, in file order (duplicate ids: the first is kept)."""
    out, seen = [], set()
    for number, (where, record) in enumerate(iter_records(path, bad), start=1):
        if record_text(record, text_key) is None:
            bad.add(where, f"no string field {text_key or ' / '.join(TEXT_KEYS)}")
            continue
        rid = record_id(record, number)
        if rid in seen:
            bad.add(where, f"duplicate id {rid!r}")
            continue
        seen.add(rid)
        out.append((rid, record))
    return out


def read_generations(path: str | Path, bad: BadRecords) -> dict[str, Generation]:
    """Generations by id (ids as strings; a duplicate id keeps the first)."""
    out: dict[str, Generation] = {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"generations file not found: {path}")
    for number, (where, record) in enumerate(iter_records(path, bad), start=1):
        response = record.get("response")
        if not isinstance(response, str):
            bad.add(where, "no string field 'response'")
            continue
        gid = record_id(record, number)
        if gid in out:
            bad.add(where, f"duplicate id {gid!r}")
            continue
        out[gid] = Generation(id=gid, prompt=record_text(record) or "", response=response)
    return out


def read_generation_meta(path: str | Path) -> dict[str, Any] | None:
    """The ``<file>.meta.json`` sidecar of a generations file, or None."""
    meta = Path(f"{path}.meta.json")
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def read_writingbench(path: str | Path, bad: BadRecords) -> list[WBQuery]:
    """WritingBench queries in file order; records without index / query / a criteria list are skipped."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    out, seen = [], set()
    for where, record in iter_records(path, bad):
        criteria = record.get("criteria", record.get("checklist"))
        if record.get("index") is None or not isinstance(record.get("query"), str):
            bad.add(where, "needs 'index' and a string 'query'")
            continue
        if not isinstance(criteria, list) or not criteria or not all(
                isinstance(c, dict) and isinstance(c.get("name"), str) for c in criteria):
            bad.add(where, "needs 'criteria' (or 'checklist'): a non-empty list of objects with a 'name'")
            continue
        index = str(record["index"])
        if index in seen:
            bad.add(where, f"duplicate index {index!r}")
            continue
        seen.add(index)
        out.append(WBQuery(index=index, domain1=str(record.get("domain1", "")), domain2=str(record.get("domain2", "")),
                           query=record["query"], criteria=tuple(criteria)))
    return out


def judged_text(response: str, policy: AnswerPolicy) -> str:
    """What a judge sees of a response: its ``<answer>`` text under ``policy`` ('' when there is none)."""
    answer = extract_answer(response, policy)
    return "" if answer is None else answer.strip()
