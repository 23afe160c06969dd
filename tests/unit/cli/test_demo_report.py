"""The demo's closing summary: first-5 / last-5 means over training iterations only (evaluation rows are
separate), held-out reward before the first and after the last update, the PNG, and the JSON keys the
GRPO issue asks for."""

from __future__ import annotations

import json

from megatron_lwz.cli.demo_report import report


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_summary_from_the_run_directories(tmp_path, capsys):
    _write(tmp_path / "pretrain" / "metrics.jsonl", [{"step": 5, "train/loss": 8.0}, {"step": 10, "train/loss": 2.5}])
    _write(tmp_path / "rm" / "metrics.jsonl", [{"step": 30, "eval/accuracy": 0.7}, {"step": 60, "eval/accuracy": 0.9}])
    grpo = [{"step": 0, "eval/reward/total/mean": 0.5, "eval/reward/format/mean": 0.2,
             "eval/rollout/length_in_range_frac": 0.1}]
    for step in range(1, 13):  # totals 1..12; format = step / 100; in-range = step / 20
        grpo.append({"step": step, "reward/total/mean": float(step), "reward/format/mean": step / 100,
                     "reward/length/mean": 0.5, "reward/writing/mean": 1.0,
                     "rollout/length_in_range_frac": step / 20, "rollout/answer_words/mean": 30.0})
        if step == 10:
            grpo.append({"step": 10, "eval/reward/total/mean": 0.8, "eval/reward/format/mean": 0.5,
                         "eval/rollout/length_in_range_frac": 0.2})
    grpo.append({"step": 12, "eval/reward/total/mean": 1.1, "eval/reward/format/mean": 0.9,
                 "eval/rollout/length_in_range_frac": 0.4})
    _write(tmp_path / "grpo" / "metrics.jsonl", grpo)
    summary = report(tmp_path, {"grpo": 1.0})
    assert (summary["pretrain_loss_first"], summary["pretrain_loss_last"], summary["rm_eval_accuracy"]) == (8.0, 2.5, 0.9)
    assert (summary["reward_mean_first5"], summary["reward_mean_last5"]) == (3.0, 10.0)  # mean(1..5), mean(8..12)
    assert (summary["format_mean_first5"], summary["format_mean_last5"]) == (0.03, 0.1)
    assert (summary["length_in_range_first5"], summary["length_in_range_last5"]) == (0.15, 0.5)
    assert (summary["heldout_reward_first"], summary["heldout_reward_last"]) == (0.5, 1.1)
    assert (summary["heldout_in_range_first"], summary["heldout_in_range_last"]) == (0.1, 0.4)
    assert summary["grpo_steps"] == 12 and summary["run_dir"] == str(tmp_path)
    assert (tmp_path / "demo_summary.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "| GRPO total reward (mean, 5 steps) | 3.0000 | 10.0000 |" in table
    assert "| held-out total reward (greedy, step 0 / last) | 0.5000 | 1.1000 |" in table
