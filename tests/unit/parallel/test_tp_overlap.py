"""TE userbuffers bootstrap (``parallel.tp_comm_overlap``): the call matches TE 2.20.2's ``initialize_ub``
(``quantization_modes``, a list of ``UserBufferQuantizationMode``; ``use_fp8`` is deprecated there).
TE cannot be installed on a CPU box, so a stand-in module with the wheel's signature takes the call."""

from __future__ import annotations

import enum
import sys
import types

import pytest

from megatron_lwz.config.base import ConfigError
from megatron_lwz.parallel.tp_overlap import init_tp_comm_overlap, overlap_tokens


@pytest.fixture
def te_base(monkeypatch):
    calls = []

    class UserBufferQuantizationMode(enum.Enum):  # transformer_engine/pytorch/module/base.py:125
        NONE = "none"
        FP8 = "fp8"

    def initialize_ub(shape, tp_size, use_fp8=False, quantization_modes=None, dtype=None, ub_cfgs=None,
                      bootstrap_backend=None, with_cublasmp=False):  # the 2.20.2 signature
        calls.append(dict(shape=shape, tp_size=tp_size, use_fp8=use_fp8, modes=quantization_modes,
                          backend=bootstrap_backend))

    base = types.ModuleType("transformer_engine.pytorch.module.base")
    base.UserBufferQuantizationMode, base.initialize_ub = UserBufferQuantizationMode, initialize_ub
    for name in ("transformer_engine", "transformer_engine.pytorch", "transformer_engine.pytorch.module"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "transformer_engine.pytorch.module.base", base)
    return calls, UserBufferQuantizationMode


@pytest.mark.parametrize("fp8,mode", [(True, "FP8"), (False, "NONE")])
def test_initialize_ub_gets_one_quantization_mode(te_base, fp8, mode):
    calls, modes = te_base
    init_tp_comm_overlap(32768, 5120, 8, fp8)
    assert calls == [dict(shape=[32768, 5120], tp_size=8, use_fp8=False, modes=[modes[mode]], backend="nccl")]


def test_overlap_needs_fixed_shapes():
    cpt = types.SimpleNamespace(data=types.SimpleNamespace(seq_length=4096), train=types.SimpleNamespace(micro_batch_size=2))
    assert overlap_tokens(cpt) == 8192
    with pytest.raises(ConfigError, match="tp_comm_overlap=false"):
        overlap_tokens(types.SimpleNamespace(data=types.SimpleNamespace(max_length=4096)))
