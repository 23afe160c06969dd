"""Stopping inside the job's time limit (issue 12 item 2): where the end time comes from, and the
"next step + save + margin" rule on measured times (a fake clock: no timing assertions)."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from megatron_lwz.checkpoint.deadline import DeadlineGuard, job_end_time


def _fake_squeue(stdout: str, calls: list):
    def run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=stdout, stderr="")
    return run


def test_end_time_sources_in_order():
    calls: list = []
    run = _fake_squeue("2026-12-01T23:59:59\n", calls)
    assert job_end_time({"LWZ_JOB_END_TIME": "1000.5", "SLURM_JOB_END_TIME": "7", "SLURM_JOB_ID": "9"}, run) == 1000.5
    assert job_end_time({"SLURM_JOB_END_TIME": "7", "SLURM_JOB_ID": "9"}, run) == 7.0
    assert not calls
    want = dt.datetime(2026, 12, 1, 23, 59, 59).timestamp()  # squeue prints local time
    assert job_end_time({"SLURM_JOB_ID": "9"}, run) == want
    assert calls == [["squeue", "-h", "-j", "9", "-o", "%e"]]
    assert job_end_time({}, run) is None                           # not a SLURM job
    assert job_end_time({"SLURM_JOB_ID": "9"}, _fake_squeue("UNLIMITED\n", [])) is None
    with pytest.raises(ValueError, match="LWZ_JOB_END_TIME='soon'"):
        job_end_time({"LWZ_JOB_END_TIME": "soon"}, run)


def test_stops_when_the_next_step_plus_a_save_would_not_fit():
    guard = DeadlineGuard(1000.0, margin_s=10.0, save_estimate_s=50.0)
    guard.start(0.0)
    for now in (100.0, 200.0, 300.0):           # steps of 100 s
        guard.record_step(now)
    assert guard.step_s == 100.0 and guard.save_s == 50.0
    assert not guard.must_stop(300.0)           # 300 + 100 + 50 + 10 = 460 ≤ 1000
    assert not guard.must_stop(840.0)           # 1000 exactly
    assert guard.must_stop(841.0)
    guard.record_save(200.0)                    # a measured save replaces the estimate
    assert guard.save_s == 200.0 and guard.must_stop(700.0) and not guard.must_stop(690.0)


def test_save_time_is_not_step_time_and_longest_recent_step_counts():
    guard = DeadlineGuard(10_000.0, window=2)
    guard.start(0.0)
    guard.record_step(10.0)
    guard.record_save(500.0)
    guard.resume_point(510.0)                   # the save took 500 s
    guard.record_step(520.0)
    assert guard.step_s == 10.0
    guard.record_step(600.0)
    guard.record_step(610.0)
    assert guard.step_s == 80.0                 # max of the last two steps (10, 80 → window 2: 80, 10)


def test_no_end_time_never_stops():
    guard = DeadlineGuard(None)
    guard.start(0.0)
    guard.record_step(1e9)
    assert not guard.enabled and not guard.must_stop(1e12)
