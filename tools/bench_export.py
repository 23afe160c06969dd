"""Benchmark: Megatron→HF weight export (TP=1, TP=2) vs a plain memcpy of the same bytes, one run.

Usage: ``python tools/bench_export.py [--tp 1 2] [--hidden 1024 --layers 8 --vocab 32000] [--repeats 5]``
(the same as ``lwz bench export``; implementation in megatron_lwz/bench/export.py). Prints a table,
then one JSON line; exits 1 if the export transports disagree bit for bit.
"""

from __future__ import annotations

import argparse
import sys

from megatron_lwz.cli.bench_cmds import add_export_arguments, run_export_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_export_arguments(parser)
    return run_export_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
