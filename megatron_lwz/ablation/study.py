"""One call for ``lwz ablate``: prepare → runs → report (``report.md``, ``report.json``, ``curves.png``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from megatron_lwz.ablation.collect import load_run
from megatron_lwz.ablation.report import Runs, markdown, plot, summarize
from megatron_lwz.ablation.runner import plan_runs, run_plans, run_prepare, seed_values
from megatron_lwz.ablation.spec import StudySpec


@dataclass(kw_only=True)
class AblateOptions:
    """What ``lwz ablate`` was asked to do (built from the CLI flags)."""

    seeds: int = 3
    """Seeds per variant."""
    out: str = "runs/ablations"
    """Output root: <out>/<study>/<variant>/seed<k>, shared stages in <out>/shared."""
    base: str | None = None
    """Replaces the study's base recipe."""
    overrides: list[str] = field(default_factory=list)
    """Extra dotted overrides for every run (not the keys a variant sets)."""
    lock: str | None = None
    """flock file held by each subprocess while it runs (e.g. /tmp/lwz-heavy.lock)."""
    run: bool = True
    """Run what is missing; False = report on the finished runs only."""
    progress: bool = True
    """tqdm bar over the runs."""


def ablate(spec: StudySpec, opts: AblateOptions) -> tuple[int, dict | None]:
    """Run (unless ``opts.run`` is False) and report a study; (exit code, summary or None)."""
    out = Path(opts.out).resolve()
    plans = plan_runs(spec, seed_values(spec, opts.seeds), out, opts.base, opts.overrides)
    if opts.run:
        code = run_prepare(spec, out, opts.lock) or run_plans(spec, plans, out, opts.lock, progress=opts.progress)
        if code:
            return code, None
    runs: Runs = {}
    for plan in plans:
        if plan.done():
            runs.setdefault(plan.variant, {})[plan.seed] = load_run(plan.run_dir)
    if len(runs) < 2:
        print(f"ablate: study {spec.name}: fewer than two variants have finished runs; nothing to compare")
        return (1 if opts.run else 0), None
    study_dir = out / spec.name
    summary = summarize(spec, runs)
    metrics = list(summary["intervals"])
    summary["plot"] = str(plot(spec, runs, metrics, study_dir / "curves.png"))
    text = markdown(spec, summary)
    (study_dir / "report.md").write_text(text + f"\n![curves]({Path(summary['plot']).name})\n", encoding="utf-8")
    (study_dir / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    summary["report"] = str(study_dir / "report.md")
    print(text, flush=True)
    return 0, summary
