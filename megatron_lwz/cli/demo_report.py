"""The demo's closing summary: a table, one PNG of the whole pipeline, and the JSON result."""

from __future__ import annotations

import statistics
from pathlib import Path

from megatron_lwz.metrics.plots import plot_metrics, read_metrics


def _series(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if key in r]


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def first_last(rows: list[dict], key: str, k: int = 5) -> tuple[float | None, float | None]:
    """Mean of the first and of the last ``k`` logged values of ``key``."""
    values = _series(rows, key)
    return _mean(values[:k]), _mean(values[-k:])


def report(out: Path, times: dict[str, float]) -> dict:
    pre = read_metrics(out / "pretrain" / "metrics.jsonl")
    rm = read_metrics(out / "rm" / "metrics.jsonl")
    grpo = read_metrics(out / "grpo" / "metrics.jsonl")
    losses = _series(pre, "train/loss")
    rm_acc = _series(rm, "eval/accuracy")
    summary: dict = {
        "pretrain_loss_first": round(losses[0], 4) if losses else None,
        "pretrain_loss_last": round(losses[-1], 4) if losses else None,
        "rm_eval_accuracy": round(rm_acc[-1], 4) if rm_acc else None,
    }
    for name, key in (("reward_mean", "reward/total/mean"), ("format_mean", "reward/format/mean"),
                      ("length_mean", "reward/length/mean"), ("writing_mean", "reward/writing/mean"),
                      ("length_in_range", "rollout/length_in_range_frac")):
        first, last = first_last(grpo, key)
        summary[f"{name}_first5"], summary[f"{name}_last5"] = first, last
    for name, key in (("heldout_reward", "eval/reward/total/mean"), ("heldout_format", "eval/reward/format/mean"),
                      ("heldout_in_range", "eval/rollout/length_in_range_frac")):
        values = _series(grpo, key)  # before the first update and after the last (rl.eval)
        summary[f"{name}_first"], summary[f"{name}_last"] = (_mean(values[:1]), _mean(values[-1:])) if values else (None, None)
    summary["grpo_steps"] = sum("reward/total/mean" in r for r in grpo)
    summary["stage_seconds"] = {k: round(v, 1) for k, v in times.items()}
    plot = plot_metrics(out / "grpo" / "metrics.jsonl", out / "demo_summary.png",
                        ("reward/total/mean", "reward/length/mean", "reward/writing/mean", "reward/format/mean",
                         "rollout/length_in_range_frac", "rollout/answer_words/mean", "eval/reward/total/mean"),
                        title="GRPO (CPU demo)")
    summary["plot"] = str(plot)
    summary["run_dir"] = str(out)
    _print_table(summary)
    return summary


def _print_table(s: dict) -> None:
    rows = [("pretraining loss", s["pretrain_loss_first"], s["pretrain_loss_last"]),
            ("Writing RM held-out accuracy", None, s["rm_eval_accuracy"]),
            ("GRPO total reward (mean, 5 steps)", s["reward_mean_first5"], s["reward_mean_last5"]),
            ("GRPO length reward", s["length_mean_first5"], s["length_mean_last5"]),
            ("GRPO writing reward", s["writing_mean_first5"], s["writing_mean_last5"]),
            ("GRPO format reward", s["format_mean_first5"], s["format_mean_last5"]),
            ("answers in length range", s["length_in_range_first5"], s["length_in_range_last5"]),
            ("held-out total reward (greedy, step 0 / last)", s["heldout_reward_first"], s["heldout_reward_last"]),
            ("held-out format reward", s["heldout_format_first"], s["heldout_format_last"]),
            ("held-out answers in length range", s["heldout_in_range_first"], s["heldout_in_range_last"])]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print("\n| stage / metric | first | last |\n|---|---|---|")
    for name, first, last in rows:
        print(f"| {name} | {fmt(first)} | {fmt(last)} |")
    print(f"\nstage seconds: {s['stage_seconds']}   plot: {s['plot']}")
