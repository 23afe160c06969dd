"""Resume from training checkpoints (issue #3 acceptance), with the engine and the distributed optimizer.

* 6 uninterrupted steps vs 3 steps + save + SIGKILL + resume in a fresh launch (from a
  differently seeded model) for 3 steps: identical losses, bit for bit (CPU, TP1×DP2);
* the same in bf16 (bf16 params, fp32 main params);
* resuming the same checkpoint at TP=2 and at PP=2 × VPP=2: losses within 1e-5; a PP=2 × VPP=2 save
  loads weights-only at TP=1 (the Writing RM trained interleaved, scored by GRPO without);
* RNG states restored exactly on the same layout; step, consumed counts and data state come back;
* interrupted saves (a ``.tmp.*`` directory, a directory without ``.metadata``) are never picked,
  with or without the ``latest`` marker; missing and incompatible checkpoints give errors that
  name the problem ("hidden_size 64 vs 96").
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.distributed.worker_ckpt_lib import spawn_ranks, wait_ranks

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_ckpt_resume.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    ckpt = tmp / "ckpt"
    codes, output = wait_ranks(spawn_ranks(WORKER, 2, ["--phase", "first", "--ckpt", str(ckpt),
                                                       "--out", str(tmp / "first.json")]))
    assert codes == [-signal.SIGKILL] * 2 and (tmp / "first.json").is_file(), \
        f"the first launch must save, then die by SIGKILL (exit codes {codes}):\n{output}"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == "3"
    codes, output = wait_ranks(spawn_ranks(WORKER, 2, ["--phase", "resume", "--ckpt", str(ckpt),
                                                       "--out", str(tmp / "resume.json")]))
    assert codes == [0, 0], output
    return json.loads((tmp / "first.json").read_text()), json.loads((tmp / "resume.json").read_text())


def test_resume_after_sigkill_is_bit_exact(runs):
    first, resume = runs
    assert first["first"] == first["ref"][:3]
    assert resume["resumed"] == first["ref"][3:], (resume["resumed"], first["ref"])
    assert len(set(first["ref"])) == 6, "losses must change from step to step"


def test_resume_bf16_is_bit_exact(runs):
    """bf16 params + fp32 main params in the distributed optimizer (the GPU default)."""
    first, resume = runs
    assert resume["resumed_bf16"] == first["ref_bf16"][3:], (resume["resumed_bf16"], first["ref_bf16"])


@pytest.mark.parametrize("layout", ["tp2", "pp2vpp2"])
def test_resume_at_other_layout_from_tp1_checkpoint(runs, layout):
    first, resume = runs
    for got, want in zip(resume[f"resumed_{layout}"], first["ref"][3:], strict=True):
        assert abs(got - want) <= 1e-5 * abs(want), (resume[f"resumed_{layout}"], first["ref"][3:])


def test_interleaved_checkpoint_loads_at_tp1(runs):
    """Saved from PP2×VPP2 after steps 4–6, loaded weights-only into a TP1 model: the weights are the TP1
    run's after the same steps (the layouts' losses agree to 1e-5, so the weights agree closely)."""
    _, resume = runs
    got, want = resume["sums_from_vpp"], resume["sums_after_resume"]
    assert set(got) == set(want) and len(got) > 10
    for name, value in want.items():
        assert abs(got[name] - value) <= 1e-4 * max(1.0, abs(value)), (name, got[name], value)
    moved = [n for n in want if abs(want[n] - resume["loaded_sums"][n]) > 1e-3 * max(1.0, abs(want[n]))]
    assert len(moved) > 10, "steps 4–6 must move the weights (else the comparison is vacuous)"


def test_state_and_rng_restored(runs):
    first, resume = runs
    state = resume["state"]
    assert state["step"] == 3 and state["consumed_samples"] == 48 and state["consumed_tokens"] == 768
    assert state["data_state"] == {"next_step": 3} and state["extra"] == {"note": "resume test"}
    # The resuming launch was seeded differently (999 vs 1234): equal draws mean the states were restored.
    assert resume["rng_after_load"] == first["rng_after_save"]


def test_partial_checkpoints_are_never_picked(runs):
    _, resume = runs
    assert resume["picked_with_marker"] == 6
    assert resume["picked_without_marker"] == 6
    assert "iter_0000008 is not a complete checkpoint: missing .metadata" in resume["explicit_partial_error"]
    assert {"iter_0000003", "iter_0000006", "iter_0000008", ".tmp.iter_0000009"} <= set(resume["dirs"])


def test_missing_and_incompatible_checkpoints(runs):
    _, resume = runs
    assert resume["empty_dir"] is None and resume["missing_dir"] is None
    assert "no checkpoint to load weights from" in resume["weights_only_missing_error"]
    assert "optimizer state is 'distributed/fully_reshardable'" in resume["optimizer_format_error"]
    error = resume["arch_error"]
    assert "config mismatch" in error and "hidden_size 64 vs 96" in error, error
    assert "num_attention_heads 4 vs 6" in error and "vocab_size 256 vs 300" in error, error


def test_weights_only_into_reward_model_keeps_the_new_head(runs):
    """The Writing RM starts from a policy checkpoint: backbone loaded, scalar head (not in the
    checkpoint, which has a vocabulary output layer there) keeps its initialisation."""
    _, resume = runs
    assert resume["rm_state"]["step"] == 0
    policy, rm = resume["loaded_sums"], resume["rm_sums"]
    assert resume["rm_sums"]["output_layer.weight"] == resume["rm_head_before"]
    assert "output_layer.bias" in rm
    backbone = [n for n in policy if not n.startswith("output_layer")]
    assert len(backbone) > 10 and all(rm[n] == policy[n] for n in backbone)
