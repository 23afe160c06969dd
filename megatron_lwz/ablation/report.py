"""The study report: per-variant intervals over seeds, paired comparisons, a Markdown table, PNG curves.

Per variant and metric: the mean over seeds of each run's held-out prompt mean, with a 95 % Student
interval, at the first evaluation (before any update), the last one, and their gain.

Each non-baseline variant is compared with the baseline on the quantity ``spec.compare`` ('last' or
'gain') with two paired analyses (runs pair by seed: the same seed overrides, hence the same prompt
order and sampling seeds):

* **over seeds** (the verdict): d_s = prompt mean of the variant's run s − that of the baseline's run s;
  paired t-test (ν = S − 1) and the exact sign-flip test. This treats the training randomness as the
  noise, which is what "does variant A train better than B" asks; its power grows with the seeds.
* **over prompts** (secondary): d_p = mean over seeds of the per-prompt differences, paired t over the
  P prompts. This conditions on the S trained runs: it asks whether *these* policies differ on the
  prompt population, and ignores seed-to-seed variation, so it can be significant when the seed-level
  test is not. Reported, never used for the verdict.

"No detectable difference at S seeds" is stated when the seed-level p ≥ α.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from megatron_lwz.ablation.collect import RunData
from megatron_lwz.ablation.spec import StudySpec
from megatron_lwz.ablation.stats import Interval, PairedTest, mean_ci, paired_test

Runs = dict[str, dict[int, RunData]]
"""variant → seed → the run's data."""


@dataclass
class Comparison:
    variant: str
    metric: str
    seeds: PairedTest
    prompts: PairedTest
    verdict: str


def _ends(run: RunData) -> tuple[int, int]:
    if not run.evals:
        raise ValueError(f"{run.run_dir}: no evaluation dumps under eval/ (rl.eval.path unset?)")
    return run.steps[0], run.steps[-1]


def _quantity(run: RunData, metric: str, what: str) -> dict[str, float]:
    """Per-prompt value of ``metric`` at the last evaluation ('last') or its change since the first ('gain')."""
    first, last = _ends(run)
    end = run.evals[last].get(metric, {})
    if what == "last":
        return dict(end)
    start = run.evals[first].get(metric, {})
    return {p: end[p] - start[p] for p in end.keys() & start.keys()}


def variant_intervals(runs: Runs, metric: str) -> dict[str, dict[str, Interval | None]]:
    """variant → {'first', 'last', 'gain'} → Interval over seeds (None when the metric is absent)."""
    out = {}
    for variant, by_seed in runs.items():
        cols: dict[str, list[float]] = {"first": [], "last": [], "gain": []}
        for run in by_seed.values():
            first, last = _ends(run)
            a, b = run.mean(first, metric), run.mean(last, metric)
            if a is not None and b is not None:
                cols["first"].append(a), cols["last"].append(b), cols["gain"].append(b - a)
        out[variant] = {k: (mean_ci(v) if v else None) for k, v in cols.items()}
    return out


def compare(spec: StudySpec, runs: Runs, variant: str, metric: str) -> Comparison | None:
    """Paired comparison of ``variant`` with the baseline on ``metric`` (None when nothing pairs up)."""
    base, other = runs.get(spec.baseline, {}), runs.get(variant, {})
    seeds = sorted(base.keys() & other.keys())
    per_seed, per_prompt = [], {}
    for seed in seeds:
        qa, qb = _quantity(base[seed], metric, spec.compare), _quantity(other[seed], metric, spec.compare)
        common = sorted(qa.keys() & qb.keys())
        if not common:
            continue
        per_seed.append(statistics.fmean(qb[p] for p in common) - statistics.fmean(qa[p] for p in common))
        for p in common:
            per_prompt.setdefault(p, []).append(qb[p] - qa[p])
    if not per_seed:
        return None
    full = [statistics.fmean(v) for v in per_prompt.values() if len(v) == len(per_seed)]
    seeds_t, prompts_t = paired_test(per_seed), paired_test(full)
    return Comparison(variant, metric, seeds_t, prompts_t, _verdict(spec, variant, metric, seeds_t, prompts_t))


def _fmt_ci(t: PairedTest) -> str:
    return "n/a" if t.ci_low is None else f"[{t.ci_low:+.3f}, {t.ci_high:+.3f}]"


def _verdict(spec: StudySpec, variant: str, metric: str, s: PairedTest, p: PairedTest) -> str:
    what = f"{metric} ({spec.compare})"
    name, base = spec.label(variant), spec.label(spec.baseline)
    if s.p_t is None:
        head = f"{what}: one seed only, no seed-level test (Δ = {s.mean_diff:+.3f})"
    elif s.p_t < spec.alpha:
        side = "higher" if s.mean_diff > 0 else "lower"
        head = (f"{what}: {name} is {side} than {base} by {s.mean_diff:+.3f} (95% CI {_fmt_ci(s)}; "
                f"paired t over {s.n} seeds, p = {s.p_t:.3g} < {spec.alpha})")
    else:
        head = (f"{what}: no detectable difference at {s.n} seeds (Δ = {s.mean_diff:+.3f}, 95% CI {_fmt_ci(s)}, "
                f"p = {s.p_t:.3g} ≥ {spec.alpha})")
    if p.p_t is None:
        return head
    tail = ("differ" if s.n > 1 else "differs") if p.p_t < spec.alpha else \
        ("show" if s.n > 1 else "shows") + " no detectable difference"
    pairs = "this run pair" if s.n == 1 else f"these {s.n} run pairs"
    return head + f"; {pairs} {tail} over {p.n} prompts (Δ = {p.mean_diff:+.3f}, p = {p.p_t:.3g})"


def summarize(spec: StudySpec, runs: Runs) -> dict:
    """Intervals per variant and metric, and every comparison with the baseline (JSON-ready)."""
    metrics = [m for m in spec.metrics if any(r.mean(r.steps[-1], m) is not None
                                               for by in runs.values() for r in by.values() if r.evals)]
    table = {m: variant_intervals(runs, m) for m in metrics}
    comparisons = [c for v in spec.variants if v != spec.baseline and v in runs
                   for m in metrics if (c := compare(spec, runs, v, m)) is not None]
    return {"study": spec.name, "compare": spec.compare, "alpha": spec.alpha, "baseline": spec.baseline,
            "seeds": {v: sorted(by) for v, by in runs.items()},
            "intervals": {m: {v: {k: (asdict(i) if i else None) for k, i in cols.items()} for v, cols in t.items()}
                          for m, t in table.items()},
            "comparisons": [asdict(c) for c in comparisons]}


def _cell(i: dict | None) -> str:
    if i is None:
        return "–"
    if i["low"] is None:
        return f"{i['mean']:.3f}"
    return f"{i['mean']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"


def markdown(spec: StudySpec, summary: dict) -> str:
    """The report as Markdown: one interval table and one comparison table."""
    lines = [f"### Study `{spec.name}`", ""]
    if spec.question:
        lines += [spec.question, ""]
    lines += ["Held-out evaluation, mean over seeds [95% CI]; first = before the first update, last = after the last.",
              "", "| variant | metric | first | last | gain |", "|---|---|---|---|---|"]
    for metric, by_variant in summary["intervals"].items():
        for variant, cols in by_variant.items():
            lines.append(f"| {spec.label(variant)} (n={len(summary['seeds'][variant])}) | {metric} | "
                         f"{_cell(cols['first'])} | {_cell(cols['last'])} | {_cell(cols['gain'])} |")
    lines += ["", f"Paired differences (variant − {spec.label(spec.baseline)}, on `{spec.compare}`):", "",
              "| variant | metric | Δ over seeds [95% CI] | p (t, seeds) | p (sign-flip, seeds; min) | "
              "Δ over prompts | p (t, prompts) |", "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if v is None else f"{v:.3g}"  # noqa: E731
    for c in summary["comparisons"]:
        s, p = c["seeds"], c["prompts"]
        ci = "" if s["ci_low"] is None else f" [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}]"
        lines.append(f"| {spec.label(c['variant'])} | {c['metric']} | {s['mean_diff']:+.3f}{ci} | {fmt(s['p_t'])} | "
                     f"{fmt(s['p_perm'])} ({fmt(s['min_p'])}) | {p['mean_diff']:+.3f} (P={p['n']}) | {fmt(p['p_t'])} |")
    lines += ["", "Verdicts:", ""] + [f"* {spec.label(c['variant'])} vs {spec.label(spec.baseline)}, {c['verdict']}"
                                       for c in summary["comparisons"]]
    return "\n".join(lines) + "\n"


def _band(series: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Mean and 95% band over runs at every x present in all runs."""
    common = sorted(set.intersection(*(set(x for x, _ in s) for s in series))) if series else []
    xs, mid, lo, hi = [], [], [], []
    for x in common:
        ci = mean_ci([dict(s)[x] for s in series])
        xs.append(x), mid.append(ci.mean)
        lo.append(ci.mean if ci.low is None else ci.low), hi.append(ci.mean if ci.high is None else ci.high)
    return xs, mid, lo, hi


def plot(spec: StudySpec, runs: Runs, metrics: list[str], out_png: Path) -> Path:
    """One panel per held-out metric plus the training reward: mean over seeds with a 95% band per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [*metrics, "train"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.3 * len(panels)), squeeze=False, sharex=True)
    for ax, metric in zip(axes[:, 0], panels):
        for variant, by_seed in runs.items():
            if metric == "train":
                series = [r.train for r in by_seed.values() if r.train]
            else:
                series = [[(s, r.mean(s, metric)) for s in r.steps if r.mean(s, metric) is not None]
                          for r in by_seed.values()]
            xs, mid, lo, hi = _band([s for s in series if s])
            if xs:
                line, = ax.plot(xs, mid, marker="." if len(xs) < 30 else None, label=spec.label(variant))
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_ylabel("train reward/total" if metric == "train" else f"eval {metric}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("GRPO step")
    fig.suptitle(f"ablation {spec.name}: mean over seeds, 95% band")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def compact(summary: dict) -> dict:
    """The one-line JSON of ``lwz ablate``: last-evaluation intervals and each comparison's verdict numbers."""
    alpha = summary["alpha"]
    last = {v: {m: [round(x, 4) if x is not None else None for x in (c[v]["last"]["mean"], c[v]["last"]["low"],
                                                                      c[v]["last"]["high"])]
                for m, c in summary["intervals"].items() if c.get(v) and c[v]["last"]}
            for v in summary["seeds"]}
    diffs: dict = {}
    for c in summary["comparisons"]:
        s, p = c["seeds"], c["prompts"]
        diffs.setdefault(c["variant"], {})[c["metric"]] = {
            "delta": round(s["mean_diff"], 4), "p_seeds": s["p_t"], "p_prompts": p["p_t"],
            "detected": s["p_t"] is not None and s["p_t"] < alpha}
    return {"study": summary["study"], "baseline": summary["baseline"], "compare": summary["compare"], "alpha": alpha,
            "seeds": summary["seeds"], "last_mean_ci": last, "vs_baseline": diffs, "report": summary.get("report"),
            "plot": summary.get("plot")}
