"""GRPO update (issue: GRPO acceptance): at the first update with recomputed old log-probs the
ratio is exactly 1 and the KL to the frozen initial policy is exactly 0; a GRPO step at TP=2 (and
PP=2, DP=2) equals TP=1 within 1e-5 relative (every metric and the grad norm; exact zeros stay
within 1e-9) and 1e-4 absolute (weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.compare import assert_close_seq, assert_layouts, max_abs_diff
from tests.launch import torchrun

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_grpo.py")


def test_grpo_step_layouts(tmp_path):
    init = tmp_path / "init.pt"
    ref = torchrun(WORKER, 1, ["--layouts", "tp1", "--init", str(init), "--write-init"], tmp_path / "one.json")["tp1"]
    first, second = ref["steps"]
    assert first["ratio_mean"] == 1.0 and first["ratio_std"] == 0.0, "recomputed old log-probs must give ratio 1"
    assert first["kl_ref_mean"] == 0.0 and first["approx_kl_old_mean"] == 0.0
    assert first["clipped_high_frac"] == 0.0 and first["clipped_low_frac"] == 0.0
    assert second["ratio_std"] > 1e-3 and second["kl_ref_mean"] > 0, "second update must move the policy"
    assert ref["num_microbatches"] > 1, "the token budget must split the batch (else packing is untested)"
    out = torchrun(WORKER, 2, ["--layouts", "tp2,pp2,dp2", "--init", str(init)], tmp_path / "two.json")
    assert_layouts(out, ["tp2", "pp2", "dp2"])
    for layout, got in out.items():
        assert len(got["steps"]) == len(ref["steps"]) == 2, f"{layout}: {len(got['steps'])} updates ran"
        for key in ref["steps"][0]:
            assert_close_seq([s[key] for s in got["steps"]], [s[key] for s in ref["steps"]], rel=1e-5, abs_tol=1e-9,
                             what=f"{layout} {key}")
        assert set(got["params"]) == set(ref["params"]), f"{layout}: parameter names differ"
        for name, values in ref["params"].items():
            diff = max_abs_diff(got["params"][name], values, f"{layout} {name}")
            assert diff <= 1e-4, f"{layout}: {name} differs by {diff:.2e}"
