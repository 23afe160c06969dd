"""Benchmark: tokens/s of ``lwz preprocess`` (N workers) vs a single-process baseline, in one run.

Usage: ``python tools/bench_preprocess.py [--workers 2] [--input FILES] [--tokenizer SPEC]``.
Prints a table and then one JSON line; exits 1 if the outputs differ from the baseline's.
"""

from __future__ import annotations

import argparse
import sys

from megatron_lwz.cli.data_cmds import add_bench_arguments, run_bench_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_arguments(parser)
    return run_bench_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
