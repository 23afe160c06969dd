"""``lwz preprocess``, ``lwz tokenizer train``, ``lwz data make-demo`` (and the preprocess benchmark's flags).

Thin: parse arguments into the data package's typed configs and call it. Heavy imports happen in
``run`` only, so ``lwz --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Arguments of the command ``name``."""
    if name == "preprocess":
        _preprocess_args(parser)
    elif name == "tokenizer train":
        _tokenizer_args(parser)
    elif name == "data make-demo":
        _demo_args(parser)
    else:
        raise ValueError(f"megatron_lwz.cli.data_cmds does not serve {name!r}")


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status."""
    handlers = {"preprocess": _run_preprocess, "tokenizer train": _run_tokenizer, "data make-demo": _run_demo}
    try:
        return handlers[args.command](args)
    except ValueError as err:  # PreprocessError, ConfigError and bad-input errors carry file/field names
        print(f"error: {err}", file=sys.stderr)
        return 1


def _preprocess_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, metavar="FILE",
                   help="input files or directories: .jsonl, .json, .jsonl.gz, .parquet")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin, PREFIX.idx, PREFIX.summary.json")
    p.add_argument("--tokenizer", required=True, metavar="SPEC",
                   help="tokenizer dir (tokenizer.json or tokenizer.model), .model file, or hf:HUB_ID")
    p.add_argument("--text-key", default="text", help="JSON key / parquet column with the text (default: text)")
    p.add_argument("--workers", type=int, default=1, help="tokenizer processes (default: 1)")
    p.add_argument("--append-eod", action=argparse.BooleanOptionalAction, default=True,
                   help="append the EOD token to every document (default: on)")
    p.add_argument("--chunk-size", type=int, default=256, help="records per worker task")
    p.add_argument("--max-errors-shown", type=int, default=10, help="malformed records printed (all are counted)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_preprocess(args: argparse.Namespace) -> int:
    from megatron_lwz.data.preprocess import PreprocessConfig, format_summary, preprocess
    from megatron_lwz.data.tokenizer import TokenizerConfig

    cfg = PreprocessConfig(
        inputs=args.input, output_prefix=args.output_prefix, tokenizer=TokenizerConfig.from_spec(args.tokenizer),
        text_key=args.text_key, workers=args.workers, append_eod=args.append_eod, chunk_size=args.chunk_size,
        max_errors_shown=args.max_errors_shown, progress=not args.no_progress,
    )
    print(format_summary(preprocess(cfg)))
    return 0


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, metavar="FILE",
                   help="training text: .jsonl/.jsonl.gz/.parquet (--text-key field) or .txt (one text per line)")
    p.add_argument("--vocab-size", type=int, required=True, help="vocabulary size (special + byte pieces included)")
    p.add_argument("--output", required=True, help="output directory (tokenizer.model + lwz_tokenizer.json)")
    p.add_argument("--model-type", choices=["bpe", "unigram"], default="bpe")
    p.add_argument("--text-key", default="text")
    p.add_argument("--max-sentences", type=int, default=2_000_000, help="paragraph sample size")
    p.add_argument("--character-coverage", type=float, default=0.9995)
    p.add_argument("--extra-symbol", action="append", default=[], help="extra always-single-token string (repeatable)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)


def _run_tokenizer(args: argparse.Namespace) -> int:
    from megatron_lwz.data.tokenizer import load_tokenizer
    from megatron_lwz.data.tokenizer_train import TokenizerTrainConfig, train_sentencepiece

    cfg = TokenizerTrainConfig(
        inputs=args.input, output=args.output, vocab_size=args.vocab_size, model_type=args.model_type,
        text_key=args.text_key, max_sentences=args.max_sentences, character_coverage=args.character_coverage,
        extra_symbols=args.extra_symbol, seed=args.seed, num_threads=args.threads,
    )
    out = train_sentencepiece(cfg)
    tok = load_tokenizer(str(out))
    print(f"wrote {out}: {tok!r}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the number of corpus documents")


def _run_demo(args: argparse.Namespace) -> int:
    from megatron_lwz.data.demo import DemoConfig, make_demo

    manifest = make_demo(DemoConfig(out_dir=args.out, seed=args.seed, scale=args.scale))
    for name, info in manifest["files"].items():
        print(f"{args.out}/{name}: {info['records']} records, {info['bytes'] / 1e6:.2f} MB")
    return 0


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the preprocessing benchmark (``lwz bench preprocess`` / tools/bench_preprocess.py)."""
    p.add_argument("--input", nargs="*", default=None, metavar="FILE",
                   help="JSON lines inputs (default: the generated demo corpus, replicated --repeat times)")
    p.add_argument("--tokenizer", default=None, metavar="SPEC",
                   help="tokenizer spec (default: a sentencepiece tokenizer trained on the input)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of our preprocessing")
    p.add_argument("--repeat", type=int, default=16, help="copies of the demo corpus when --input is not given")
    p.add_argument("--text-key", default="text")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")


def run_bench_cli(args: argparse.Namespace) -> int:
    """Run the preprocessing benchmark from parsed ``add_bench_arguments`` flags; prints table + JSON line."""
    from megatron_lwz.data.bench import format_table, run_bench

    result = run_bench(inputs=args.input, tokenizer=args.tokenizer, workers=args.workers, repeat=args.repeat,
                       text_key=args.text_key, workdir=args.workdir)
    print(format_table(result))
    print(json.dumps(result, sort_keys=True))
    return 0 if result["outputs_identical"] else 1
