"""Hugging Face checkpoint files: lazy safetensors reading, bounded-size sharded writing, assets.

* :class:`HFReader` opens ``model.safetensors`` or the shards named by
  ``model.safetensors.index.json`` with ``safe_open`` (memory-mapped) and materialises one tensor
  per :meth:`HFReader.get`.
* :class:`ShardedSafetensorsWriter` buffers tensors up to ``max_shard_bytes`` and flushes them as
  ``model-0000i-of-0000N.safetensors`` plus ``model.safetensors.index.json`` (HF's layout, read by
  transformers and vLLM), so at most one shard is in memory.
* :func:`copy_hf_assets` carries over everything that is not weights: ``config.json``,
  ``generation_config.json``, tokenizer files, chat template, license.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import torch

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    """'bf16' / 'bfloat16' / 'fp32' / ... → torch dtype."""
    key = str(name).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of fp32, bf16, fp16")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def parse_size(text: str | int) -> int:
    """'5GB' / '500MB' / '2GiB' / 1000 → bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(text).upper())
    if not match:
        raise ValueError(f"cannot parse size {text!r}; use e.g. 5GB or 500MB")
    number, unit = float(match.group(1)), match.group(2).rstrip("B")
    base = 1024 if unit.endswith("I") else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit.rstrip("I")]
    return int(number * base ** power)


class HFReader:
    """Lazy access to the tensors of an HF safetensors checkpoint directory."""

    def __init__(self, directory: str | Path):
        from safetensors import safe_open

        self.directory = Path(directory)
        index = self.directory / INDEX
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.directory / SINGLE).is_file():
            weight_map = None
        else:
            raise FileNotFoundError(f"{self.directory}: no {INDEX} or {SINGLE} (only safetensors checkpoints "
                                    "are supported; re-save .bin checkpoints with save_pretrained)")
        self._safe_open = safe_open
        self._stack = contextlib.ExitStack()
        self._files: dict[str, object] = {}
        if weight_map is None:
            weight_map = {name: SINGLE for name in self._open(SINGLE).keys()}
        self._map: dict[str, str] = weight_map

    def _open(self, file: str):
        if file not in self._files:
            path = self.directory / file
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed in {INDEX} but missing")
            self._files[file] = self._stack.enter_context(self._safe_open(str(path), framework="pt", device="cpu"))
        return self._files[file]

    def names(self) -> list[str]:
        return list(self._map)

    def __contains__(self, name: str) -> bool:
        return name in self._map

    def get(self, name: str) -> torch.Tensor:
        if name not in self._map:
            raise KeyError(f"{self.directory}: no tensor {name!r} in the HF checkpoint")
        return self._open(self._map[name]).get_tensor(name)

    def dtype(self) -> torch.dtype:
        """dtype of the stored weights (of the first tensor; read from the header only)."""
        first = next(iter(self._map))
        code = self._open(self._map[first]).get_slice(first).get_dtype()
        return {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}[code]

    def close(self) -> None:
        self._stack.close()
        self._files.clear()

    def __enter__(self) -> "HFReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ShardedSafetensorsWriter:
    """Write tensors as HF-style shards of at most ``max_shard_bytes`` (a larger tensor gets its own)."""

    def __init__(self, directory: str | Path, max_shard_bytes: int = 5 * 10**9):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_shard_bytes = max_shard_bytes
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._shards: list[tuple[str, list[str]]] = []
        self._total = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._pending or any(name in names for _, names in self._shards):
            raise ValueError(f"tensor {name!r} written twice")
        size = tensor.numel() * tensor.element_size()
        if self._pending and self._pending_bytes + size > self.max_shard_bytes:
            self._flush()
        # An owning, contiguous copy: safetensors refuses tensors that share storage (q/k/v views).
        self._pending[name] = tensor.detach().contiguous().clone()
        self._pending_bytes += size
        self._total += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        tmp_name = f".shard-{len(self._shards):05d}.safetensors"
        save_file(self._pending, str(self.directory / tmp_name), metadata={"format": "pt"})
        self._shards.append((tmp_name, list(self._pending)))
        self._pending, self._pending_bytes = {}, 0

    def close(self) -> dict:
        """Flush, name the shards ``model-0000i-of-0000N.safetensors`` and write the index."""
        if self._pending or not self._shards:
            self._flush()
        n = len(self._shards)
        weight_map: dict[str, str] = {}
        for i, (tmp_name, names) in enumerate(self._shards):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(self.directory / tmp_name, self.directory / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": self._total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return index


def is_asset(path: Path) -> bool:
    """Non-weight top-level files of an HF model directory (config, tokenizer, template, license)."""
    return path.is_file() and not path.name.startswith(".") and path.name != INDEX \
        and not path.name.endswith(_WEIGHT_SUFFIXES)


def copy_hf_assets(src: Path, dst: Path) -> list[str]:
    """Copy every asset file of ``src`` into ``dst``; returns the copied names."""
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(src.iterdir()):
        if is_asset(path):
            shutil.copy2(path, dst / path.name)
            copied.append(path.name)
    return copied
