"""SIGTERM during training → every rank stops at the same step boundary, a checkpoint is published,
and each process exits with ``checkpoint.exit_code_on_signal`` (issue #3 acceptance).

The signal goes to *one* rank only (the worst case for a preemption notice); the watcher's
all-reduce must still stop both.
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

from tests.launch import ROOT, free_port

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_ckpt_signal.py")


def test_sigterm_saves_at_step_boundary_and_exits_with_configured_code(tmp_path):
    port, world = free_port(), 2
    progress = tmp_path / "progress"
    progress.mkdir()
    procs = []
    for rank in range(world):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", RANK=str(rank),
                   WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, str(WORKER), "--ckpt", str(tmp_path / "ckpt"), "--progress-dir", str(progress),
               "--out", str(tmp_path / "out.json")]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    try:
        deadline = time.time() + 300
        marker = progress / "rank1"
        while not (marker.is_file() and int(marker.read_text() or 0) >= 2):
            assert time.time() < deadline and all(p.poll() is None for p in procs), \
                "workers died or never reached step 2:\n" + "".join(p.communicate()[0][-3000:] for p in procs)
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [p.returncode for p in procs]
    assert codes == [124, 124], f"exit codes {codes}:\n" + "\n".join(o[-3000:] for o in outputs)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["received"] == [None, signal.SIGTERM], "only rank 1 was signalled, yet both stopped"
    stopped = result["stopped_after"]
    assert 2 <= stopped < 300
    assert "received SIGTERM" in outputs[1]
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(stopped)
    meta = json.loads((ckpt / f"iter_{stopped:07d}" / "lwz_meta.json").read_text())
    assert meta["step"] == stopped and meta["optimizer"] == "distributed/fully_reshardable"
    assert (ckpt / f"iter_{stopped:07d}" / ".metadata").is_file()
