"""Format + repetition RM timing at 1K / 4K / 14K words: a table, then one JSON line.

Usage: python tools/bench_rewards.py [--repeats 15] [--sizes 1000 4000 14000]
(the same as ``lwz bench rewards``; implementation in megatron_lwz/rewards/bench.py).
"""

from __future__ import annotations

import argparse

from megatron_lwz.rewards.bench import run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per cell (median CPU time)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 14000], help="answer sizes in words")
    args = parser.parse_args()
    run_bench(tuple(args.sizes), repeats=args.repeats)


if __name__ == "__main__":
    main()
