"""The sequence-length multiple of every micro-batch: one rule for GRPO, Writing-RM training and
scoring, and the pretraining check. Stdlib only.

Two constraints multiply:

* **sequence parallelism** shards the tokens of a micro-batch over the TP ranks, so the length
  must divide by TP;
* **FP8 GEMMs** (Transformer Engine 2.20.2) need the token rows *each rank's GEMM sees* to be
  aligned: ``assert_dim_for_fp8_exec`` (transformer_engine/pytorch/utils.py:704-714, called by
  ``Linear`` at module/linear.py:471-472 and ``LayerNormLinear`` at module/layernorm_linear.py:183-184)
  requires the product of the leading dims to divide by 8 and the last by 16; megatron-core pads
  FP8 token counts to 16 (``get_fp8_align_size``, megatron/core/fp8_utils.py:318-323). MXFP8
  requires both dims to divide by its 32-element block (csrc/quantizer.cpp:1514-1516, 1862-1864;
  ``MXFP8_BLOCK_SCALING_SIZE = 32``, pytorch/constants.py:185), and on Blackwell the blockwise
  (1×128) recipe's GEMM operands are converted to MXFP8 (csrc/extensions/gemm.cpp:314-319), so
  blockwise gets 32 too. Delayed and tensorwise (current) scaling: 16.

Under sequence parallelism each rank's column-parallel GEMM sees ``length / TP`` rows per sequence
before its all-gather (TE asserts on the local rows), so the multiple is TP × FP8 alignment, not
their least common multiple.
"""

from __future__ import annotations

FP8_ALIGNMENT = {"delayed": 16, "tensorwise": 16, "blockwise": 32, "mxfp8": 32}
"""Token-row alignment of FP8 GEMMs per TE scaling recipe (module docstring)."""


def fp8_alignment(fp8: str | None, fp8_recipe: str | None) -> int:
    """Rows multiple FP8 GEMMs need (1 without FP8)."""
    if not fp8:
        return 1
    return FP8_ALIGNMENT.get(str(getattr(fp8_recipe, "value", fp8_recipe)).lower(), 32)


def sequence_multiple(tp: int, sequence_parallel: bool, fp8: str | None = None, fp8_recipe: str | None = None) -> int:
    """Every micro-batch's sequence length must be a multiple of this (module docstring)."""
    return (tp if sequence_parallel else 1) * fp8_alignment(fp8, fp8_recipe)


def config_sequence_multiple(parallel, precision) -> int:
    """:func:`sequence_multiple` of a job's ``parallel`` and ``precision`` config sections."""
    return sequence_multiple(parallel.tensor_parallel, parallel.sequence_parallel, precision.fp8, precision.fp8_recipe)
