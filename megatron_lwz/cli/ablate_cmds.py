"""``lwz ablate --study NAME --seeds N [--config BASE] [dotted.key=value ...]``: run an ablation study.

A study (``examples/ablations/NAME.yaml`` or a path) declares variants as dotted overrides over a base
recipe; every (variant, seed) runs as its own ``lwz <job>`` process, finished runs are never redone,
and the report (Markdown table, ``curves.png``, paired tests) ends with one JSON line. Format:
docs/ablations.md.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--study", required=True, help="study name under examples/ablations/ or a YAML path")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    parser.add_argument("--config", default=None, help="base recipe replacing the study's 'base'")
    parser.add_argument("--out", default="runs/ablations", help="output root (default runs/ablations)")
    parser.add_argument("--lock", default=None, help="flock file each run holds while it runs, e.g. /tmp/lwz-heavy.lock")
    parser.add_argument("--report-only", action="store_true", help="only report on the runs that finished")
    parser.add_argument("--dry-run", action="store_true", help="print the command of every run and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for every run (not the keys a variant sets)")


def run(args: argparse.Namespace) -> int:
    from megatron_lwz.ablation.spec import load_study
    from megatron_lwz.ablation.study import AblateOptions, ablate
    from megatron_lwz.config.base import ConfigError

    opts = AblateOptions(seeds=args.seeds, out=args.out, base=args.config, overrides=list(args.overrides),
                         lock=args.lock, run=not args.report_only, progress=not args.no_progress)
    try:
        spec = load_study(args.study)
        if args.dry_run:
            from pathlib import Path

            from megatron_lwz.ablation.runner import plan_runs, seed_values

            for plan in plan_runs(spec, seed_values(spec, opts.seeds), Path(opts.out).resolve(), opts.base,
                                  opts.overrides):
                print(("[done] " if plan.done() else "") + " ".join(plan.argv))
            return 0
        code, summary = ablate(spec, opts)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if summary is not None:
        from megatron_lwz.ablation.report import compact

        print(json.dumps(compact(summary)), flush=True)
    return code
