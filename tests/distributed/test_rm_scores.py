"""Writing-RM scores at TP=2, PP=2 and DP=2 equal the single-process scores within 1e-5 (issue: rewards)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.compare import assert_close_seq, assert_layouts
from tests.launch import torchrun

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_rm.py")


def test_rm_scores_layouts(tmp_path):
    init = tmp_path / "init.pt"
    ref = torchrun(WORKER, 1, ["--layouts", "tp1", "--init", str(init), "--write-init"], tmp_path / "one.json")["tp1"]
    assert len(ref) == 7 and max(ref) - min(ref) > 1e-3, "scores must differ across inputs (else vacuous)"
    out = torchrun(WORKER, 2, ["--layouts", "tp2,pp2,dp2", "--init", str(init)], tmp_path / "two.json")
    assert_layouts(out, ["tp2", "pp2", "dp2"])
    for layout, scores in out.items():
        assert_close_seq(scores, ref, rel=1e-5, abs_tol=1e-6, what=f"{layout} RM scores")
