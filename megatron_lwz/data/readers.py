"""Streaming readers for pretraining text: JSON lines (plain or gzip) and parquet (by row group).

Readers never parse in bulk: they yield *raw chunks* (a file index, the 1-based line/row number of the
first item, and up to ``chunk_size`` raw items) so JSON parsing and tokenization can run in worker
processes. ``parse_item`` turns one raw item into text or a named error kind; a malformed item is
counted and reported by location, never fatal.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt",)
ERROR_KINDS = ("blank_line", "bad_utf8", "bad_json", "not_object", "missing_key", "non_text", "empty_text")
"""Malformed-record kinds, in the order they are checked."""


class MissingColumn:
    """Placeholder item for a parquet row whose file lacks the text column."""


@dataclass
class RawChunk:
    """Up to ``chunk_size`` consecutive raw records of one input file."""

    file_index: int
    """Index into the list of input files."""
    first_row: int
    """1-based line (JSONL) or row (parquet) number of ``items[0]``."""
    fmt: str
    """'json' (items are raw line bytes) or 'value' (items are the text column's values)."""
    items: list[Any]


def file_format(path: str | Path) -> str:
    """'json', 'parquet' or 'text' from the file name; ValueError naming the file otherwise."""
    name = str(path).lower()
    if name.endswith(JSONL_SUFFIXES):
        return "json"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    raise ValueError(f"{path}: unsupported input format; expected one of "
                     f"{', '.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)}")


def expand_inputs(inputs: Sequence[str], allow_text: bool = False) -> list[Path]:
    """Files named by ``inputs`` (directories expand to their supported files, sorted); checks existence."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p, allow_text))
            if not found:
                raise ValueError(f"input {path}: directory holds no .jsonl/.jsonl.gz/.parquet files")
            files.extend(found)
        elif path.is_file():
            fmt = file_format(path)
            if fmt == "text" and not allow_text:
                raise ValueError(f"{path}: plain .txt is only accepted for tokenizer training; use JSON lines")
            files.append(path)
        else:
            raise ValueError(f"input {path}: no such file or directory")
    if not files:
        raise ValueError("no input files given")
    return files


def _supported(path: Path, allow_text: bool) -> bool:
    """Directory members: .jsonl/.jsonl.gz/.ndjson/.parquet (not bare .json, which is often metadata)."""
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")) and not name.endswith((".jsonl", ".jsonl.gz")):
        return False
    try:
        return file_format(path) != "text" or allow_text
    except ValueError:
        return False


def _iter_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        yield from f


def iter_raw_chunks(path: Path, file_index: int, text_key: str, chunk_size: int) -> Iterator[RawChunk]:
    """Raw chunks of one file, in file order."""
    fmt = file_format(path)
    if fmt == "parquet":
        yield from _parquet_chunks(path, file_index, text_key, chunk_size)
        return
    if fmt != "json":
        raise ValueError(f"{path}: only JSON lines and parquet hold records with a {text_key!r} field")
    items: list[Any] = []
    first = 1
    for lineno, line in enumerate(_iter_lines(path), start=1):
        if not items:
            first = lineno
        items.append(line)
        if len(items) >= chunk_size:
            yield RawChunk(file_index, first, "json", items)
            items = []
    if items:
        yield RawChunk(file_index, first, "json", items)


def _parquet_chunks(path: Path, file_index: int, text_key: str, chunk_size: int) -> Iterator[RawChunk]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    row = 1
    if text_key not in pf.schema_arrow.names:
        for start in range(0, pf.metadata.num_rows, chunk_size):
            n = min(chunk_size, pf.metadata.num_rows - start)
            yield RawChunk(file_index, start + 1, "value", [MissingColumn()] * n)
        return
    for group in range(pf.num_row_groups):  # streaming: one row group in memory at a time
        column = pf.read_row_group(group, columns=[text_key]).column(0)
        for batch in column.chunks:
            values = batch.to_pylist()
            for start in range(0, len(values), chunk_size):
                part = values[start:start + chunk_size]
                yield RawChunk(file_index, row, "value", part)
                row += len(part)


def parse_item(fmt: str, item: Any, text_key: str) -> tuple[Optional[str], Optional[str], str]:
    """(text, None, '') for a valid record, else (None, error_kind, detail)."""
    if fmt == "json":
        if not item.strip():
            return None, "blank_line", "empty line"
        try:
            record = json.loads(item)
        except UnicodeDecodeError as err:
            return None, "bad_utf8", str(err)
        except ValueError as err:
            return None, "bad_json", str(err)
        if not isinstance(record, dict):
            return None, "not_object", f"expected a JSON object, got {type(record).__name__}"
        if text_key not in record:
            keys = ", ".join(list(record)[:8])
            return None, "missing_key", f"no key {text_key!r} (keys: {keys})"
        value = record[text_key]
    else:
        if isinstance(item, MissingColumn):
            return None, "missing_key", f"no column {text_key!r}"
        value = item
    if not isinstance(value, str):
        return None, "non_text", f"{text_key!r} is {type(value).__name__}, not a string"
    if not value.strip():
        return None, "empty_text", f"{text_key!r} is empty"
    return value, None, ""


def iter_texts(inputs: Sequence[str], text_key: str = "text") -> Iterator[str]:
    """Valid texts of all inputs in order (malformed records skipped); .txt files yield their lines."""
    for index, path in enumerate(expand_inputs(inputs, allow_text=True)):
        if file_format(path) == "text":
            for line in _iter_lines(path):
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                if text.strip():
                    yield text
            continue
        for chunk in iter_raw_chunks(path, index, text_key, 1024):
            for item in chunk.items:
                text, _, _ = parse_item(chunk.fmt, item, text_key)
                if text is not None:
                    yield text
