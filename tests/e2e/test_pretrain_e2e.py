"""``lwz pretrain`` on the generated corpus: loss falls ≥ 30%, tensorboard + PNG + config + versions are
written, and a rerun with more steps resumes from the last checkpoint (issue: continual pretraining)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import ROOT, VOCAB, lwz

pytestmark = pytest.mark.e2e


def _overrides(demo, steps: int) -> list[str]:
    return [f"model.vocab_size={VOCAB}", "data.seq_length=256", "train.micro_batch_size=4", "train.global_batch_size=8",
            f"train.train_steps={steps}", "train.eval_interval=20", "checkpoint.save_interval=20",
            "scheduler.warmup_steps=5", f"logging.run_dir={demo}/pretrain", "logging.progress=false", "logging.log_interval=1"]


def test_pretrain_lowers_loss_and_resumes(demo_data):
    env = {"DEMO_DIR": str(demo_data)}
    recipe = str(ROOT / "examples/pretrain/tiny_cpu.yaml")
    proc = lwz("pretrain", "--config", recipe, *_overrides(demo_data, 60), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = demo_data / "pretrain"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] <= 0.7 * losses[0], f"loss {losses[0]:.3f} → {losses[-1]:.3f}: less than a 30% drop"
    assert any("eval/loss" in r for r in rows)
    assert list((run / "tb").glob("events.out.tfevents.*")), "no tensorboard event file"
    assert (run / "pretrain_loss.png").stat().st_size > 1000
    assert (run / "config.yaml").is_file() and "torch" in (run / "versions.json").read_text()
    # Resume: 5 more steps continue from step 60 with the saved data position.
    proc = lwz("pretrain", "--config", recipe, *_overrides(demo_data, 65), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stdout and "at step 60" in proc.stdout
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 65 and 61 in steps and steps.count(20) == 1
