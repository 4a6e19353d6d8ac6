#!/usr/bin/env bash
# SUPERB under clean, noisy and reverberant conditions for one s3prl upstream (docs/superb.md).
#
#   bash run_superb.sh --upstream robustdistiller_local --ckpt exp/rd_wavlm/student.ckpt \
#        --tasks all --conditions downstream_configs/conditions.yaml --data-root /data/superb --gpus 0,1
#   bash run_superb.sh --upstream fbank_no_cmvn --tasks KS,IC --data-root /data/superb --dry-run
#   bash run_superb.sh ... --launcher slurm --slurm partition=gpu,gpus_per_node=1,time=1440 --max-parallel 24
#        (every condition copy, training and evaluation a SLURM job; README "On a cluster")
#
# Per task: trains the downstream once on clean data (stock s3prl run_downstream.py -m train), then evaluates
# its best checkpoint on every condition (-m evaluate on a contaminated copy of the test split made with
# `robustdistiller contaminate`). Finished runs are skipped; failures are recorded and the sweep goes on.
# PYTHON picks the interpreter (default: the active venv's python, else this checkout's .venv, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -z "${VIRTUAL_ENV:-}" && -x "$here/.venv/bin/python" ]]; then PYTHON="$here/.venv/bin/python"; else PYTHON=python3; fi
fi
exec "$PYTHON" -m robustdistiller_upstream.superb "$@"
