"""Run megatron-core 0.19.2 on a machine without CUDA (gloo backend). Active only when CUDA is absent.

megatron-core assumes a GPU in a handful of places; each patch below names the site and what
breaks without it (see shared/reference/mcore_cpu.md for the full probe):

* C1 ``torch.cuda.current_device()`` and hard-coded ``device='cuda'`` / ``.cuda()`` (RoPE tables,
  grad buffers, optimizer scalars) → a ``TorchFunctionMode`` that rewrites CUDA devices to CPU.
* C2 the CUDA RNG tracker (``tensor_parallel/random.py``: ``CudaRNGStatesTracker.add/fork``,
  ``_set_cuda_rng_state``) → the CPU generator plays the CUDA generator's role.
* C3 ``Tensor.type() == 'torch.cuda.FloatTensor'`` checks (``optimizer/clip_grads.py:174``,
  ``optimizer/optimizer.py:1028``, ``optimizer/distrib_optimizer.py:466``) → CPU tensors report the
  CUDA type string.
* C4 the "CPU RNG state changed within GPU RNG context" warning on every fork (the two RNGs are
  the same object here) is silenced.
* C5 ``torch.cuda.synchronize`` / ``Stream`` / ``Event`` / nvtx used on timing and overlap paths
  → no-ops.
* C6 (with sequence parallelism) the local-spec torch norm asserts ``not sequence_parallel``
  (``transformer/torch_norm.py``) → tag norm weights ``sequence_parallel=True`` so
  ``finalize_model_grads`` all-reduces their grads over TP, as TE's norm does.

Nothing here changes numerics. ``install()`` is idempotent and a no-op when CUDA is available.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch.overrides import TorchFunctionMode

_STATE = {"installed": False, "mode": None}


def is_cuda_device(device) -> bool:
    """A device spec that names CUDA: ``"cuda…"``, a CUDA ``torch.device``, or an int index."""
    if isinstance(device, int) and not isinstance(device, bool):
        return True
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, torch.device) and device.type == "cuda"


class _CudaToCpuMode(TorchFunctionMode):
    """C1: every ``device=`` pointing at CUDA becomes CPU; ``.cuda()`` becomes a no-op."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if "device" in kwargs and is_cuda_device(kwargs["device"]):
            kwargs = dict(kwargs, device="cpu")
        if func is torch.Tensor.to and len(args) > 1 and is_cuda_device(args[1]):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


_CUDA_TYPE = {
    "torch.FloatTensor": "torch.cuda.FloatTensor",
    "torch.HalfTensor": "torch.cuda.HalfTensor",
    "torch.BFloat16Tensor": "torch.cuda.BFloat16Tensor",
    "torch.DoubleTensor": "torch.cuda.DoubleTensor",
    "torch.LongTensor": "torch.cuda.LongTensor",
    "torch.IntTensor": "torch.cuda.IntTensor",
}


def _patch_tensor_type() -> None:
    """C3: ``t.type()`` (no argument) reports the CUDA type name megatron's dtype dispatch expects."""
    original = torch.Tensor.type

    def type_(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if not args and not kwargs and isinstance(out, str):
            return _CUDA_TYPE.get(out, out)
        return out

    torch.Tensor.type = type_


def _patch_rng() -> None:
    """C2 + C4: the CPU default generator stands in for the (absent) CUDA generator."""
    from megatron.core.tensor_parallel import random as mp_random

    def get_state(device="cuda", clone=False, graph_safe=False):
        return torch.get_rng_state()

    def set_state(new_state, device=-1, graph_safe=False):
        torch.set_rng_state(new_state)

    torch.cuda.get_rng_state = get_state
    torch.cuda.random.get_rng_state = get_state
    torch.cuda.set_rng_state = set_state
    # torch.manual_seed itself calls torch.cuda.manual_seed_all: seed the CPU generator directly.
    torch.cuda.manual_seed = lambda seed: torch.default_generator.manual_seed(int(seed))
    torch.cuda.manual_seed_all = lambda seed: None
    mp_random._get_cuda_rng_state = get_state
    mp_random._set_cuda_rng_state = set_state
    logging.getLogger(mp_random.__name__).setLevel(logging.ERROR)


class _NullEvent:
    def __init__(self, *args, **kwargs):
        pass

    def record(self, *args, **kwargs):
        return None

    def synchronize(self):
        return None

    def wait(self, *args, **kwargs):
        return None

    def elapsed_time(self, other):
        return 0.0


def _patch_cuda_runtime() -> None:
    """C5: synchronisation, streams, events and nvtx become no-ops."""
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.Event = _NullEvent
    torch.cuda.current_stream = lambda *a, **k: None
    torch.cuda.stream = lambda *a, **k: contextlib.nullcontext()
    torch.cuda.empty_cache = lambda: None
    torch.cuda.nvtx.range_push = lambda *a, **k: None
    torch.cuda.nvtx.range_pop = lambda *a, **k: None
    torch.cuda.nvtx.mark = lambda *a, **k: None


def tag_norms_for_sequence_parallel(module: torch.nn.Module) -> int:
    """C6: mark RMSNorm weights as sequence-parallel so their grads are all-reduced over TP.

    Returns how many parameters were tagged. Only needed with the local (non-TE) layer spec.
    """
    count = 0
    for name, param in module.named_parameters():
        if "layernorm" in name or "final_norm" in name or name.endswith("q_layernorm.weight"):
            setattr(param, "sequence_parallel", True)
            count += 1
    return count


def install() -> bool:
    """Activate the layer when CUDA is unavailable. Returns True if it is (now) active."""
    if torch.cuda.is_available():
        return False
    if _STATE["installed"]:
        return True
    _patch_cuda_runtime()
    _patch_tensor_type()
    _patch_rng()
    mode = _CudaToCpuMode()
    mode.__enter__()  # global for this thread, for the life of the process
    _STATE.update(installed=True, mode=mode)
    return True


def is_active() -> bool:
    return bool(_STATE["installed"])
