"""TP / PP / DP / VPP runs equal the single-process run (issue: foundation acceptance).

Same init (the reference's full state is loaded into every layout), same data, 3 Adam steps at
lr 1e-3 with grad clip 1.0 and the distributed optimizer: per-step losses and grad norms within
1e-5 relative, final full parameters within 1e-4 absolute, probe log-probs within 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.compare import assert_close_seq, assert_layouts, max_abs_diff
from tests.launch import torchrun

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_equivalence.py")


def _compare(ref: dict, got: dict, layout: str) -> None:
    assert len(ref["losses"]) == 3, "the reference must run its 3 steps"
    assert_close_seq(got["losses"], ref["losses"], rel=1e-5, what=f"{layout} losses")
    assert_close_seq(got["grad_norms"], ref["grad_norms"], rel=1e-5, what=f"{layout} grad norms")
    assert set(got["params"]) == set(ref["params"]), f"{layout}: parameter names differ"
    for name, values in ref["params"].items():
        diff = max_abs_diff(got["params"][name], values, f"{layout} {name}")
        assert diff <= 1e-4, f"{layout}: {name} differs by {diff:.2e}"
    lp = max_abs_diff(got["logprobs"], ref["logprobs"], f"{layout} log-probs")
    assert lp <= 1e-5, f"{layout}: per-token log-probs differ by {lp:.2e}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("eq")
    init = tmp / "init.pt"
    ref = torchrun(WORKER, 1, ["--layouts", "tp1pp1", "--init", str(init), "--write-init"], tmp / "ref.json")
    import torch

    start = torch.load(init)
    moved = max((torch.tensor(v) - start[k].flatten()).abs().max().item() for k, v in ref["tp1pp1"]["params"].items())
    assert moved > 1e-3, "the reference must actually update its weights (else the comparison is vacuous)"
    return init, ref["tp1pp1"]


def test_two_process_layouts(reference, tmp_path):
    init, ref = reference
    out = torchrun(WORKER, 2, ["--layouts", "tp2,pp2,dp2", "--init", str(init)], tmp_path / "two.json")
    assert_layouts(out, ["tp2", "pp2", "dp2"])
    for layout, got in out.items():
        _compare(ref, got, layout)


def test_four_process_layouts(reference, tmp_path):
    """TP2×PP2, interleaved PP2×VPP2 with DP2, and TP2×DP2 — all with the distributed optimizer."""
    init, ref = reference
    out = torchrun(WORKER, 4, ["--layouts", "tp2pp2,pp2vpp2,tp2", "--init", str(init)], tmp_path / "four.json")
    assert_layouts(out, ["tp2pp2", "pp2vpp2", "tp2"])
    for layout, got in out.items():
        _compare(ref, got, layout)


def test_tied_embeddings_across_pipeline(tmp_path):
    """Tied input/output embeddings split over two pipeline stages (the embedding group syncs them)."""
    init = tmp_path / "init.pt"
    ref = torchrun(WORKER, 1, ["--layouts", "tp1pp1", "--tied", "--init", str(init), "--write-init"],
                   tmp_path / "ref.json")["tp1pp1"]
    out = torchrun(WORKER, 2, ["--layouts", "pp2", "--tied", "--init", str(init)], tmp_path / "two.json")
    assert_layouts(out, ["pp2"])
    _compare(ref, out["pp2"], "pp2 tied")
