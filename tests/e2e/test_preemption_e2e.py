"""Preemption through the real ``lwz pretrain`` / ``lwz grpo`` processes (issue 12 item 2 + 4).

A SIGTERM (or SIGUSR1) sent from outside to the running job makes it save a checkpoint at the current step and
exit with ``checkpoint.exit_code_on_signal``; a rerun resumes at the next step; ``metrics.jsonl``
then holds every step once and the losses equal those of an uninterrupted run (CPU: bit for bit).
A job end time (``LWZ_JOB_END_TIME``) that leaves no room for another step and a save stops the run
the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, VOCAB, lwz

pytestmark = pytest.mark.e2e
EXIT = 124


def _rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _interrupt(args: list[str], run: Path, env: dict, ready, sig=signal.SIGTERM) -> tuple[int, str]:
    """Start ``lwz ARGS``; once ``ready(rows)`` send ``sig`` from outside; (exit code, output)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore", **env)
    proc = subprocess.Popen([sys.executable, "-m", "megatron_lwz.cli.main", *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while not ready(_rows(run)):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the job ended (exit {proc.poll()}) before it could be interrupted:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def _marker(run: Path) -> int:
    return int((run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text())


def _check_resumed(run: Path, ref: Path, stopped: int, total: int, keys: tuple[str, ...]) -> None:
    rows = [r for r in _rows(run) if keys[0] in r]
    assert [r["step"] for r in rows] == list(range(1, total + 1)), "every step once, in order"
    want = [r for r in _rows(ref) if keys[0] in r]
    for key in keys:
        assert [r[key] for r in rows] == [r[key] for r in want], \
            f"{key}: resumed run ({stopped} + {total - stopped} steps) vs uninterrupted"


# ---------------------------------------------------------------------------------------------- pretrain
def _pretrain(demo: Path, name: str, steps: int) -> list[str]:
    """Async interval saves every 4 steps (checkpoint.async_save, the default) besides the stop save."""
    return ["pretrain", "--config", str(ROOT / "examples/pretrain/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
            "data.seq_length=128", "train.micro_batch_size=4", "train.global_batch_size=8",
            f"train.train_steps={steps}", "train.eval_interval=0", "checkpoint.save_interval=4",
            f"checkpoint.exit_code_on_signal={EXIT}", "scheduler.warmup_steps=2", f"logging.run_dir={demo}/{name}",
            "logging.progress=false", "logging.log_interval=1", "logging.plots=false"]


def test_sigterm_to_lwz_pretrain_saves_exits_and_resumes(demo_data):
    env, total = {"DEMO_DIR": str(demo_data)}, 40
    ref = lwz(*_pretrain(demo_data, "pre_ref", total), env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    run = demo_data / "pre_sig"
    code, out = _interrupt(_pretrain(demo_data, "pre_sig", total), run, env, lambda rows: len(rows) >= 3)
    assert code == EXIT, out[-3000:]
    stopped = _marker(run)
    assert 3 <= stopped < total and f"checkpoint saved at step {stopped}" in out, out[-3000:]
    assert [r["step"] for r in _rows(run)] == list(range(1, stopped + 1))
    again = lwz(*_pretrain(demo_data, "pre_sig", total), env=env)
    assert again.returncode == 0 and f"at step {stopped}" in again.stdout, again.stderr[-3000:]
    _check_resumed(run, demo_data / "pre_ref", stopped, total, ("train/loss", "train/grad_norm"))


def test_job_end_time_stops_lwz_pretrain_before_the_limit(demo_data):
    """An end time already reached: the next step and a save cannot fit, so the run stops after one step."""
    run = demo_data / "pre_deadline"
    proc = lwz(*_pretrain(demo_data, "pre_deadline", 40), env={"DEMO_DIR": str(demo_data),
                                                                 "LWZ_JOB_END_TIME": str(time.time() - 1)})
    assert proc.returncode == EXIT, proc.stderr[-3000:]
    assert "time limit: stopping at step 1" in proc.stdout
    assert _marker(run) == 1 and [r["step"] for r in _rows(run)] == [1]


# ---------------------------------------------------------------------------------------------- grpo
def _grpo(demo: Path, name: str, steps: int) -> list[str]:
    return ["grpo", "--config", str(ROOT / "examples/grpo/tiny_cpu.yaml"), f"model.vocab_size={VOCAB}",
            "checkpoint.load_dir=null", "checkpoint.save_interval=0", f"checkpoint.exit_code_on_signal={EXIT}",
            "writing_rm.checkpoint=null", "reward.components=[length,format]", f"rl.num_steps={steps}",
            "rl.prompts_per_step=2", "rl.group_size=4", "rl.max_tokens=12", "reward.overlong.max_response_tokens=12",
            "reward.overlong.buffer_tokens=4", f"logging.run_dir={demo}/{name}", "logging.progress=false",
            "logging.plots=false", "rl.eval.path=null", "prompts.max_prompts=5"]


@pytest.mark.slow
def test_sigusr1_to_lwz_grpo_saves_exits_and_resumes(demo_data):
    """SIGUSR1 (sbatch --signal=USR1@N, as the launcher forwards it) on the GRPO path."""
    env, total = {"DEMO_DIR": str(demo_data)}, 8
    ref = lwz(*_grpo(demo_data, "grpo_ref", total), env=env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    run = demo_data / "grpo_sig"
    code, out = _interrupt(_grpo(demo_data, "grpo_sig", total), run, env, lambda rows: len(rows) >= 2, signal.SIGUSR1)
    assert code == EXIT, out[-3000:]
    stopped = _marker(run)
    assert 2 <= stopped < total and f"checkpoint saved at step {stopped}" in out, out[-3000:]
    again = lwz(*_grpo(demo_data, "grpo_sig", total), env=env)
    assert again.returncode == 0 and f"at step {stopped}" in again.stdout, again.stderr[-3000:]
    _check_resumed(run, demo_data / "grpo_ref", stopped, total,
                   ("reward/total/mean", "train/grad_norm", "train/pg_loss_mean"))
