"""``lwz grpo`` end to end (tiny random policy, Length + Format rewards): the run directory holds
tensorboard events, the reward plot, rollout dumps, checkpoints and the resolved config, and a rerun
with more iterations resumes from the last checkpoint at the right prompt position (issue: GRPO)."""

from __future__ import annotations

import json

import pytest

from megatron_lwz.rl.prompts import PromptDataConfig, load_prompts, prompt_batch
from tests.e2e.conftest import ROOT, VOCAB, lwz

pytestmark = pytest.mark.e2e


def _args(demo, steps: int) -> list[str]:
    return ["--config", str(ROOT / "examples/grpo/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
            "checkpoint.load_dir=null", "checkpoint.save_interval=1", "writing_rm.checkpoint=null",
            "reward.components=[length,format]", f"rl.num_steps={steps}", "rl.prompts_per_step=2",
            "rl.group_size=4", "rl.max_tokens=12", "reward.overlong.max_response_tokens=12",
            "reward.overlong.buffer_tokens=4", f"logging.run_dir={demo}/grpo", "logging.progress=false",
            f"rl.eval.path={demo}/data/rl_prompts_heldout.jsonl", "rl.eval.max_prompts=3", "rl.eval.interval=0",
            "prompts.max_prompts=5"]


def test_grpo_run_directory_and_resume(demo_data):
    env = {"DEMO_DIR": str(demo_data)}
    proc = lwz("grpo", *_args(demo_data, 2), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = demo_data / "grpo"
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "grpo_rewards.png").is_file() and (run / "grpo_lengths.png").is_file()
    dumps = sorted((run / "rollouts").glob("step_*.jsonl"))
    assert [p.name for p in dumps] == ["step_00001.jsonl", "step_00002.jsonl"]
    first = json.loads(dumps[0].read_text().splitlines()[0])
    assert {"response", "rewards", "finish_reason", "length_range"} <= set(first)
    assert (run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("reward/length/mean", "reward/format/mean", "rollout/truncated_frac", "train/entropy_mean",
                "train/grad_norm", "time/rollout_s", "time/train_s", "time/sync_s", "perf/tokens_per_s"):
        assert key in rows[-2], key  # the last row is the final evaluation
    train_rows = [r for r in rows if "reward/total/mean" in r]
    assert train_rows[0]["rollout/logprob_gap_mean"] < 1e-4, "rollout engine and trainer disagree"
    # Held-out evaluation before the first and after the last update, its answers dumped.
    evals = [r for r in rows if "eval/reward/total/mean" in r]
    assert [r["step"] for r in evals] == [0, 2] and all(r["eval/rollout/num_samples"] == 3 for r in evals)
    assert {"eval/reward/length/mean", "eval/reward/format/mean", "eval/rollout/length_in_range_frac"} <= set(evals[0])
    assert sorted(p.name for p in (run / "eval").glob("*.jsonl")) == ["step_00000.jsonl", "step_00002.jsonl"]
    assert (run / "grpo_eval.png").is_file()
    # Resume: one more iteration continues at step 3 with the stored prompt position.
    proc = lwz("grpo", *_args(demo_data, 3), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stdout and "at step 2" in proc.stdout
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2, 3, 3]  # eval 0, train 1–2, eval 2 | resumed: train 3, eval 3
    records = load_prompts(PromptDataConfig(path=str(demo_data / "data" / "rl_prompts.jsonl"), max_prompts=5)).records
    expected = {p.prompt_id for p in prompt_batch(records, 1234, 4, 2)}  # prompts 4..5: the 2nd epoch begins
    got = {json.loads(line)["prompt_id"] for line in (run / "rollouts" / "step_00003.jsonl").read_text().splitlines()}
    assert got == expected
