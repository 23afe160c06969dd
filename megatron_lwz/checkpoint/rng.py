"""Per-rank RNG states: python ``random``, numpy, torch CPU, CUDA (when present) and megatron's
model-parallel tracker (``tensor_parallel.get_cuda_rng_tracker().get_states()``).

Each rank writes ``rng/rank_{global rank:05d}.pt`` (plain tensors and numbers, so it loads with
``torch.load(weights_only=True)``). They are restored only when the parallel layout is unchanged
— then a resume is bit-exact; after a TP/PP/DP change the states of the old ranks have no
meaning for the new ones and the freshly seeded generators are kept (a warning says so).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_file(directory: Path, rank: int) -> Path:
    return directory / "rng" / f"rank_{rank:05d}.pt"


def capture() -> dict[str, Any]:
    """This process's RNG states as plain data."""
    from megatron.core import tensor_parallel

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch_cpu": torch.get_rng_state(),
        "tracker": {name: s.clone() for name, s in tensor_parallel.get_cuda_rng_tracker().get_states().items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture`."""
    from megatron.core import tensor_parallel

    random.setstate(_to_tuple(state["python"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch_cpu"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _to_tuple(value):
    return tuple(_to_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save(directory: Path, rank: int) -> None:
    path = rng_file(directory, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(capture(), path)


def load(directory: Path, rank: int) -> dict[str, Any]:
    return torch.load(rng_file(directory, rank), weights_only=True)
