"""Stop inside the job's time limit: save while a save still fits, instead of dying at the limit.

The job's end time comes from ``LWZ_JOB_END_TIME`` (Unix seconds; an override for tests and for
launchers that know better), else ``SLURM_JOB_END_TIME`` (exported by recent SLURM versions), else
``squeue -h -j $SLURM_JOB_ID -o %e`` (queried once, on rank 0 only). Outside SLURM there is none.

At every step boundary :meth:`DeadlineGuard.must_stop` checks

    now + next step + save + margin > end time

with the *measured* step time (the longest of the last few steps) and save time (the longest save
of this run; ``save_estimate_s`` until one has been measured). A True answer is handled like a
preemption signal (``PreemptionWatcher.request_stop``): every rank stops at the same step, saves,
and exits with ``checkpoint.exit_code_on_signal`` so that the launcher requeues the job.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import subprocess
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

log = logging.getLogger(__name__)

ENV_OVERRIDE = "LWZ_JOB_END_TIME"
"""Environment variable: the job's end time in Unix seconds (takes precedence over SLURM)."""


def _parse_slurm_time(text: str) -> float | None:
    """``2026-12-01T23:59:59`` (local time, squeue ``%e``) → Unix seconds; None for N/A, UNLIMITED, ...."""
    text = text.strip()
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def job_end_time(env: Mapping[str, str] | None = None,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> float | None:
    """The job's end time (Unix seconds) or None when unknown / unlimited (see the module docstring).

    Raises ValueError naming the variable when ``LWZ_JOB_END_TIME`` / ``SLURM_JOB_END_TIME`` is not
    a number.
    """
    env = os.environ if env is None else env
    for name in (ENV_OVERRIDE, "SLURM_JOB_END_TIME"):
        if env.get(name, "").strip():
            try:
                return float(env[name])
            except ValueError:
                raise ValueError(f"{name}={env[name]!r}: expected the job end time in Unix seconds") from None
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("squeue failed (%s): the job's time limit is not watched", err)
        return None
    end = _parse_slurm_time(out.stdout.splitlines()[0]) if out.returncode == 0 and out.stdout.strip() else None
    if end is None:
        log.warning("squeue -j %s -o %%e gave %r: the job's time limit is not watched", job, out.stdout.strip())
    return end


@dataclass
class DeadlineGuard:
    """Decides at each step boundary whether the next step plus a save still ends before ``end_time``."""

    end_time: float | None
    """Unix seconds; None disables the guard."""
    margin_s: float = 60.0
    """Slack kept free after the save (process teardown, the requeue command)."""
    save_estimate_s: float = 120.0
    """Save duration assumed until a save has been measured."""
    window: int = 5
    """Steps whose longest duration estimates the next one."""
    _steps: deque = field(default_factory=deque, repr=False)
    _last: float | None = field(default=None, repr=False)
    _save_s: float | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.end_time is not None

    def start(self, now: float) -> None:
        """The loop begins (the first step is measured from here)."""
        self._last = now

    def record_step(self, now: float) -> None:
        """A step ended at ``now``."""
        if self._last is not None:
            self._steps.append(now - self._last)
            while len(self._steps) > self.window:
                self._steps.popleft()
        self._last = now

    def record_save(self, seconds: float) -> None:
        self._save_s = max(seconds, self._save_s or 0.0)

    def resume_point(self, now: float) -> None:
        """The next step starts at ``now`` (time spent saving is not step time)."""
        self._last = now

    @property
    def step_s(self) -> float:
        return max(self._steps) if self._steps else 0.0

    @property
    def save_s(self) -> float:
        return self._save_s if self._save_s is not None else self.save_estimate_s

    def must_stop(self, now: float) -> bool:
        """True when ``now + next step + save + margin`` passes the end time."""
        if self.end_time is None:
            return False
        return now + self.step_s + self.save_s + self.margin_s > self.end_time

    def explain(self, now: float) -> str:
        return (f"{self.end_time - now:.0f} s left before the job's end time; next step ≈ {self.step_s:.0f} s, "
                f"save ≈ {self.save_s:.0f} s, margin {self.margin_s:.0f} s")
