#!/usr/bin/env bash
# The prepared GPU check (issue 20), one run: the CUDA tests, then the contamination, upstream and pretraining-step
# benches (the last with --profile), every figure into one file. Sized for 8 minutes on an H200: each part runs
# under `timeout` with its own limit and prints its elapsed time.
#
#   bench/gpu_check.sh [FIGURES]               # FIGURES: default $OUT/gpu_figures.txt, else ./gpu_figures.txt
#   bench/gpu_check.sh --cpu-smoke [FIGURES]   # every part on the CPU, shrunk: does the script run at all?
#
# Python: $PYTHON, else .venv/bin/python, else a venv made in /tmp/rd-gpu-env on top of python3's site-packages
# (the GPU machine's torch) holding the repository and the wheels in .whl/ (carried there: s3prl or
# espnet-s3prl, tensorboardX, soundfile, pystoi, pesq, torch-audiomentations...) installed without an index.
# The preflight line names the modules that are still missing; the parts that need them fail, the others run.
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
if [[ "${1:-}" == "--cpu-smoke" ]]; then
    smoke=1
    shift
fi
figures=${1:-${OUT:+$OUT/gpu_figures.txt}}
figures=${figures:-gpu_figures.txt}
mkdir -p "$(dirname "$figures")"
: >"$figures"
export PYTHONUNBUFFERED=1

python_env() {  # sets py
    if [[ -n "${PYTHON:-}" ]]; then
        py=$PYTHON
        return
    fi
    if [[ -x .venv/bin/python ]]; then
        py=.venv/bin/python
        return
    fi
    local env=/tmp/rd-gpu-env ours
    if [[ ! -x $env/bin/python ]]; then
        python3 -m venv --without-pip "$env" || return 1
    fi
    ours=$("$env/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    python3 -c 'import site; print(site.getsitepackages()[0])' >"$ours/base-site-packages.pth"  # the image's torch
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$ours" .whl/*.whl
    fi
    # what our editable install holds: the repository on the path, then the s3prl hub hook
    echo "$PWD" >"$ours/robustdistiller-repo.pth"
    echo "import robustdistiller_upstream._startup_hook" >"$ours/robustdistiller_upstream-s3prl-hook.pth"
    py=$env/bin/python
    if ! "$py" -c "import torch" 2>/dev/null; then  # no venv on top of it: that python as it is, no hub hook
        echo "warning: $env cannot import torch; python3 with PYTHONPATH instead (expert tests will fail)"
        export PYTHONPATH="$PWD:$ours"
        py=python3
    fi
}

say() { echo "$*" | tee -a "$figures"; }

part() {  # part NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    say ""
    say "=== $name (limit ${limit} s): $*"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | grep --line-buffered -v -e "Warning: " -e "warnings.warn(" |
        tee -a "$figures"
    rc=${PIPESTATUS[0]}
    [[ $rc == 124 || $rc == 137 ]] && say "!!! $name stopped at its limit of ${limit} s"
    say "--- $name: exit $rc, $((SECONDS - start)) s"
    status=$((status || rc))
}

status=0
python_env > >(tee -a "$figures") 2>&1 || { say "no Python environment"; exit 1; }
say "gpu_check $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+changes'), mode $([[ $smoke == 1 ]] && echo cpu-smoke || echo gpu)"
"$py" - <<'EOF' 2>&1 | tee -a "$figures"
import importlib.util, platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
print(f"python {platform.python_version()}, torch {torch.__version__}, {gpu}, {torch.get_num_threads()} CPU threads")
need = ["robustdistiller_upstream", "s3prl", "tensorboardX", "soundfile", "scipy", "yaml", "tqdm", "pystoi", "pesq",
        "torch_audiomentations"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
print("preflight: missing modules: " + (", ".join(missing) or "none"))
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$figures"

# every test skipped without CUDA, found by its skip condition (named *cuda*), plus the two the issue names
cuda_tests=$(grep -l "cuda.is_available" tests/test_*.py | tr '\n' ' ')
if [[ $smoke == 1 ]]; then
    part "CUDA tests (skip on the CPU)" 300 "$py" -m pytest -q -p no:cacheprovider -rs -k cuda $cuda_tests
    part "contamination bench" 420 "$py" bench/contamination_speed.py --device cpu --repeats 1
    part "upstream bench" 180 "$py" bench/upstream_speed.py --device cpu --batch 1 --seconds 1 --repeats 1
    part "pretraining step bench" 420 "$py" bench/pretrain_step.py --device cpu --teacher tiny --batch 1 \
        --seconds 1 --repeats 1 --profile
else
    part "CUDA tests" 100 "$py" -m pytest -q -p no:cacheprovider -rs -k cuda $cuda_tests
    part "contamination bench" 90 "$py" bench/contamination_speed.py --device cuda --repeats 5
    part "upstream bench" 60 "$py" bench/upstream_speed.py --device cuda --seconds 10 --batch 16 --autocast bf16 --repeats 5
    part "pretraining step bench" 200 "$py" bench/pretrain_step.py --device cuda --repeats 3 --profile
fi
say ""
say "gpu_check: $SECONDS s in all, exit $status; figures in $figures"
exit $status
