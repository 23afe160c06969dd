"""Vocab-parallel log-probs / entropy against plain torch, and the GRPO loss reading both from the same
logits (megatron's cross entropy overwrites fp32 logits in place: entropy must be taken first)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CODE = """
import os, torch
from megatron_lwz.parallel import cpu_compat; cpu_compat.install()
import torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(__import__("megatron_lwz.parallel.env", fromlist=["x"]).free_port()))
dist.init_process_group("gloo", rank=0, world_size=1)
from megatron.core import parallel_state as ps; ps.initialize_model_parallel()
from types import SimpleNamespace
from megatron_lwz.engine.logprobs import token_entropy, token_logprobs
from megatron_lwz.rl.config import LossConfig
from megatron_lwz.rl.step import make_loss_fn
g = torch.Generator().manual_seed(0)
z = torch.randn(2, 5, 11, generator=g) * 2
y = torch.randint(0, 11, (2, 5), generator=g)
ref_lp = torch.log_softmax(z, -1).gather(-1, y[..., None]).squeeze(-1)
ref_h = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)
assert torch.allclose(token_entropy(z.clone()), ref_h, atol=1e-6)
assert torch.allclose(token_logprobs(z.clone(), y), ref_lp, atol=1e-6)
# padded vocabulary: ids >= 8 are padding and must not enter the softmax
ref_lp8 = torch.log_softmax(z[..., :8], -1).gather(-1, y.clamp(max=7)[..., None]).squeeze(-1)
assert torch.allclose(token_logprobs(z.clone(), y.clamp(max=7), vocab_size=8), ref_lp8, atol=1e-6)
cfg = SimpleNamespace(rl=SimpleNamespace(loss=LossConfig()))
ctx = SimpleNamespace(tp_group=None, tp_rank=0)
mask = torch.ones(2, 5)
mb = {"labels": y, "old_logprobs": ref_lp, "advantages": torch.tensor([1.0, -1.0]), "loss_mask": mask}
loss, sums = make_loss_fn(cfg, ctx, 11, 10, 2)(mb, z.clone().requires_grad_())
assert abs(float(sums["entropy_sum"]) - float(ref_h.sum())) < 1e-4, (float(sums["entropy_sum"]), float(ref_h.sum()))
assert abs(float(sums["ratio_sum"]) - 10.0) < 1e-5  # old = current ⇒ ratio 1 on all 10 tokens
print("ok")
"""


def test_logprobs_entropy_and_loss_fn():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(CODE)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
