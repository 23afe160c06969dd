"""Writing-RM training at PP=2 pads every micro-batch to the longest sequence of the step's pairs
(not ``data.max_length``) and still equals the single-process run: losses, accuracies, margins and
grad norms within 1e-5 relative, held-out metrics too (issue 12, item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.compare import assert_close_seq, assert_layouts
from tests.distributed.worker_rm_train import MAX_LENGTH
from tests.launch import torchrun

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_rm_train.py")
KEYS = ("loss", "correct", "margin", "grad_norm")


def test_rm_training_pp2_pads_to_batch_max_and_equals_tp1(tmp_path):
    init = tmp_path / "init.pt"
    ref = torchrun(WORKER, 1, ["--layouts", "tp1", "--init", str(init), "--write-init"], tmp_path / "one.json")["tp1"]
    assert len(ref["steps"]) == 2 and ref["steps"][0]["loss"] != ref["steps"][1]["loss"]
    out = torchrun(WORKER, 2, ["--layouts", "pp2", "--init", str(init)], tmp_path / "two.json")
    assert_layouts(out, ["pp2"])
    got = out["pp2"]
    for step in got["steps"]:
        longest = step["batch_longest"]
        assert longest < MAX_LENGTH
        assert {tuple(s) for s in step["shapes"]} == {(4, longest)}, f"PP shapes {step['shapes']} vs longest {longest}"
    for key in KEYS:
        assert_close_seq([s[key] for s in got["steps"]], [s[key] for s in ref["steps"]], rel=1e-5, abs_tol=1e-7,
                         what=f"pp2 {key}")
    for key, value in ref["eval"].items():
        assert_close_seq([got["eval"][key]], [value], rel=1e-5, abs_tol=1e-7, what=f"pp2 {key}")
