"""slurm/launch.sh requeues whenever a stop was requested and the job step fails for that reason
(issue 12 item 2): srun reports 137 when one rank's teardown outlives KillWait. Runs the real
script with stand-ins for ``srun`` and ``scontrol`` on PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _launch(tmp_path: Path, srun_body: str) -> tuple[int, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f"#!/bin/bash\n{srun_body}\n")
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/scontrol.log\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="42", SLURM_JOB_NUM_NODES="1",
               LWZ_STATE_DIR=str(tmp_path / "state"), LWZ_POLL_SECONDS="0.1", LWZ_PYTHON="python3")
    proc = subprocess.run(["bash", str(ROOT / "slurm/launch.sh"), "pretrain", str(ROOT / "examples/pretrain/tiny_cpu.yaml")],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    log = (tmp_path / "scontrol.log").read_text() if (tmp_path / "scontrol.log").exists() else ""
    return proc.returncode, log, proc.stderr


@pytest.mark.parametrize("code", [137, 1])
def test_failed_step_after_a_stop_save_is_requeued(tmp_path, code):
    """The trainers stopped before the time limit (LWZ_STOPPED_FILE written), then srun said 137."""
    rc, log, err = _launch(tmp_path, f': > "$LWZ_STOPPED_FILE"; exit {code}')
    assert log.strip() == "requeue 42", err
    assert rc == 0, err


def test_requeue_exit_code_is_requeued(tmp_path):
    rc, log, err = _launch(tmp_path, "exit 124")
    assert log.strip() == "requeue 42" and rc == 0, err


def test_plain_failure_is_not_requeued(tmp_path):
    rc, log, err = _launch(tmp_path, "exit 137")
    assert log == "" and rc == 137, err


def test_success_is_not_requeued_even_after_a_stop_save(tmp_path):
    rc, log, err = _launch(tmp_path, ': > "$LWZ_STOPPED_FILE"; exit 0')
    assert log == "" and rc == 0, err
