"""Accelerator table of the planner: vendor peak numbers plus the few efficiency constants of the model.

Peak numbers (dense, no sparsity) are from the vendors' datasheets:

* A100 SXM4 80 GB — NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOP/s, HBM2e 80 GB at
  2,039 GB/s, NVLink 3 600 GB/s (bidirectional); DGX A100 / Selene: 8 × HDR 200 Gb/s per node
  (Narayanan et al. 2021, §5) → 25 GB/s per GPU.
* H100 SXM5 80 GB — NVIDIA H100 Tensor Core GPU datasheet: BF16 989 TFLOP/s, FP8 1,979 TFLOP/s,
  HBM3 3.35 TB/s, NVLink 4 900 GB/s; DGX H100: 8 × ConnectX-7 400 Gb/s → 50 GB/s per GPU.
* H800 SXM5 80 GB — NVIDIA H800 product brief: H100 compute and memory, NVLink limited to 400 GB/s.
* H200 SXM 141 GB — NVIDIA H200 datasheet: H100 compute, HBM3e 141 GB at 4.8 TB/s, NVLink 900 GB/s.
* H20 96 GB — NVIDIA H20 product brief: BF16 148 TFLOP/s, FP8 296 TFLOP/s, HBM3 4.0 TB/s,
  NVLink 900 GB/s (the GPU of verl's published H20 numbers).
* B200 180 GB — NVIDIA DGX B200 / HGX B200 datasheets: 72 PFLOP/s FP8 *sparse* training per 8 GPUs
  → 4.5 PFLOP/s dense FP8 and 2.25 PFLOP/s dense BF16 per GPU, HBM3e 180 GB at 8 TB/s, NVLink 5
  1.8 TB/s, 8 × ConnectX-7 400 Gb/s.

Usable HBM is what ``nvidia-smi`` reports (e.g. 81,559 MiB = 79.6 GiB on H100 80 GB).
NVLink/NIC figures are stored *per direction* (half the bidirectional datasheet number).

Efficiency constants (not vendor numbers — the planner's two fitted knobs, see docs/planning.md):
``gemm_eff`` is the fraction of dense peak a full training step reaches on its GEMMs (A100 fitted to
Narayanan et al. 2021 Table 1, Hopper to the Megatron-LM README's 175B point); ``link_eff`` is the
NCCL bus-bandwidth fraction of the link rate (nccl-tests on DGX H100 reach ~0.8 of NVLink).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True, kw_only=True)
class Gpu:
    """One accelerator model (per-GPU numbers)."""

    name: str
    """Short name used by ``--gpu``."""
    bf16_flops: float
    """Dense BF16 tensor-core peak, FLOP/s."""
    fp8_flops: float | None
    """Dense FP8 peak, FLOP/s (None: no FP8 tensor cores)."""
    hbm_gib: float
    """Usable device memory, GiB."""
    hbm_bw: float
    """HBM bandwidth, bytes/s."""
    nvlink_bw: float
    """NVLink bandwidth per direction per GPU, bytes/s."""
    net_bw: float
    """Inter-node network bandwidth per GPU per direction, bytes/s."""
    gpus_per_node: int = 8
    """GPUs behind one NVLink domain."""
    gemm_eff: float = 0.56
    """Fraction of BF16 peak reached on GEMMs inside a training step (fitted, see module doc)."""
    fp8_gemm_eff: float = 0.45
    """Fraction of FP8 peak reached on FP8 GEMMs (casts and amax bookkeeping included)."""
    link_eff: float = 0.8
    """Achieved collective bus bandwidth ÷ link rate."""


_GB = 1e9
GPUS: dict[str, Gpu] = {
    "a100": Gpu(name="a100", bf16_flops=312e12, fp8_flops=None, hbm_gib=79.2, hbm_bw=2039 * _GB,
                nvlink_bw=300 * _GB, net_bw=25 * _GB, gemm_eff=0.60),
    "h100": Gpu(name="h100", bf16_flops=989e12, fp8_flops=1979e12, hbm_gib=79.6, hbm_bw=3350 * _GB,
                nvlink_bw=450 * _GB, net_bw=50 * _GB),
    "h800": Gpu(name="h800", bf16_flops=989e12, fp8_flops=1979e12, hbm_gib=79.6, hbm_bw=3350 * _GB,
                nvlink_bw=200 * _GB, net_bw=50 * _GB),
    "h200": Gpu(name="h200", bf16_flops=989e12, fp8_flops=1979e12, hbm_gib=140.4, hbm_bw=4800 * _GB,
                nvlink_bw=450 * _GB, net_bw=50 * _GB),
    "h20": Gpu(name="h20", bf16_flops=148e12, fp8_flops=296e12, hbm_gib=95.0, hbm_bw=4000 * _GB,
               nvlink_bw=450 * _GB, net_bw=50 * _GB, gemm_eff=0.75),
    "b200": Gpu(name="b200", bf16_flops=2250e12, fp8_flops=4500e12, hbm_gib=178.4, hbm_bw=8000 * _GB,
                nvlink_bw=900 * _GB, net_bw=50 * _GB),
}


def gpu(name: str) -> Gpu:
    """The table entry for ``name`` (case-insensitive); ValueError naming the choices otherwise."""
    key = name.lower()
    if key not in GPUS:
        raise ValueError(f"--gpu {name!r}: unknown; choose one of {sorted(GPUS)}")
    return GPUS[key]
