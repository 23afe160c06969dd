"""Preprocessing throughput: our pipeline (N worker processes) vs a single-process baseline, one run.

Baseline (what a straightforward script does): for every JSON line, ``json.loads`` → ``tokenizer.encode``
→ append EOD → megatron-core ``IndexedDatasetBuilder.add_document``, all in one process. Ours:
``preprocess`` with 1 and with ``workers`` processes. All three write the same tokens, so the bench also
checks that the ``.bin``/``.idx`` files are byte-identical. Reported: tokens/s of each and the speedup
ratios against the baseline (wall time includes worker start-up).
"""

from __future__ import annotations

import filecmp
import gzip
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from megatron_lwz.data.readers import expand_inputs, iter_raw_chunks


def _baseline(files: Sequence[Path], tokenizer_spec: str, prefix: str, text_key: str) -> dict[str, Any]:
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    from megatron_lwz.data.tokenizer import load_tokenizer

    start = time.perf_counter()
    tok = load_tokenizer(tokenizer_spec)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=DType.optimal_dtype(tok.vocab_size))
    docs = tokens = 0
    for path in files:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as f:
            for line in f:
                try:
                    text = json.loads(line)[text_key]
                except (ValueError, KeyError, TypeError):
                    continue
                if not isinstance(text, str) or not text.strip():
                    continue
                ids = tok.encode(text) + [tok.eod]
                builder.add_document(ids, [len(ids)])
                docs += 1
                tokens += len(ids)
    builder.finalize(prefix + ".idx")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "documents": docs, "tokens": tokens, "tokens_per_s": tokens / seconds}


def _ours(files: Sequence[Path], tokenizer_spec: str, prefix: str, text_key: str, workers: int) -> dict[str, Any]:
    from megatron_lwz.data.preprocess import PreprocessConfig, preprocess
    from megatron_lwz.data.tokenizer import TokenizerConfig

    start = time.perf_counter()
    summary = preprocess(PreprocessConfig(inputs=[str(f) for f in files], output_prefix=prefix,
                                          tokenizer=TokenizerConfig.from_spec(tokenizer_spec), text_key=text_key,
                                          workers=workers, progress=False))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "documents": summary.documents, "tokens": summary.tokens,
            "tokens_per_s": summary.tokens / seconds}


def _demo_inputs(work: Path, repeat: int) -> list[Path]:
    from megatron_lwz.data.demo import DemoConfig, make_demo

    make_demo(DemoConfig(out_dir=str(work / "demo"), seed=0))
    names = ("books", "reports", "papers", "cot")
    data = b"".join((work / "demo" / f"{n}.jsonl").read_bytes() for n in names)
    path = work / "bench_corpus.jsonl"
    path.write_bytes(data * repeat)
    return [path]


def run_bench(*, inputs: Optional[Sequence[str]] = None, tokenizer: Optional[str] = None, workers: int = 2,
              repeat: int = 16, text_key: str = "text", workdir: Optional[str] = None) -> dict[str, Any]:
    """Run baseline, ours×1 and ours×``workers`` on the same input; returns the result record."""
    with tempfile.TemporaryDirectory(prefix="lwz_bench_pre_") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = expand_inputs(inputs) if inputs else _demo_inputs(work, repeat)
        label = tokenizer
        if tokenizer is None:
            from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig, train_sentencepiece

            tokenizer = str(train_sentencepiece(TokenizerTrainConfig(
                inputs=[str(f) for f in files], output=str(work / "tokenizer"), vocab_size=2000,
                text_key=text_key, max_sentences=50_000)))
            label = "sentencepiece bpe 2000 (trained on the input)"
        __import__("megatron.core.datasets.indexed_dataset")  # import cost outside every timed region
        base = _baseline(files, tokenizer, str(work / "baseline"), text_key)
        one = _ours(files, tokenizer, str(work / "ours1"), text_key, 1)
        many = _ours(files, tokenizer, str(work / "oursN"), text_key, workers)
        identical = all(filecmp.cmp(str(work / f"baseline{s}"), str(work / f"{o}{s}"), shallow=False)
                        for s in (".bin", ".idx") for o in ("ours1", "oursN"))
        input_bytes = int(sum(f.stat().st_size for f in files))
        n_chunks = sum(1 for f in files for _ in iter_raw_chunks(f, 0, text_key, 256))
    return {
        "bench": "preprocess", "workers": workers, "input_bytes": input_bytes, "documents": base["documents"],
        "tokens": base["tokens"], "chunks": n_chunks, "tokenizer": label,
        "baseline_tokens_per_s": round(base["tokens_per_s"], 1), "ours1_tokens_per_s": round(one["tokens_per_s"], 1),
        "oursN_tokens_per_s": round(many["tokens_per_s"], 1),
        "speedup_1": round(one["tokens_per_s"] / base["tokens_per_s"], 3),
        "speedup_N": round(many["tokens_per_s"] / base["tokens_per_s"], 3),
        "baseline_s": round(base["seconds"], 3), "ours1_s": round(one["seconds"], 3), "oursN_s": round(many["seconds"], 3),
        "outputs_identical": bool(identical and one["tokens"] == base["tokens"] == many["tokens"]),
    }


def format_table(r: dict[str, Any]) -> str:
    """Human-readable table of a ``run_bench`` result."""
    rows = [("baseline (1 proc, encode per doc)", r["baseline_s"], r["baseline_tokens_per_s"], 1.0),
            ("ours, 1 worker (batched encode)", r["ours1_s"], r["ours1_tokens_per_s"], r["speedup_1"]),
            (f"ours, {r['workers']} workers", r["oursN_s"], r["oursN_tokens_per_s"], r["speedup_N"])]
    lines = [f"preprocess bench: {r['documents']:,} docs, {r['tokens']:,} tokens, {r['input_bytes'] / 1e6:.1f} MB, "
             f"tokenizer {r['tokenizer']}",
             f"{'run':<36} {'seconds':>9} {'tokens/s':>12} {'x baseline':>11}"]
    lines += [f"{name:<36} {sec:>9.2f} {tps:>12,.0f} {ratio:>11.2f}" for name, sec, tps, ratio in rows]
    lines.append(f"outputs byte-identical: {r['outputs_identical']}")
    return "\n".join(lines)

