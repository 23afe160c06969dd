"""Per-GPU memory of a rehearsed rank: live bytes of meta ("GPU") storages, deduplicated by storage.

Part of the GPU rehearsal (``parallel.rehearsal``); see its docstring.
"""

from __future__ import annotations

import contextlib
import os
import traceback
import weakref
from typing import Any, Callable

import torch

STATE: dict[str, Any] = {"active": False}


class RehearsalViolation(RuntimeError):
    """A GPU-path defect found by the rehearsal (host/device mix, wrong tensor on a group)."""



def call_site() -> str:
    """The innermost frame of our own code outside this module (else the innermost frame at all)."""
    frames = traceback.extract_stack()[:-2]
    for fr in reversed(frames):
        if "megatron_lwz" in fr.filename and not fr.filename.endswith("parallel/rehearsal.py"):
            return f"{os.path.relpath(fr.filename)}:{fr.lineno} ({fr.name}: {fr.line})"
    fr = frames[-1]
    return f"{fr.filename}:{fr.lineno} ({fr.name})"



class MemoryTracker:
    """Live bytes of meta ("GPU") storages, deduplicated by storage; peak since the last ``mark``."""

    def __init__(self) -> None:
        self.live = 0
        self.live_peak = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage id → [bytes, live tensor count]
        self.extra: dict[str, int] = {}  # modelled residents that are not torch tensors here (vLLM)
        self.extra_peak: dict[str, int] = {}
        self._paused = 0

    def resident(self) -> int:
        return self.live + sum(self.extra.values())

    @contextlib.contextmanager
    def paused(self):
        """Meta tensors made inside are shapes, not GPU memory (e.g. a meta HF model for its names)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def track(self, t: torch.Tensor) -> None:
        if self._paused:
            return
        key, nbytes = t.untyped_storage()._cdata, t.untyped_storage().nbytes()
        entry = self._refs.get(key)
        if entry is None:
            entry = self._refs[key] = [nbytes, 0]
            self.live += nbytes
        elif entry[0] != nbytes:  # resized in place, or a freed storage's address reused (see resync)
            self.live += nbytes - entry[0]
            entry[0] = nbytes
        self.live_peak = max(self.live_peak, self.live)
        self.peak = max(self.peak, self.resident())
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self._refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.live -= entry[0]
            del self._refs[key]

    def resync(self) -> None:
        """Recount live storages from the garbage collector's view of meta tensors.

        Finalizers see Python tensor objects, so a storage swapped out under a live object
        (``param.data = buffer_view`` in megatron's DDP) would stay counted — and its address, once
        freed, is reused by a later storage (megatron's grad buffer), which must then count at its own
        size: entries take the size found now. Phases start from a recount (the per-op count then
        measures the phase's own growth)."""
        import gc

        found: dict[int, tuple[int, torch.Tensor]] = {}
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and obj.device.type == "meta":
                found.setdefault(obj.untyped_storage()._cdata, (obj.untyped_storage().nbytes(), obj))
        for key in [k for k in self._refs if k not in found]:
            del self._refs[key]
        for key, (nbytes, tensor) in found.items():
            if key not in self._refs:
                self._refs[key] = [nbytes, 1]
                weakref.finalize(tensor, self._release, key)
            else:
                self._refs[key][0] = nbytes
        self.live = sum(entry[0] for entry in self._refs.values())
        self.live_peak = max(self.live_peak, self.live)

    def set_extra(self, name: str, nbytes: int) -> None:
        self.extra[name] = int(nbytes)
        self.extra_peak[name] = max(self.extra_peak.get(name, 0), int(nbytes))
        self.peak = max(self.peak, self.resident())

    @contextlib.contextmanager
    def window(self, record: Callable[[int], None]):
        """Report the peak growth of live tensors (``peak − before``) inside the enclosed code to ``record``."""
        self.resync()
        before, outer_peak, outer_live_peak = self.live, self.peak, self.live_peak
        self.live_peak = before
        try:
            yield
        finally:
            record(self.live_peak - before)
            self.live_peak = max(outer_live_peak, self.live_peak)
            self.peak = max(outer_peak, self.peak)


TRACKER = MemoryTracker()


def unique_bytes(tensors) -> int:
    """Bytes of the distinct meta storages behind ``tensors`` (views and buffers counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type == "meta":
            seen[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
    return sum(seen.values())


