"""SIGTERM during training → every rank stops at the same step boundary, a checkpoint is published,
and each process exits with ``checkpoint.exit_code_on_signal`` (issue #3 acceptance).

The signal goes to *one* rank only (the worst case for a preemption notice); the watcher's
all-reduce must still stop both.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.distributed.worker_ckpt_lib import spawn_ranks, wait_ranks

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_ckpt_signal.py")


def test_sigterm_saves_at_step_boundary_and_exits_with_configured_code(tmp_path):
    progress = tmp_path / "progress"
    progress.mkdir()
    procs = spawn_ranks(WORKER, 2, ["--ckpt", str(tmp_path / "ckpt"), "--progress-dir", str(progress),
                                    "--out", str(tmp_path / "out.json")])
    deadline, marker = time.time() + 300, progress / "rank1"
    while not (marker.is_file() and int(marker.read_text() or 0) >= 2):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            codes, output = wait_ranks(procs, timeout=5)
            pytest.fail(f"workers died or never reached step 2 (exit codes {codes}):\n{output}")
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # rank 1 only
    codes, output = wait_ranks(procs, timeout=300)
    assert codes == [124, 124], f"exit codes {codes}:\n{output}"
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["received"] == [None, signal.SIGTERM], "only rank 1 was signalled, yet both stopped"
    stopped = result["stopped_after"]
    assert 2 <= stopped < 300
    assert "received SIGTERM" in output
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(stopped)
    meta = json.loads((ckpt / f"iter_{stopped:07d}" / "lwz_meta.json").read_text())
    assert meta["step"] == stopped and meta["optimizer"] == "distributed/fully_reshardable"
    assert (ckpt / f"iter_{stopped:07d}" / ".metadata").is_file()
