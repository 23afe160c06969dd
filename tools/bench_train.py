"""Benchmark: engine tokens/s and step time of TP1 / TP2 / PP2 relative to TP1, plus FLOPs/token.

Usage: ``python tools/bench_train.py [--layouts tp2 pp2] [--hidden 256 --layers 4 --seq 256]``
(the same as ``lwz bench train``; implementation in megatron_lwz/bench/train.py). Prints a table,
then one JSON line; exits 1 if a layout's losses differ from TP1's.
"""

from __future__ import annotations

import argparse
import sys

from megatron_lwz.cli.bench_cmds import add_train_arguments, run_train_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    return run_train_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
