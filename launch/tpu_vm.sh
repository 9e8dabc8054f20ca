#!/usr/bin/env bash
# Data-parallel training of one rnnjax experiment on a Cloud TPU VM pod slice (every host).
#
#   launch/tpu_vm.sh CONFIG WORKDIR [TRAINER FLAGS...]
#   TPU_NAME=rnnjax-v5e ZONE=us-west4-a ACCELERATOR=v5litepod-16 \
#       launch/tpu_vm.sh experiments/configs/char_lm.py:shakespeare /mnt/shared/runs/char_lm
#
# Run it from the repository root on a machine with gcloud (authenticated, a project set). It
#   1. creates the TPU VM slice, or reuses it when it exists (one worker VM per host);
#   2. copies this checkout (git archive HEAD) to every worker and installs it with jax[tpu];
#   3. runs the trainer on every worker at once (--worker=all); the processes find each other
#      through the TPU metadata (RNNJAX_DISTRIBUTED=auto: jax.distributed.initialize()).
# WORKDIR must be a directory that every worker sees at the same path (checkpoints are written
# by every host): a Filestore NFS share or a gcsfuse-mounted bucket, mounted on every worker
# (SHARED_MOUNT below does it for NFS). Rerunning the script resumes from WORKDIR's checkpoint,
# which is also what to do after a spot/preemptible slice was preempted (the trainer saves on
# the SIGTERM that the VMs receive).
#
# EDIT (or set in the environment): TPU_NAME, ZONE, ACCELERATOR, RUNTIME_VERSION, SPOT,
# SHARED_MOUNT ("IP:/share" of a Filestore instance, mounted at the parent of WORKDIR).

set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: launch/tpu_vm.sh CONFIG WORKDIR [TRAINER FLAGS...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2

TPU_NAME=${TPU_NAME:-rnnjax}
ZONE=${ZONE:-us-west4-a}
ACCELERATOR=${ACCELERATOR:-v5litepod-16}        # 16 chips, 4 hosts
RUNTIME_VERSION=${RUNTIME_VERSION:-v2-alpha-tpuv5-lite}
SPOT=${SPOT:-0}                                   # 1: a spot slice (cheaper, preemptible)
SHARED_MOUNT=${SHARED_MOUNT:-}                    # e.g. 10.0.0.2:/rnnjax, mounted at WORKDIR/..
REMOTE_DIR=rnnjax                                 # the checkout on every worker, under $HOME

tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE"; }
on_all() { tpu ssh "$TPU_NAME" --worker=all --command="$1"; }

# 1. Create the slice, or reuse it.
if tpu describe "$TPU_NAME" --format="value(state)" >/dev/null 2>&1; then
  echo "reusing TPU VM $TPU_NAME ($(tpu describe "$TPU_NAME" --format='value(state)'))"
else
  spot_flag=()
  if [[ $SPOT == 1 ]]; then spot_flag=(--spot); fi
  tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$RUNTIME_VERSION" \
    "${spot_flag[@]}"
fi

# 2. The same code on every worker: this checkout's HEAD (commit first), installed with jax[tpu].
archive=$(mktemp --suffix=.tar.gz)
trap 'rm -f "$archive"' EXIT
git archive --format=tar.gz -o "$archive" HEAD
tpu scp "$archive" "$TPU_NAME:rnnjax.tar.gz" --worker=all
on_all "set -e; rm -rf ~/$REMOTE_DIR && mkdir -p ~/$REMOTE_DIR && \
  tar -xzf ~/rnnjax.tar.gz -C ~/$REMOTE_DIR && cd ~/$REMOTE_DIR && \
  python3 -m venv .venv && .venv/bin/pip install -q -U pip && \
  .venv/bin/pip install -q -e . 'jax[tpu]'"

shared=$(dirname "$workdir")
if [[ -n $SHARED_MOUNT ]]; then
  on_all "set -e; sudo mkdir -p '$shared'; mountpoint -q '$shared' || \
    sudo mount -t nfs -o rw,hard '$SHARED_MOUNT' '$shared'; sudo chmod a+rwx '$shared'"
fi
# Every worker must see the workdir's parent (shared storage), or checkpoints would be split.
on_all "test -d '$shared' && test -w '$shared' || \
  { echo \"\$(hostname): $shared is missing or read-only: mount shared storage\" >&2; exit 1; }"

# 3. The same command on every worker; JAX finds the slice's hosts through the TPU metadata.
flags=$(printf ' %q' "$@")
on_all "set -o pipefail; cd ~/$REMOTE_DIR && RNNJAX_DISTRIBUTED=auto PYTHONUNBUFFERED=1 \
  .venv/bin/python -m experiments.train --config=$(printf %q "$config") \
  --workdir=$(printf %q "$workdir")$flags 2>&1 | tee -a ~/rnnjax-train.log"
