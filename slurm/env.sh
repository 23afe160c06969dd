# shellcheck shell=bash
# Environment of every megatron_lwz SLURM job: paths, threads, CUDA and NCCL settings for H100/H800
# nodes with 8 GPUs on NVLink/NVSwitch and InfiniBand between nodes. Sourced by slurm/launch.sh (and
# by you, for interactive work). Every variable keeps a value you exported before sourcing it.

: "${USER:=$(id -un)}"   # unset in some batch environments
LWZ_HOME=${LWZ_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export LWZ_HOME

# ---- paths (shared storage, visible from every node) ---------------------------------------------
export SHARED_ROOT=${SHARED_ROOT:-/shared/$USER/lwz}  # set to your cluster's parallel file system
export DATA_DIR=${DATA_DIR:-$SHARED_ROOT/data}        # preprocessed .bin/.idx, prompt and pair JSONL
export MODELS_DIR=${MODELS_DIR:-$SHARED_ROOT/models}  # HF downloads: Qwen2.5-32B, Qwen2.5-72B-Instruct
export CKPT_DIR=${CKPT_DIR:-$SHARED_ROOT/checkpoints} # megatron checkpoints (converted + training)
export RUNS_DIR=${RUNS_DIR:-$SHARED_ROOT/runs}        # run dirs: config, metrics, tensorboard, plots
export LWZ_STATE_DIR=${LWZ_STATE_DIR:-$RUNS_DIR/.slurm}  # launcher stop files (must be shared)
if [[ -n ${LWZ_CONTAINER_IMAGE:-} ]]; then  # pyxis/enroot: the image brings the stack (launch.sh)
  export LWZ_PYTHON=${LWZ_PYTHON:-python}
  export PYTHONPATH=$LWZ_HOME${PYTHONPATH:+:$PYTHONPATH}   # megatron_lwz from the mounted checkout
else
  export LWZ_PYTHON=${LWZ_PYTHON:-$LWZ_HOME/.venv/bin/python}  # venv with `pip install -e .[gpu]`
fi

# ---- threads --------------------------------------------------------------------------------------
# One process per GPU: give each its share of the node's cores (SLURM_CPUS_PER_TASK from the sbatch
# header), not all of them, or 8 ranks × all-core OpenMP pools oversubscribe the node.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-8}}
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}  # HF tokenizers: no thread pool per rank
export PYTHONUNBUFFERED=1                                       # log lines appear as they happen

# ---- CUDA -----------------------------------------------------------------------------------------
# One hardware work queue: kernels launch in issue order, so Megatron's TP/SP communication kernels
# are scheduled ahead of the GEMMs they overlap with (required for TP comm/compute overlap).
export CUDA_DEVICE_MAX_CONNECTIONS=1
# Free NCCL-used tensors without record_stream (less allocator fragmentation with async collectives).
export TORCH_NCCL_AVOID_RECORD_STREAMS=1
# PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True is set per job in pretrain/train_rm.sbatch; not
# for GRPO: vLLM's sleep-mode allocator (CuMemAllocator) refuses expandable segments.

# ---- NCCL over InfiniBand ---------------------------------------------------------------------------
# NCCL picks the IB HCAs and the GPU-Direct RDMA path itself on standard H100 nodes (8 × 400 Gb/s
# ConnectX-7, one per GPU). Override only what your fabric needs; empty values are not exported
# because an empty NCCL_IB_HCA would match no device and silently fall back to TCP sockets.
: "${NCCL_IB_HCA:=}"            # e.g. mlx5_0,mlx5_3,mlx5_4,mlx5_5,mlx5_6,mlx5_9,mlx5_10,mlx5_11 (compute rails only)
: "${NCCL_SOCKET_IFNAME:=}"     # bootstrap/out-of-band TCP interface, e.g. ib0 or ^lo,docker
: "${NCCL_IB_GID_INDEX:=}"      # RoCE only (usually 3); leave empty on InfiniBand
for _lwz_var in NCCL_IB_HCA NCCL_SOCKET_IFNAME NCCL_IB_GID_INDEX; do
  if [[ -n ${!_lwz_var} ]]; then export "${_lwz_var?}"; else unset "$_lwz_var"; fi
done
unset _lwz_var
# gloo groups (megatron creates some for the distributed optimizer / checkpointing) need a routable
# interface too; follow NCCL's unless set.
if [[ -n ${NCCL_SOCKET_IFNAME:-} && -z ${GLOO_SOCKET_IFNAME:-} && ${NCCL_SOCKET_IFNAME} != ^* ]]; then
  export GLOO_SOCKET_IFNAME=$NCCL_SOCKET_IFNAME
fi
# IB retransmission timeout 4.096 µs × 2^22 ≈ 17 s: survives transient link flaps at 64+ GPUs instead
# of aborting the job (NCCL's default is 20, i.e. ~4 s).
export NCCL_IB_TIMEOUT=${NCCL_IB_TIMEOUT:-22}
export NCCL_IB_RETRY_CNT=${NCCL_IB_RETRY_CNT:-7}
# NVLink SHARP (NVLS) registers extra buffers per communicator (GiBs per GPU with many groups); GRPO
# colocates trainer, Writing RM and vLLM in 80 GB, so keep it off (try 1 for pure pretraining).
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}  # INFO once to check that "NET/IB" (not "NET/Socket") is used
# A collective that fails or exceeds parallel.timeout_minutes tears the process down (torch's default
# TORCH_NCCL_ASYNC_ERROR_HANDLING=3) and srun --kill-on-bad-exit ends the other ranks: no silent hang.
# Before that, every rank writes its NCCL flight recorder (the last parallel.nccl_trace_buffer_size
# collectives per group; TORCH_FR_* variables set by megatron_lwz/parallel/diagnostics.py, exported
# values win) and its Python stacks into parallel.debug_dir = $LWZ_DEBUG_DIR (set by launch.sh).
# Waits for rank 0's rollouts run on a gloo group with parallel.host_timeout_minutes instead.

# Rendezvous port of a job: 12000 + job id mod 20000, below the Linux ephemeral range 32768–60999
# (the kernel's source ports for outgoing connections, which may already hold any port there).
# megatron_lwz/parallel/env.py:rendezvous_port is the same formula.
lwz_rendezvous_port() { echo $(( 12000 + ${1:?job id} % 20000 )); }

# ---- UCX -------------------------------------------------------------------------------------------
# NCCL does not use UCX; UCX only matters when srun runs with --mpi=pmix (PMIx/UCX wire-up) or under
# an MPI-enabled container. If so, pin it to the IB devices, e.g.:
#   export UCX_NET_DEVICES=mlx5_0:1   UCX_TLS=rc,sm,self   UCX_IB_PCI_RELAXED_ORDERING=on

# ---- caches: node-local, so 64 ranks do not lock the same files on NFS ----------------------------
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/$USER/triton}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/$USER/inductor}
export VLLM_CACHE_ROOT=${VLLM_CACHE_ROOT:-/tmp/$USER/vllm}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}   # compute nodes read local model dirs only
