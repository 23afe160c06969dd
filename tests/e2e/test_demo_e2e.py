"""The README's main command, end to end (slow: ~12 minutes on 2 cores): ``lwz demo`` trains the whole
pipeline, GRPO raises the total, format and in-range rewards on the same prompts and on held-out ones,
the run directory holds what the GRPO issue lists, and a rerun with more iterations resumes."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import lwz

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]


def test_demo_learns_and_resumes(tmp_path):
    out = tmp_path / "demo"
    proc = lwz("demo", "--out", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    print("\n".join(proc.stdout.splitlines()[-16:]))  # the summary table and the JSON line
    assert s["pretrain_loss_last"] < 0.5 * s["pretrain_loss_first"] and s["rm_eval_accuracy"] >= 0.7
    assert s["grpo_steps"] == 20
    assert s["reward_mean_last5"] > s["reward_mean_first5"] + 0.1, "total reward must rise clearly"
    assert s["format_mean_last5"] > s["format_mean_first5"]
    assert s["length_in_range_last5"] > s["length_in_range_first5"]
    assert s["heldout_reward_last"] > s["heldout_reward_first"]
    grpo = out / "grpo"
    assert list((grpo / "tb").glob("events.out.tfevents.*")) and (out / "demo_summary.png").is_file()
    assert {p.name for p in grpo.glob("*.png")} >= {"grpo_rewards.png", "grpo_lengths.png", "grpo_eval.png"}
    assert len(list((grpo / "rollouts").glob("step_*.jsonl"))) == 20
    assert (grpo / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "20"
    # Rerun with two more iterations: finished stages are skipped, GRPO resumes at iteration 20.
    proc = lwz("demo", "--out", str(out), "--grpo-steps", "22", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "at step 20" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1])["grpo_steps"] == 22
