"""The rehearsal's checks, each in a fresh process (the stand-in must be active before megatron loads).

Each case is a GPU-path defect the rehearsal exists to catch: a host batch fed to a device op
(defect 2), a host tensor on an NCCL group (defect 3), a device tensor on a gloo group; and the
fixed code paths (``global_token_count``, ``reduce_reports``, the rollout hand-off) that run clean.
"""

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import os
os.environ.update(RANK="0", WORLD_SIZE="64", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29400")
from megatron_lwz.parallel import rehearsal
rehearsal.activate()
import torch, torch.distributed as dist
from megatron_lwz.config.schema import ParallelConfig
from megatron_lwz import parallel
ctx = parallel.init(ParallelConfig(tensor_parallel=8, pipeline_parallel=2))
"""


def _run(body: str) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_world_and_groups_at_64_ranks():
    out = _run("""
        assert dist.get_world_size() == 64 and ctx.dp == 4 and ctx.device.type == "meta"
        assert rehearsal.declared_backend(ctx.dp_group) == "nccl"
        assert rehearsal.declared_backend(ctx.host_group) == "gloo"
        print("OK")
    """)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_host_batch_into_device_op_names_op_and_call_site():
    out = _run("""
        w = torch.empty(100, 16, device="cuda")        # the model's weight: on "the GPU"
        tokens = torch.randint(0, 100, (2, 8))          # a host batch that was never moved
        torch.nn.functional.embedding(tokens, w)
    """)
    assert out.returncode != 0
    assert "RehearsalViolation" in out.stderr and "aten.embedding" in out.stderr and "host/device mix" in out.stderr


def test_zero_dim_host_scalars_are_allowed():
    out = _run("""
        x = torch.empty(4, device="cuda")
        y = x * torch.tensor(2.0)   # CUDA accepts 0-dim host scalars
        print("OK", y.device)
    """)
    assert out.returncode == 0 and "OK meta" in out.stdout, out.stderr[-3000:]


@pytest.mark.parametrize("body,needle", [
    ("dist.all_reduce(torch.zeros(3), group=ctx.dp_cp_group)", "all_reduce on a nccl group got a host tensor"),
    ("dist.all_reduce(torch.zeros(3, device='cuda'), group=ctx.host_group)", "gloo group got a device tensor"),
])
def test_collective_device_rules(body, needle):
    out = _run(body)
    assert out.returncode != 0 and needle in out.stderr, out.stderr[-3000:]


def test_fixed_paths_run_clean():
    """Defect 3 sites after the fix: the token count and report reduction use device tensors."""
    out = _run("""
        from megatron_lwz.pretrain.steps import global_token_count
        from megatron_lwz.engine.step import reduce_reports, to_device
        mbs = [{"loss_mask": torch.ones(2, 8)}]
        global_token_count(mbs, ctx)
        moved = to_device({"tokens": torch.zeros(2, 8, dtype=torch.long), "n": 3}, ctx.device)
        assert moved["tokens"].device.type == "meta" and moved["n"] == 3
        print("OK", dict(rehearsal.COUNTS)["all_reduce"])
    """)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_old_token_count_fails():
    """What pretrain/steps.py did before the fix: a host tensor all-reduced on the NCCL DP group."""
    out = _run("""
        local = torch.tensor(16.0, dtype=torch.float64)
        dist.all_reduce(local, group=ctx.dp_cp_group)
    """)
    assert out.returncode != 0 and "host tensor" in out.stderr


def test_unbatched_p2p_returns_work_objects():
    """megatron's interleaved schedule (overlap_p2p_comm, batch_p2p_comm off) calls isend/irecv and
    waits on what they return: the stand-in world must hand back a Work, as torch does."""
    out = _run("""
        from megatron.core import parallel_state as ps
        group = ps.get_pipeline_model_parallel_group()
        t = torch.zeros(4, device="cuda")
        reqs = [dist.isend(t, 8, group=group), dist.irecv(t, 8, group=group)]
        for req in reqs:
            req.wait()
        print("OK", dict(rehearsal.COUNTS)["isend"])
    """)
    assert out.returncode == 0 and "OK 1" in out.stdout, out.stderr[-3000:]


def test_tracker_counts_a_storage_at_its_current_size():
    """A tracked storage key can come back bigger: resized in place, or a freed storage's address reused
    by a later allocation while the old tensor object lives on (megatron's DDP swaps ``param.data``; the
    reused address then held the 17 GiB grad buffer and the 72B RM's peak read 11 GiB low)."""
    import torch

    from megatron_lwz.parallel.rehearsal_memory import MemoryTracker

    tracker = MemoryTracker()
    a = torch.empty(16, device="meta")
    tracker.track(a)
    a.untyped_storage().resize_(4096)
    tracker.track(a[:2])  # a new view of the same (now bigger) storage
    assert tracker.live == 4096 and tracker.peak == 4096
    b = torch.empty(8, device="meta")
    tracker.track(b)
    b.untyped_storage().resize_(1024)
    tracker.resync()  # the recount takes the size found now
    assert tracker._refs[b.untyped_storage()._cdata][0] == 1024
