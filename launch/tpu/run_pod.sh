#!/usr/bin/env bash
# Runs the same command on every worker of a Cloud TPU VM pod slice (one process per host).
#
# Usage:
#   launch/tpu/run_pod.sh [--setup] TPU_NAME ZONE -- <command ...>
#
# Examples:
#   # once: copy this checkout to every worker and install it (plus jax's TPU runtime)
#   launch/tpu/run_pod.sh --setup my-v5p-64 us-east5-a
#   # train: the same command on all workers; jax.distributed.initialize() is called by jaxtalk
#   launch/tpu/run_pod.sh my-v5p-64 us-east5-a -- \
#     python -m jaxtalk.main --config=configs/posetalk/pld.py:size=paper --workdir=/mnt/runs/pld
#
# Environment:
#   PROJECT   GCP project (default: gcloud's configured project)
#   REPO_DIR  checkout location on the workers (default: jaxtalk, relative to the home directory)
#
# The workdir must be a directory every worker sees (a Filestore/NFS mount or a gcsfuse-mounted
# bucket), because all processes write their checkpoint shards into it. Preemption: the TPU
# runtime sends SIGTERM; jaxtalk saves a checkpoint at a step all hosts agree on and exits, and
# re-running the same command resumes.
set -euo pipefail

SETUP=0
if [[ "${1:-}" == "--setup" ]]; then SETUP=1; shift; fi
if [[ $# -lt 2 ]]; then
  sed -n '2,25p' "$0"; exit 2
fi
TPU_NAME=$1; ZONE=$2; shift 2
if [[ "${1:-}" == "--" ]]; then shift; fi
REPO_DIR=${REPO_DIR:-jaxtalk}
GCLOUD_ARGS=(--zone "$ZONE")
if [[ -n "${PROJECT:-}" ]]; then GCLOUD_ARGS+=(--project "$PROJECT"); fi

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_ARGS[@]}" --worker=all --command "$1"
}

if [[ $SETUP == 1 ]]; then
  ROOT=$(cd "$(dirname "$0")/../.." && pwd)
  tar -C "$ROOT" --exclude=.venv --exclude=.git --exclude='runs' -czf /tmp/jaxtalk_src.tgz .
  gcloud compute tpus tpu-vm scp /tmp/jaxtalk_src.tgz "$TPU_NAME":/tmp/jaxtalk_src.tgz \
    "${GCLOUD_ARGS[@]}" --worker=all
  on_all_workers "set -e; mkdir -p $REPO_DIR && tar -C $REPO_DIR -xzf /tmp/jaxtalk_src.tgz && \
    cd $REPO_DIR && python3 -m venv .venv && . .venv/bin/activate && \
    pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt && \
    pip install --no-deps -e . && pip install 'jax[tpu]==0.10.2'"
  [[ $# -eq 0 ]] && exit 0
fi

if [[ $# -eq 0 ]]; then
  echo "run_pod.sh: no command given (put it after --)" >&2; exit 2
fi
printf -v CMD '%q ' "$@"
# JAXTALK_DISTRIBUTED=1 makes jaxtalk call jax.distributed.initialize() (jax finds the pod's
# coordinator and process ids itself on TPU VMs).
on_all_workers "cd $REPO_DIR && . .venv/bin/activate && JAXTALK_DISTRIBUTED=1 $CMD"
