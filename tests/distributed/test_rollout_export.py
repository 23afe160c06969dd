"""Megatron → HF weight export (issue: rollout engines): TP=2 and PP=2 exports load strict into HF
``Qwen2ForCausalLM`` with logits equal to megatron's (1e-4, fp32); after a training step
``update_weights`` makes the HF engine follow the trainer; rollout log-probs match the trainer's."""

from __future__ import annotations

from pathlib import Path

import pytest

from megatron_lwz.checkpoint.mapping import hf_names
from megatron_lwz.models.presets import PRESETS
from tests.distributed.compare import assert_layouts
from tests.launch import torchrun

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_export.py")


def _check(res: dict, tied: bool) -> None:
    assert_layouts(res, ["tp1", "tp2", "pp2"])
    for layout, r in res.items():
        assert r["logits_before"] < 1e-4, f"{layout}: exported logits differ by {r['logits_before']:.2e}"
        assert r["moved"] > 1e-2, f"{layout}: the training step did not change the model (test would be vacuous)"
        assert r["logits_after"] < 1e-4, f"{layout}: after update_weights logits differ by {r['logits_after']:.2e}"
        assert r["rollout_logprob"] < 1e-4, f"{layout}: rollout vs trainer log-probs differ by {r['rollout_logprob']:.2e}"
        arch = PRESETS["tiny-gqa3"]
        expected = hf_names(arch if not tied else type(arch)(**{**arch.__dict__, "tie_word_embeddings": True}))
        assert r["names"] == sorted(expected)


@pytest.mark.parametrize("tied", [False, True], ids=["untied-collectives", "tied-shm"])
def test_export_tp2_pp2(tmp_path, tied):
    """Untied over gloo collectives (the GPU / multi-host path), tied over the CPU shared-memory path."""
    init = tmp_path / "init.pt"
    flag = ["--tied"] if tied else ["--no-shm"]
    ref = torchrun(WORKER, 1, ["--layouts", "tp1", "--init", str(init), "--write-init", *flag], tmp_path / "one.json")
    out = torchrun(WORKER, 2, ["--layouts", "tp2,pp2", "--init", str(init), *flag], tmp_path / "two.json")
    _check({**ref, **out}, tied)
