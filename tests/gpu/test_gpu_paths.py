"""The GPU-only paths a CPU rehearsal cannot run: TE kernels, FP8, NCCL, vLLM inside the real GRPO loop.

Run on one node (``slurm/smoke.sbatch`` runs them last, with its demo data in ``LWZ_SMOKE_DIR``;
otherwise the demo data is made here, ~1 min). Every job goes through the real CLI under torchrun.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.launch import ROOT, free_port, torchrun

NGPU = torch.cuda.device_count() if torch.cuda.is_available() else 0
HAS_TE = importlib.util.find_spec("transformer_engine") is not None
HAS_VLLM = importlib.util.find_spec("vllm") is not None
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(NGPU == 0, reason="needs CUDA")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    given = os.environ.get("LWZ_SMOKE_DIR")
    if given:
        return Path(given)
    from megatron_lwz.cli.demo import prepare_data

    out = tmp_path_factory.mktemp("demo")
    prepare_data(out, 4096)
    return out


def lwz(demo: Path, nproc: int, *args: str, timeout: float = 1200) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
           "-m", "megatron_lwz.cli.main", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, DEMO_DIR=str(demo)), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.skipif(NGPU < 4, reason="needs 4 GPUs")
def test_nccl_layouts_equal_one_gpu(tmp_path):
    """TP2 and TP2×PP2 over NCCL = 1 GPU (the CPU equivalence worker, on CUDA; TF32-level tolerance)."""
    worker = ROOT / "tests" / "distributed" / "worker_equivalence.py"
    init = tmp_path / "init.pt"
    ref = torchrun(worker, 1, ["--layouts", "tp1pp1", "--init", str(init), "--write-init"], tmp_path / "r.json")
    got = torchrun(worker, 4, ["--layouts", "tp2,tp2pp2", "--init", str(init)], tmp_path / "g.json")
    assert set(got) == {"tp2", "tp2pp2"}
    for layout, out in got.items():
        assert len(out["losses"]) == len(ref["tp1pp1"]["losses"]) == 3
        for a, b in zip(out["losses"], ref["tp1pp1"]["losses"]):
            assert abs(a - b) <= 2e-3 * abs(b), f"{layout}: loss {a} vs {b}"


@pytest.mark.skipif(not HAS_TE, reason="needs transformer-engine")
def test_te_pretrain_resume_and_fp8_step(demo, tmp_path):
    """TE spec over NCCL: 2 steps, resume to 3 (a local-spec checkpoint would load the same way);
    FP8 (hybrid, tensorwise) steps must change the loss curve, i.e. the weights move."""
    base = ["pretrain", "--config", "examples/pretrain/tiny_cpu.yaml", "model.layer_spec=te", "precision.dtype=bf16",
            f"logging.run_dir={tmp_path}/te", f"checkpoint.save_dir={tmp_path}/te/ckpt", "train.micro_batch_size=1",
            f"train.global_batch_size={2 * NGPU}"]
    lwz(demo, NGPU, *base, "train.train_steps=2")
    lwz(demo, NGPU, *base, "train.train_steps=3")
    assert [r["step"] for r in rows(tmp_path / "te") if "train/loss" in r] == [1, 2, 3]
    fp8 = [a.replace("/te", "/fp8") for a in base] + ["precision.fp8=hybrid", "precision.fp8_recipe=tensorwise",
                                                        "train.train_steps=4"]
    lwz(demo, NGPU, *fp8)
    losses = [r["train/loss"] for r in rows(tmp_path / "fp8") if "train/loss" in r]
    assert len(losses) == 4 and len(set(round(x, 6) for x in losses)) > 1, losses


@pytest.mark.skipif(not (HAS_TE and HAS_VLLM), reason="needs transformer-engine and vllm==0.33.0")
def test_grpo_with_vllm_verifies_every_sync(demo, tmp_path):
    """The real GRPO loop with vLLM colocated: level-2 sleep, IPC sync, the gap check at every sync."""
    lwz(demo, 1, "pretrain", "--config", "examples/pretrain/tiny_cpu.yaml", "train.train_steps=2",
        f"logging.run_dir={tmp_path}/pre", f"checkpoint.save_dir={tmp_path}/pre/ckpt")
    lwz(demo, 1, "grpo", "--config", "examples/grpo/tiny_cpu.yaml", "rl.num_steps=2", "rollout.engine=vllm",
        "rollout.tensor_parallel_size=1", "rollout.gpu_memory_utilization=0.3", "rollout.verify_every=1",
        "rollout.sleep_level=2", "writing_rm.checkpoint=null", f"checkpoint.load_dir={tmp_path}/pre/ckpt",
        f"logging.run_dir={tmp_path}/grpo", f"checkpoint.save_dir={tmp_path}/grpo/ckpt")
    gaps = [r["rollout/logprob_gap_mean"] for r in rows(tmp_path / "grpo") if "rollout/logprob_gap_mean" in r]
    assert len(gaps) == 2 and max(gaps) < 0.05, gaps
