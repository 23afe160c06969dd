"""metrics.jsonl after a resume holds every step once (issue 12 item 4): the rows logged after the
checkpoint are dropped, a redone evaluation replaces the old row, and readers (summaries, plots)
see one row per step even in files written before the fix."""

from __future__ import annotations

import json

from megatron_lwz.config.schema import LoggingConfig
from megatron_lwz.metrics.logger import MetricLogger
from megatron_lwz.metrics.plots import read_metrics, read_rows

CFG = LoggingConfig(tensorboard=False, plots=False, progress=False)


def _steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def _run(run_dir, steps, resume_step, extra=None):
    logger = MetricLogger(run_dir, CFG, enabled=True, resume_step=resume_step)
    for step in steps:
        logger.log(step, {"train/loss": 10.0 - step}, echo=False)
    for step, metrics in (extra or []):
        logger.log(step, metrics, echo=False)
    logger.close()


def test_resume_drops_rows_after_the_checkpoint(tmp_path):
    _run(tmp_path, range(1, 9), resume_step=0)        # killed after logging step 8; last checkpoint at 5
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 9, "train/lo')            # a line cut by the kill
    _run(tmp_path, range(6, 11), resume_step=5)
    assert _steps(tmp_path / "metrics.jsonl") == list(range(1, 11))


def test_redone_evaluation_at_the_checkpoint_step_replaces_the_old_row(tmp_path):
    _run(tmp_path, [1, 2], resume_step=0, extra=[(2, {"eval/reward": 0.1})])
    _run(tmp_path, [3], resume_step=2, extra=[(2, {"eval/reward": 0.2}), (3, {"eval/reward": 0.3})])
    rows, bad = read_rows(tmp_path / "metrics.jsonl")
    assert not bad
    evals = [(r["step"], r["eval/reward"]) for r in rows if "eval/reward" in r]
    assert evals == [(2, 0.2), (3, 0.3)]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]


def test_fresh_start_in_an_old_run_directory_drops_its_rows(tmp_path):
    _run(tmp_path, range(1, 4), resume_step=0)
    _run(tmp_path, range(1, 3), resume_step=0)          # no checkpoint was kept: starts over
    assert _steps(tmp_path / "metrics.jsonl") == [1, 2]


def test_readers_merge_duplicate_steps_of_old_files(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "train/loss": float(s)} for s in (1, 2, 3, 2, 3, 4)]   # resumed at 1 without the fix
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "garbage\n")
    merged = read_metrics(path)
    assert [r["step"] for r in merged] == [1, 2, 3, 4]
    assert [r["train/loss"] for r in merged] == [1.0, 2.0, 3.0, 4.0]
