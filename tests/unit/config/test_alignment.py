"""Issue 11 defect 7: one sequence-length alignment rule (config/alignment.py) for GRPO and the Writing RM.

The numbers are Transformer Engine 2.20.2's (utils.py:704-714: FP8 GEMM rows % 8, last dim % 16,
megatron pads FP8 tokens to 16; MXFP8 block 32, csrc/quantizer.cpp:1514; blockwise runs as MXFP8 on
Blackwell, csrc/extensions/gemm.cpp:314-319) times TP under sequence parallelism.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from megatron_lwz.config.alignment import config_sequence_multiple, fp8_alignment, sequence_multiple
from megatron_lwz.config.schema import ParallelConfig, PrecisionConfig


def test_fp8_alignment_per_recipe():
    assert fp8_alignment(None, "mxfp8") == 1
    assert [fp8_alignment("hybrid", r) for r in ("delayed", "tensorwise", "blockwise", "mxfp8")] == [16, 16, 32, 32]
    assert sequence_multiple(8, True) == 8 and sequence_multiple(8, False, "e4m3", "tensorwise") == 16
    assert sequence_multiple(8, True, "hybrid", "mxfp8") == 256  # local rows (length / TP) must align too
    par = ParallelConfig(tensor_parallel=8, sequence_parallel=True)
    assert config_sequence_multiple(par, PrecisionConfig(fp8="hybrid", fp8_recipe="tensorwise")) == 128


@pytest.mark.parametrize("sp, recipe, multiple", [(False, "tensorwise", 16), (True, "mxfp8", 64)])
def test_writing_rm_microbatches_are_fp8_aligned(sp, recipe, multiple):
    """RM training and scoring pad to ``Trainer.seq_multiple`` (rm_train.py, writing_rm.py); the BT loss
    reads each score at ``lengths - 1``, so the lengths must not change."""
    from megatron_lwz.engine.trainer import Trainer
    from megatron_lwz.rewards.rm_data import PairSet, pad_batch, step_microbatches
    from megatron_lwz.rewards.rm_train import sp_length

    fake = SimpleNamespace(ctx=SimpleNamespace(tp=2), config=SimpleNamespace(sequence_parallel=sp, fp8="hybrid",
                                                                             fp8_recipe=recipe))
    seq_multiple = Trainer.seq_multiple.fget(fake)
    assert seq_multiple == multiple
    pairs = PairSet(chosen=[[1, 2, 3], [1, 2], [1] * 17], rejected=[[4, 5], [4, 5, 6, 7, 8], [4]])
    for pipelined in (False, True):
        mbs, _ = step_microbatches(pairs, [0, 1, 2], 2, 0, pipelined=pipelined, multiple=seq_multiple)
        assert all(mb["tokens"].shape[1] % multiple == 0 for mb in mbs)
        assert sorted(x for mb in mbs for x in mb["lengths"].tolist() if x > 1) == [2, 2, 3, 5, 17]
    scored = pad_batch([[7] * 5, [7] * 33], 0, multiple=seq_multiple)  # Writing-RM scoring (writing_rm.py)
    assert scored["tokens"].shape[1] % multiple == 0 and scored["lengths"].tolist() == [5, 33]
    precision = PrecisionConfig(fp8="hybrid", fp8_recipe=recipe)
    assert sp_length(100, ParallelConfig(tensor_parallel=2, sequence_parallel=sp), precision) % multiple == 0
