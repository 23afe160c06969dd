"""JSONL / parquet record reading that never dies on bad data, and the RL prompt-file reader.

Malformed lines are counted and reported with ``file:line`` (``BadRecords``), then skipped.
``read_prompt_records`` turns a ``lwz data predict-length`` output file into ``PromptRecord`` objects
for GRPO, dropping unfulfillable ``[0, 0]`` ranges by default (paper.md §1.3: "[0, 0]" = the query
cannot be fulfilled or exceeds the limits; we treat those as not suitable for RL).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from megatron_lwz.rollout.types import PromptRecord
from megatron_lwz.rewards.length import detect_language, is_fulfillable

logger = logging.getLogger(__name__)


@dataclass
class BadRecords:
    """Counter of skipped input records, keeping the first ``keep`` examples as 'file:line: why'."""

    keep: int = 20
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.examples) < self.keep:
            self.examples.append(f"{where}: {why}")
        logger.debug("skipping %s: %s", where, why)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def iter_records(path: str | Path, bad: BadRecords) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ('file:line', record) from .jsonl / .jsonl.gz / .json (one object per line) or .parquet."""
    path = Path(path)
    if path.suffix == ".parquet":
        yield from _iter_parquet(path, bad)
        return
    try:
        handle = _open_text(path)
    except OSError as err:
        bad.add(str(path), f"cannot open: {err}")
        return
    with handle:
        line_no = 0
        while True:
            try:
                line = handle.readline()
            except (OSError, EOFError) as err:  # truncated .gz
                bad.add(f"{path}:{line_no + 1}", f"unreadable: {err}")
                return
            if not line:
                return
            line_no += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                bad.add(f"{path}:{line_no}", f"invalid JSON ({err.msg})")
                continue
            if not isinstance(record, dict):
                bad.add(f"{path}:{line_no}", f"expected a JSON object, got {type(record).__name__}")
                continue
            yield f"{path}:{line_no}", record


def _iter_parquet(path: Path, bad: BadRecords) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        bad.add(str(path), f"cannot open parquet: {err}")
        return
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            yield f"{path}:row{row}", record


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records to ``path`` via a temp file + rename (a crash never leaves a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def stable_prompt_id(question: str) -> str:
    """Content-derived id ('p-' + 16 hex of SHA-1): stable across reruns and input order."""
    return "p-" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]


def read_prompt_records(path: str | Path, *, question_key: str = "question",
                        keep_unfulfillable: bool = False) -> tuple[list[PromptRecord], BadRecords]:
    """PromptRecords of a predicted-length JSONL file (records without a valid range are skipped)."""
    bad = BadRecords()
    records = []
    dropped = 0
    for where, raw in iter_records(path, bad):
        question = raw.get(question_key)
        lower, upper = raw.get("length_lower"), raw.get("length_upper")
        if not isinstance(question, str) or not question.strip():
            bad.add(where, f"missing or empty '{question_key}'")
            continue
        if not (isinstance(lower, int) and isinstance(upper, int) and 0 <= lower <= upper):
            bad.add(where, "no valid length_lower/length_upper (run `lwz data predict-length` first)")
            continue
        if not keep_unfulfillable and not is_fulfillable(lower, upper):
            dropped += 1
            continue
        language = raw.get("language") if raw.get("language") in ("en", "zh") else detect_language(question)
        records.append(PromptRecord(prompt_id=str(raw.get("prompt_id") or stable_prompt_id(question)),
                                    question=question, length_lower=lower, length_upper=upper,
                                    language=language))
    logger.info("%s: %d prompts, %d unfulfillable [0, 0] dropped, %d bad records", path, len(records), dropped,
                bad.count)
    return records, bad
