#!/usr/bin/env bash
# Launch a megatron_lwz job inside a SLURM allocation: one process per GPU on every node.
#
#   slurm/launch.sh JOB CONFIG [dotted.key=value ...]     # from an sbatch script (see *.sbatch)
#   slurm/launch.sh --print-config JOB CONFIG [...]        # dry run: resolved recipe, no GPU, no SLURM
#   slurm/launch.sh --check JOB CONFIG [...]               # dry run + layout/batch rules for the allocation
#   JOB: pretrain | train-rm | grpo
#
# Logs (LWZ_LOG_MODE): `label` (default) prefixes every line of the one job log with its rank
#   (srun --label, "12: ..."); `files` writes one file per task instead, $LWZ_LOG_DIR/<job>.rank<N>.log.
# Hangs: every rank keeps an NCCL flight recorder and dumps it with its Python stacks into
#   $LWZ_DEBUG_DIR (default $RUNS_DIR/debug/<job id>) on a collective timeout; for a live dump of every
#   trainer's stacks run `scancel --batch --signal=USR2 <job id>` (relayed to the trainers only).
# Container (pyxis/enroot): LWZ_CONTAINER_IMAGE=<image or .sqsh> runs every task inside it, with
#   LWZ_CONTAINER_MOUNTS (default: the repository and $SHARED_ROOT at the same paths); LWZ_PYTHON then
#   defaults to the image's `python` and PYTHONPATH to the repository.
# Rendezvous: MASTER_ADDR (first node) and MASTER_PORT (12000 + job id mod 20000, outside the
#   ephemeral port range) are computed once here and exported to every task.
#
# LWZ_LAUNCHER=srun (default): srun starts nodes × LWZ_GPUS_PER_NODE tasks, each running
#     python -m megatron_lwz.cli.main JOB --config CONFIG ...
#   megatron_lwz reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (rank, world size, GPU index) and
#   takes MASTER_ADDR from the first host of SLURM_STEP_NODELIST (port 20000 + job id mod 20000), so
#   no torchrun is involved. Every task must see all GPUs of its node (it selects cuda:SLURM_LOCALID):
#   do not add --gpus-per-task or --gpu-bind=single.
# LWZ_LAUNCHER=torchrun: one task per node runs torchrun --nproc-per-node LWZ_GPUS_PER_NODE with a
#   c10d rendezvous on the first node (for sites where srun cannot start one task per GPU).
#
# Preemption / requeue. The sbatch scripts request --signal=B:USR1@LEAD: SLURM signals this shell LEAD
# seconds before the time limit, and it forwards the request to the trainer processes only (each
# task's wrapper polls a stop file on shared storage and sends SIGUSR1 to its trainer). A signal sent
# by SLURM to the whole job step would also hit vLLM's engine processes and the reward workers, which
# GRPO still needs to reach its next step boundary. The trainers save at that boundary and exit with
# checkpoint.exit_code_on_signal = LWZ_REQUEUE_EXIT_CODE (default 124, appended as an override); on
# that code this script runs `scontrol requeue`, and the requeued job resumes from the `latest`
# checkpoint of checkpoint.save_dir. The trainers also stop by themselves when the next step plus a
# save would not fit before the job's end time (checkpoint.stop_before_time_limit; squeue %e) and then
# write LWZ_STOPPED_FILE. Any non-zero exit after a stop request or a stop-save counts as a preemption
# (torchrun reports a worker's 124 as 1; srun reports 137 when a rank's teardown outlives KillWait).
# At most LWZ_MAX_REQUEUES requeues per job.
set -euo pipefail

LWZ_SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=env.sh
source "$LWZ_SLURM_DIR/env.sh"

LWZ_LAUNCHER=${LWZ_LAUNCHER:-srun}
LWZ_GPUS_PER_NODE=${LWZ_GPUS_PER_NODE:-8}
LWZ_REQUEUE_EXIT_CODE=${LWZ_REQUEUE_EXIT_CODE:-124}
LWZ_MAX_REQUEUES=${LWZ_MAX_REQUEUES:-20}
LWZ_POLL_SECONDS=${LWZ_POLL_SECONDS:-5}
LWZ_LOG_MODE=${LWZ_LOG_MODE:-label}             # label | files
LWZ_LOG_DIR=${LWZ_LOG_DIR:-logs/ranks}           # LWZ_LOG_MODE=files
LWZ_CONTAINER_IMAGE=${LWZ_CONTAINER_IMAGE:-}     # pyxis --container-image (empty: no container)
LWZ_CONTAINER_MOUNTS=${LWZ_CONTAINER_MOUNTS:-$LWZ_HOME:$LWZ_HOME,$SHARED_ROOT:$SHARED_ROOT}

log() { echo "[launch.sh $(date '+%F %T')] $*" >&2; }
die() { log "error: $*"; exit 2; }

usage() {
  sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---- inside one task: run the command, turn the stop file into SIGUSR1 for the trainer(s) ----------
signal_trainers() {
  local pid=$1 sig=${2:-USR1}
  if [[ $LWZ_LAUNCHER == torchrun ]]; then
    pkill "-$sig" -P "$pid" || true   # the workers are the agent's children; the agent itself is left alone
  else
    kill "-$sig" "$pid" 2>/dev/null || true
  fi
}

# A stack-dump request (a line appended to LWZ_STACKS_FILE by the batch shell) → SIGUSR2 to the trainer
# (parallel.stack_dump_signal: faulthandler dumps every thread and the process runs on).
relay_stack_dump() {
  local pid=$1 size
  [[ -n ${LWZ_STACKS_FILE:-} && -e $LWZ_STACKS_FILE ]] || return 0
  size=$(wc -c < "$LWZ_STACKS_FILE")
  if [[ $size != "${stacks_seen:-0}" ]]; then
    stacks_seen=$size
    signal_trainers "$pid" USR2
  fi
}

run_task() {
  local pid sent=0 rc=0
  # Ignored here and inherited by the trainer's helper processes (vLLM, reward workers): a USR2 sent to
  # the whole step (scancel --signal=USR2) dumps the trainer's stacks (faulthandler) and kills nothing.
  trap '' USR2
  "$@" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT
  while kill -0 "$pid" 2>/dev/null; do
    if (( ! sent )) && [[ -n ${LWZ_STOP_FILE:-} && -e $LWZ_STOP_FILE ]]; then
      signal_trainers "$pid"
      sent=1
    fi
    relay_stack_dump "$pid"
    sleep "$LWZ_POLL_SECONDS"
  done
  wait "$pid" || rc=$?
  return "$rc"
}

# ---- in the batch shell --------------------------------------------------------------------------
stop_requested=0
trapped=0

on_usr1() {
  trapped=1
  stop_requested=1
  log "SIGUSR1: the allocation ends soon; asking the trainers to checkpoint at the next step boundary"
  : > "$LWZ_STOP_FILE"
}

on_usr2() {
  trapped=1
  log "SIGUSR2: every trainer dumps its Python stacks into $LWZ_DEBUG_DIR (stacks.rank*.txt)"
  date +%s >> "$LWZ_STACKS_FILE"
}

on_term() {
  trapped=1
  log "SIGTERM (preemption, scancel or time limit): the trainers received it too; waiting for them"
}

# Wait for a background pid; `wait` returns early (status > 128) when a trapped signal arrives.
wait_child() {
  local pid=$1
  while :; do
    trapped=0
    child_rc=0
    wait "$pid" || child_rc=$?
    if (( trapped && child_rc > 128 )); then continue; fi
    return 0
  done
}

requeue_or_exit() {
  local rc=$1 restarts=${SLURM_RESTART_COUNT:-0}
  local preempted=0
  if (( rc == LWZ_REQUEUE_EXIT_CODE )); then preempted=1; fi
  # A stop was requested (USR1 here, or the trainers stopped themselves before the time limit and
  # published a checkpoint: LWZ_STOPPED_FILE) and the step failed: srun reports 137 when one rank's
  # teardown outlives KillWait, torchrun reports 1. That is still a preemption.
  if (( rc != 0 )) && [[ -e $LWZ_STOPPED_FILE ]]; then stop_requested=1; fi
  if (( stop_requested && rc != 0 )); then preempted=1; fi
  if (( ! preempted )); then
    log "job step finished with exit code $rc"
    exit "$rc"
  fi
  if (( restarts >= LWZ_MAX_REQUEUES )); then
    log "checkpoint saved, but the job was already requeued $restarts times (LWZ_MAX_REQUEUES); not requeueing"
    exit "$rc"
  fi
  log "checkpoint saved after a stop request (exit $rc): requeueing job $SLURM_JOB_ID (restart $((restarts + 1)))"
  if ! scontrol requeue "$SLURM_JOB_ID"; then
    log "scontrol requeue failed (already requeued by SLURM's preemption?); resubmit to resume"
    exit "$rc"
  fi
  exit 0
}

srun_options() {  # fills the global array `srun_opts`: log routing and the optional container
  srun_opts=()
  case $LWZ_LOG_MODE in
    label) srun_opts+=(--label) ;;
    files) mkdir -p "$LWZ_LOG_DIR"
           srun_opts+=(--output="$LWZ_LOG_DIR/%x-%j.rank%t.log" --open-mode=append) ;;
    *) die "LWZ_LOG_MODE=$LWZ_LOG_MODE: use label or files" ;;
  esac
  if [[ -n $LWZ_CONTAINER_IMAGE ]]; then
    srun_opts+=(--container-image="$LWZ_CONTAINER_IMAGE" --container-mounts="$LWZ_CONTAINER_MOUNTS"
                --container-workdir="$LWZ_HOME")
  fi
}

build_command() {  # fills the global array `cmd`
  local nodes=$1; shift
  local cpus=()
  srun_options
  case $LWZ_LAUNCHER in
    srun)
      [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && cpus=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
      cmd=(srun --nodes="$nodes" --ntasks-per-node="$LWZ_GPUS_PER_NODE" "${cpus[@]}" --kill-on-bad-exit=1
           --export=ALL "${srun_opts[@]}" bash "$LWZ_SLURM_DIR/launch.sh" --task "$LWZ_PYTHON" "$@") ;;
    torchrun)
      [[ -n ${SLURM_CPUS_PER_TASK:-} ]] && cpus=(--cpus-per-task="$((SLURM_CPUS_PER_TASK * LWZ_GPUS_PER_NODE))")
      local tee=(--tee=3)  # torchrun prefixes each line with its local rank
      [[ $LWZ_LOG_MODE == files ]] && tee=(--redirects=3 --log-dir="$LWZ_LOG_DIR/$SLURM_JOB_ID")
      cmd=(srun --nodes="$nodes" --ntasks-per-node=1 "${cpus[@]}" --kill-on-bad-exit=1 --export=ALL "${srun_opts[@]}"
           bash "$LWZ_SLURM_DIR/launch.sh" --task "$LWZ_PYTHON" -m torch.distributed.run
           --nnodes="$nodes" --nproc-per-node="$LWZ_GPUS_PER_NODE" --rdzv-backend=c10d "${tee[@]}"
           --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="$SLURM_JOB_ID" --max-restarts=0 "$@") ;;
    *) die "LWZ_LAUNCHER=$LWZ_LAUNCHER: use srun or torchrun" ;;
  esac
}

rendezvous() {  # MASTER_ADDR / MASTER_PORT once for every task (no scontrol call per rank)
  if [[ -z ${MASTER_ADDR:-} && -n ${SLURM_JOB_NODELIST:-} ]]; then
    MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)  # reads all: no SIGPIPE under pipefail
  fi
  export MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
  export MASTER_PORT=${MASTER_PORT:-$(lwz_rendezvous_port "$SLURM_JOB_ID")}
}

launch() {
  local job=$1 config=$2; shift 2
  [[ -n ${SLURM_JOB_ID:-} ]] || die "not inside a SLURM allocation (sbatch/salloc); for a dry run use --print-config or --check"
  local nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
  mkdir -p "$LWZ_STATE_DIR"
  export LWZ_LAUNCHER LWZ_POLL_SECONDS
  export LWZ_STOP_FILE="$LWZ_STATE_DIR/stop.$SLURM_JOB_ID.${SLURM_RESTART_COUNT:-0}"
  export LWZ_STACKS_FILE="$LWZ_STATE_DIR/stacks.$SLURM_JOB_ID.${SLURM_RESTART_COUNT:-0}"  # USR2 requests
  export LWZ_DEBUG_DIR=${LWZ_DEBUG_DIR:-$RUNS_DIR/debug/$SLURM_JOB_ID}
  rm -f "$LWZ_STACKS_FILE"
  rendezvous
  export LWZ_STOPPED_FILE="$LWZ_STATE_DIR/stopped.$SLURM_JOB_ID.${SLURM_RESTART_COUNT:-0}"  # rank 0: "saved at N"
  rm -f "$LWZ_STOP_FILE" "$LWZ_STOPPED_FILE"
  build_command "$nodes" -m megatron_lwz.cli.main "$job" --config "$config" "$@" \
    "checkpoint.exit_code_on_signal=$LWZ_REQUEUE_EXIT_CODE" "parallel.debug_dir=$LWZ_DEBUG_DIR"
  log "job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0}: $nodes nodes × $LWZ_GPUS_PER_NODE GPUs, $LWZ_LAUNCHER"
  log "${cmd[*]}"
  trap on_usr1 USR1
  trap on_usr2 USR2
  trap on_term TERM
  "${cmd[@]}" &
  wait_child $!
  rm -f "$LWZ_STOP_FILE"
  requeue_or_exit "$child_rc"
}

main() {
  [[ $# -ge 1 ]] || usage
  case $1 in
    --task) shift; run_task "$@" ;;
    --print-config)
      [[ $# -ge 3 ]] || usage
      exec "$LWZ_PYTHON" -m megatron_lwz.cli.main "$2" --config "$3" --print-config "${@:4}" ;;
    --check)
      [[ $# -ge 3 ]] || usage
      local nodes=${LWZ_NODES:-${SLURM_JOB_NUM_NODES:-8}}
      exec "$LWZ_PYTHON" "$LWZ_SLURM_DIR/check_recipe.py" "$2" "$3" "$((nodes * LWZ_GPUS_PER_NODE))" "${@:4}" ;;
    -h|--help) usage ;;
    -*) die "unknown option $1" ;;
    *)
      [[ $# -ge 2 ]] || usage
      case $1 in pretrain|train-rm|grpo) ;; *) die "JOB must be pretrain, train-rm or grpo, got '$1'" ;; esac
      [[ -f $2 ]] || die "config file not found: $2"
      launch "$@" ;;
  esac
}

main "$@"
