"""The megatron-core CPU compatibility layer: each patch does what it claims, only without CUDA.

Run in a subprocess: the layer patches torch process-wide, which must not leak into other tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="the layer is inactive with CUDA")
def test_patches_behave():
    out = _run("""
        import torch
        from megatron_lwz.parallel import cpu_compat
        assert not cpu_compat.is_active()
        assert cpu_compat.install() and cpu_compat.install()            # idempotent
        # C1: CUDA devices map to CPU; .cuda() is a no-op
        assert torch.empty(2, device="cuda").device.type == "cpu"
        assert torch.zeros(2, device=torch.cuda.current_device()).device.type == "cpu"
        assert torch.ones(1).cuda().device.type == "cpu" and torch.ones(1).to("cuda").device.type == "cpu"
        # C3: type strings megatron's dtype dispatch checks
        assert torch.ones(1).type() == "torch.cuda.FloatTensor"
        assert torch.ones(1, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
        assert torch.ones(1).type(torch.float64).dtype == torch.float64   # conversion form untouched
        # C2: megatron's RNG tracker forks deterministically and restores the outer stream
        from megatron.core.tensor_parallel import random as mp_random
        tracker = mp_random.get_cuda_rng_tracker()
        tracker.reset(); tracker.add("model-parallel-rng", 123)
        torch.manual_seed(0); before = torch.rand(3)
        torch.manual_seed(0)
        with tracker.fork():
            a = torch.rand(3)
        after = torch.rand(3)
        assert torch.equal(after, before), "the fork must restore the default stream"
        tracker.reset(); tracker.add("model-parallel-rng", 123)
        with tracker.fork():
            b = torch.rand(3)
        assert torch.equal(a, b) and not torch.equal(a, before)
        # C5: synchronisation / events are no-ops
        torch.cuda.synchronize(); e = torch.cuda.Event(enable_timing=True); e.record()
        print("ok")
    """)
    assert out.strip().endswith("ok")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the layer is inactive with CUDA")
def test_grad_clipping_runs_through_megatron():
    """Without C3 megatron's clip_grad_by_total_norm_fp32 asserts on CPU tensors (clip_grads.py:174)."""
    out = _run("""
        import torch
        from megatron_lwz.parallel import cpu_compat
        cpu_compat.install()
        import torch.distributed as dist, os
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29677")
        dist.init_process_group("gloo", rank=0, world_size=1)
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32, get_grad_norm_fp32
        p = torch.nn.Parameter(torch.ones(4)); p.grad = torch.full((4,), 2.0)
        norm = get_grad_norm_fp32([p.grad])
        clip_grad_by_total_norm_fp32([p], max_norm=1.0, total_norm=norm)
        print(round(float(norm), 4), [round(x, 4) for x in p.grad.tolist()])
    """)
    norm, grads = out.strip().split(" ", 1)
    assert float(norm) == 4.0 and grads == "[0.5, 0.5, 0.5, 0.5]"  # ‖g‖ = √(4·2²) = 4 → g·(1/4)


def test_inactive_with_cuda(monkeypatch):
    from megatron_lwz.parallel import cpu_compat

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cpu_compat.install() is False
