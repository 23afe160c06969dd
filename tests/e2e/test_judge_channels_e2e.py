"""``lwz grpo`` on CPU with every reward channel beyond the paper on (issue 17): pairwise win rate and
query-only rubric judged by a scripted judge on a real loopback server, Length + Format, and a format gate
on the advantage. The run resumes; the judge metrics reach tensorboard; a rubric is asked once per prompt
across iterations and the resume."""

from __future__ import annotations

import json

import pytest

from megatron_lwz.rewards.scripted_judge import ScriptedJudge, serve, url_of
from tests.e2e.conftest import ROOT, VOCAB, lwz

pytestmark = pytest.mark.e2e

NEW_KEYS = ("reward/pairwise/mean", "reward/pairwise/judgments", "reward/pairwise/first_position_win_rate",
            "reward/pairwise/judge/requests", "reward/pairwise/judge/prompt_tokens",
            "reward/pairwise/judge/completion_tokens", "reward/pairwise/judge/latency_s",
            "reward/rubric/mean", "reward/rubric/generated", "reward/rubric/judge/prompt_tokens",
            "reward/rubric/judge/latency_s", "reward/gate/violated_frac", "reward/gate/format/violated_frac")


def _args(demo, url: str, steps: int) -> list[str]:
    return ["--config", str(ROOT / "examples/grpo/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
            "checkpoint.load_dir=null", "checkpoint.save_interval=1", "writing_rm.checkpoint=null",
            "reward.components=[length,format,pairwise,rubric]", "reward.gate.thresholds={format: 0.5}",
            f"reward.judge.url={url}", "reward.judge.model=scripted", "reward.judge.concurrency=4",
            "reward.pairwise.peers=1", "reward.rubric.num_criteria=3",
            f"rl.num_steps={steps}", "rl.prompts_per_step=2", "rl.group_size=4", "rl.max_tokens=12",
            "reward.overlong.policy=none",  # 12-token answers are all truncated: judge them anyway
            "reward.overlong.max_response_tokens=12", "reward.overlong.buffer_tokens=4",
            f"logging.run_dir={demo}/grpo_judge", "logging.progress=false", "rl.eval.path=null",
            "prompts.max_prompts=5"]


def _tb_tags(run) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in (run / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def test_grpo_with_judge_channels_and_gate_resumes(demo_data):
    judge = ScriptedJudge()
    server = serve(judge)
    env = {"DEMO_DIR": str(demo_data), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    try:
        proc = lwz("grpo", *_args(demo_data, url_of(server), 2), env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        run = demo_data / "grpo_judge"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for key in NEW_KEYS:
            assert key in rows[-1], key
        assert all(r["reward/pairwise/judgments"] == 2 * 2 * 4 for r in rows)  # 2 prompts × 4 pairs × 2 orders
        assert all(r["reward/pairwise/failures"] == 0 and r["reward/rubric/failures"] == 0 for r in rows)
        assert set(NEW_KEYS) <= _tb_tags(run)
        assert (run / "judge_cache.sqlite").is_file()
        first_rubrics = judge.counts["rubric"]
        proc = lwz("grpo", *_args(demo_data, url_of(server), 3), env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "resumed from" in proc.stdout and "at step 2" in proc.stdout
    finally:
        server.shutdown()
    prompts = {json.loads(line)["prompt_id"] for p in (run / "rollouts").glob("step_*.jsonl")
               for line in p.read_text().splitlines()}
    # one rubric request per distinct prompt over both processes; the resumed step reused the cached ones
    assert judge.counts["rubric"] == len(prompts) == len(list((run / "rubrics").glob("*.json")))
    assert first_rubrics == 4 and judge.counts["rubric"] == 5  # steps 1–2: prompts 0–3; step 3 adds prompt 4
    assert set(NEW_KEYS) <= _tb_tags(run)
