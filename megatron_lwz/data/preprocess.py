"""Tokenize JSON lines / parquet into megatron-core indexed datasets (``PREFIX.bin`` / ``PREFIX.idx``).

Pipeline: the main process streams raw chunks (``readers.iter_raw_chunks``: bytes lines, or parquet
values one row group at a time) to a pool of worker processes that parse JSON, validate the text field
and tokenize (appending one EOD id per document when ``append_eod``). Results come back **in submission
order** (a bounded window of pending chunks, so memory stays flat and output is byte-identical for any
``workers``), and the main process writes each document with megatron-core's ``IndexedDatasetBuilder``
(one sequence per document; token dtype ``uint16`` if ``vocab_size < 65500`` else ``int32``, i.e.
``DType.optimal_dtype``). Output is written under a temporary prefix and renamed at the end.

Malformed records (blank line, bad UTF-8 / JSON, non-object, missing key, non-string or empty text)
are counted by kind, reported as ``file:line`` (first ``max_errors_shown`` on stderr, the first 100 in
the summary) and skipped. No valid document at all raises ``PreprocessError``.

``PREFIX.summary.json``: ``{"output_prefix", "inputs", "documents", "tokens", "records",
"malformed": {"total", "by_kind", "examples"}, "seconds", "docs_per_s", "tokens_per_s", "dtype",
"vocab_size", "eod", "append_eod", "workers", "text_key", "tokenizer"}``.
"""

from __future__ import annotations

import collections
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from megatron_lwz.data.readers import ERROR_KINDS, RawChunk, expand_inputs, iter_raw_chunks, parse_item
from megatron_lwz.data.tokenizer import Tokenizer, TokenizerConfig

MAX_EXAMPLES_IN_SUMMARY = 100


class PreprocessError(ValueError):
    """The inputs hold no valid document, or the job is misconfigured."""


@dataclass(kw_only=True)
class PreprocessConfig:
    """What ``lwz preprocess`` tokenizes and where it writes."""

    inputs: list[str]
    """Input files or directories (.jsonl, .json, .jsonl.gz, .parquet)."""
    output_prefix: str
    """Writes OUTPUT_PREFIX.bin, .idx and .summary.json."""
    tokenizer: TokenizerConfig
    """Tokenizer used for every document."""
    text_key: str = "text"
    """JSON key / parquet column holding the document text."""
    workers: int = 1
    """Tokenizer processes (1 = in this process)."""
    append_eod: bool = True
    """Append the tokenizer's EOD id after every document (needed to separate packed documents)."""
    chunk_size: int = 256
    """Records per worker task."""
    max_errors_shown: int = 10
    """Malformed records printed to stderr (all are counted)."""
    progress: bool = True
    """Show a tqdm progress bar (docs/s, tokens/s)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise PreprocessError(f"workers: must be >= 1, got {self.workers}")
        if self.chunk_size < 1:
            raise PreprocessError(f"chunk_size: must be >= 1, got {self.chunk_size}")
        if not self.text_key:
            raise PreprocessError("text_key: must be a non-empty field name")


@dataclass
class ChunkResult:
    """A worker's output for one raw chunk."""

    file_index: int
    records: int
    lengths: np.ndarray  # (D,) int64 tokens per valid document (EOD included)
    tokens: np.ndarray  # (sum(lengths),) token ids, documents concatenated
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row, kind, detail)


@dataclass
class PreprocessSummary:
    """Counts and throughput of one preprocessing run (also written as PREFIX.summary.json)."""

    output_prefix: str
    inputs: list[str]
    documents: int
    tokens: int
    records: int
    malformed: dict[str, Any]
    seconds: float
    docs_per_s: float
    tokens_per_s: float
    dtype: str
    vocab_size: int
    eod: int
    append_eod: bool
    workers: int
    text_key: str
    tokenizer: dict[str, Any]


class _Worker:
    """Per-process tokenization state (one instance per worker process, built by the pool initializer)."""

    def __init__(self, tokenizer_cfg: TokenizerConfig, text_key: str, append_eod: bool, dtype: str) -> None:
        self.tokenizer = Tokenizer(tokenizer_cfg)
        self.text_key = text_key
        self.append_eod = append_eod
        self.dtype = np.dtype(dtype)

    def __call__(self, chunk: RawChunk) -> ChunkResult:
        texts: list[str] = []
        errors: list[tuple[int, str, str]] = []
        for offset, item in enumerate(chunk.items):
            text, kind, detail = parse_item(chunk.fmt, item, self.text_key)
            if text is None:
                errors.append((chunk.first_row + offset, kind, detail))
            else:
                texts.append(text)
        ids = self.tokenizer.encode_batch(texts) if texts else []
        eod = [self.tokenizer.eod] if self.append_eod else []
        docs = [np.asarray(doc + eod, dtype=self.dtype) for doc in ids]
        lengths = np.fromiter((d.size for d in docs), dtype=np.int64, count=len(docs))
        tokens = np.concatenate(docs) if docs else np.zeros(0, dtype=self.dtype)
        return ChunkResult(chunk.file_index, len(chunk.items), lengths, tokens, errors)


_PROCESS_WORKER: list[_Worker] = []  # the worker process's own _Worker (set once by _init_worker)


def _init_worker(tokenizer_cfg: TokenizerConfig, text_key: str, append_eod: bool, dtype: str) -> None:
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one tokenizer thread per worker process
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _PROCESS_WORKER.append(_Worker(tokenizer_cfg, text_key, append_eod, dtype))


def _run_chunk(chunk: RawChunk) -> ChunkResult:
    return _PROCESS_WORKER[0](chunk)


def _all_chunks(files: list[Path], text_key: str, chunk_size: int) -> Iterator[RawChunk]:
    for index, path in enumerate(files):
        yield from iter_raw_chunks(path, index, text_key, chunk_size)


def _ordered_results(cfg: PreprocessConfig, files: list[Path], dtype: str) -> Iterator[ChunkResult]:
    """Chunk results in input order; workers > 1 run a process pool with a bounded in-flight window."""
    chunks = _all_chunks(files, cfg.text_key, cfg.chunk_size)
    init_args = (cfg.tokenizer, cfg.text_key, cfg.append_eod, dtype)
    if cfg.workers == 1:
        worker = _Worker(*init_args)
        yield from map(worker, chunks)
        return
    ctx = mp.get_context("spawn")  # fork after loading Rust/C++ tokenizers (thread pools) can deadlock
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=init_args) as pool:
        window: collections.deque = collections.deque()
        for chunk in chunks:
            window.append(pool.apply_async(_run_chunk, (chunk,)))
            if len(window) >= 4 * cfg.workers:
                yield window.popleft().get()
        while window:
            yield window.popleft().get()


def _progress(cfg: PreprocessConfig):
    from tqdm import tqdm

    return tqdm(unit="doc", desc="preprocess", disable=not cfg.progress, dynamic_ncols=True, file=sys.stderr)


class _Tally:
    """Running counts of one run; writes each chunk's documents and reports its malformed records."""

    def __init__(self, cfg: PreprocessConfig, files: list[Path], builder: Any, bar: Any) -> None:
        self.cfg, self.files, self.builder, self.bar = cfg, files, builder, bar
        self.by_kind: collections.Counter = collections.Counter()
        self.examples: list[str] = []
        self.documents = self.tokens = self.records = 0
        self.start = time.perf_counter()

    def add(self, result: ChunkResult) -> None:
        self.records += result.records
        for row, kind, detail in result.errors:
            self.by_kind[kind] += 1
            where = f"{self.files[result.file_index]}:{row}: {kind}: {detail}"
            if len(self.examples) < max(self.cfg.max_errors_shown, MAX_EXAMPLES_IN_SUMMARY):
                self.examples.append(where)
            if self.malformed <= self.cfg.max_errors_shown:
                self.bar.write(f"malformed record {where}", file=sys.stderr)
        offset = 0
        for length in result.lengths.tolist():  # one sequence per document
            self.builder.add_document(result.tokens[offset:offset + length], [length])
            offset += length
        self.documents += int(result.lengths.size)
        self.tokens += int(result.tokens.size)
        self.bar.update(int(result.lengths.size))
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix(tok_s=f"{self.tokens / elapsed:,.0f}", malformed=self.malformed, refresh=False)

    @property
    def malformed(self) -> int:
        return sum(self.by_kind.values())


def preprocess(cfg: PreprocessConfig) -> PreprocessSummary:
    """Tokenize ``cfg.inputs`` into ``cfg.output_prefix``.bin/.idx; returns (and writes) the summary."""
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    try:
        files = expand_inputs(cfg.inputs)
    except ValueError as err:
        raise PreprocessError(str(err)) from None
    tokenizer = Tokenizer(cfg.tokenizer)
    dtype = np.dtype(DType.optimal_dtype(tokenizer.vocab_size)).name
    prefix = Path(cfg.output_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = prefix.with_name(f".{prefix.name}.tmp{os.getpid()}")
    builder = IndexedDatasetBuilder(f"{tmp}.bin", dtype=np.dtype(dtype).type)
    try:
        with _progress(cfg) as bar:
            tally = _Tally(cfg, files, builder, bar)
            for result in _ordered_results(cfg, files, dtype):
                tally.add(result)
        builder.finalize(f"{tmp}.idx")
        if tally.documents == 0:
            raise PreprocessError(_empty_message(files, tally.records, tally.by_kind, tally.examples, cfg.text_key))
        os.replace(f"{tmp}.bin", f"{prefix}.bin")
        os.replace(f"{tmp}.idx", f"{prefix}.idx")
    finally:
        builder.data_file.close()
        for suffix in (".bin", ".idx"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    seconds = time.perf_counter() - tally.start
    summary = PreprocessSummary(
        output_prefix=str(prefix), inputs=[str(f) for f in files], documents=tally.documents, tokens=tally.tokens,
        records=tally.records, seconds=round(seconds, 4), docs_per_s=round(tally.documents / seconds, 2),
        tokens_per_s=round(tally.tokens / seconds, 2), dtype=dtype, vocab_size=tokenizer.vocab_size,
        eod=tokenizer.eod, append_eod=cfg.append_eod, workers=cfg.workers, text_key=cfg.text_key,
        malformed={"total": tally.malformed, "by_kind": {k: tally.by_kind[k] for k in ERROR_KINDS if tally.by_kind[k]},
                   "examples": tally.examples[:MAX_EXAMPLES_IN_SUMMARY]},
        tokenizer={"path": cfg.tokenizer.path, **tokenizer.unique_identifiers},
    )
    Path(f"{prefix}.summary.json").write_text(json.dumps(asdict(summary), ensure_ascii=False, indent=2) + "\n",
                                              encoding="utf-8")
    return summary


def _empty_message(files: list[Path], records: int, by_kind: collections.Counter, examples: list[str],
                   text_key: str) -> str:
    names = ", ".join(str(f) for f in files[:5]) + (" …" if len(files) > 5 else "")
    if records == 0:
        return f"no valid documents: the inputs are empty ({names})"
    kinds = ", ".join(f"{k}={v}" for k, v in sorted(by_kind.items()))
    first = f"; first: {examples[0]}" if examples else ""
    return (f"no valid documents in {names}: all {records} records are malformed ({kinds}){first}. "
            f"Is the text field really {text_key!r}? (--text-key)")


def format_summary(summary: PreprocessSummary) -> str:
    """Human-readable summary lines."""
    mal = summary.malformed
    lines = [
        f"wrote {summary.output_prefix}.bin/.idx ({summary.dtype}): {summary.documents:,} documents, "
        f"{summary.tokens:,} tokens from {summary.records:,} records in {len(summary.inputs)} file(s)",
        f"time {summary.seconds:.2f}s  ({summary.docs_per_s:,.0f} docs/s, {summary.tokens_per_s:,.0f} tokens/s, "
        f"{summary.workers} worker(s))",
    ]
    if mal["total"]:
        kinds = ", ".join(f"{k}={v}" for k, v in mal["by_kind"].items())
        lines.append(f"skipped {mal['total']:,} malformed records: {kinds} (see {summary.output_prefix}.summary.json)")
    return "\n".join(lines)


def read_summary(prefix: str | Path) -> Optional[dict[str, Any]]:
    """The summary JSON of a preprocessed prefix, or None if absent."""
    path = Path(f"{prefix}.summary.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
