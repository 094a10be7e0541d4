#!/usr/bin/env bash
# One GPU check of the SDK, in under 8 minutes on one CUDA GPU (issue 25):
#   1. tests: the CUDA tests (those that skip without CUDA), selected by benchmarks/gpu_check.py's pytest plugin
#   2. kernel: benchmarks/kernel_speedup.py, Swin-T at 672x672, batch 1 and 4, fp16 and fp32, dense vs s=0.5,
#      eager (with the block-pair table and the torchvision reference) then torch.compile'd
#   3. profile: a quick real dataset, sparsevit-profile --device cuda:0 --quick (Swin-T, 672x672, fp16)
#   4. estimate: the SDK's shipped estimate for this GPU (LatencyPredictor.for_hardware) next to 2 and 3
# Everything (logs, JSON/CSV, the profile, the table, nvidia-smi, pip freeze, versions, date) goes to
# $OUT if set (the device tool brings it back), else gpu_check_out/. The tool returns at most 8 files,
# so the files are also packed into gpu_check.tar.gz, and under $OUT only summary.md, the table and the
# archive are left. Each step has its own timeout and the check goes on after a failure; summary.md
# lists every step's exit status, and the script exits 1 if any failed.
#
# Where the packages come from: the GPU machine (image 'cuda', Python 3.12) has PyTorch (CUDA), timm,
# pandas, scikit-learn, scipy, and the SDK's other module-level imports pyarrow, matplotlib, tqdm and
# filelock, but no xgboost or deap, and no network. Steps 1-3 import neither; step 4 needs xgboost (the
# predictor package imports it), and the search needs deap (which needs moocore, cffi, pycparser, platformdirs). `--fetch`, run where PyPI answers, downloads those
# wheels into benchmarks/wheels/ (git-ignored, ~7 MB) for the GPU machine's Python 3.12 and this one's;
# the check installs the missing ones from there (pip --no-index --target, nothing else touched) and
# runs the SDK from this checkout via PYTHONPATH (no `pip install -e .`: that needs the index).
#
#   benchmarks/gpu_check.sh --fetch      # here, once: the wheels
#   benchmarks/gpu_check.sh              # on the GPU machine (carry benchmarks/wheels); no CUDA: --dry-run
#   benchmarks/gpu_check.sh --dry-run    # the same steps on the CPU at tiny sizes: tests the plumbing
set -uo pipefail  # no -e: a failed step must not stop the others

REPO=$(cd "$(dirname "$0")/.." && pwd)
WHEELS=$REPO/benchmarks/wheels
PY=${PYTHON:-python3}
# name==version wheel, and the module that shows it is installed
PACKAGES="xgboost-cpu==3.2.0:xgboost deap==1.4.4:deap moocore==0.3.2:moocore cffi==2.0.0:cffi
          pycparser==3.0:pycparser platformdirs==4.14.9:platformdirs"

if [[ ${1:-} == --fetch ]]; then
  # manylinux x86-64 wheels, no dependencies resolved (numpy and scipy are there already): for the GPU
  # machine's Python (3.12, image 'cuda') and for this one's, so --dry-run tests the same install here.
  here=$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  for py in ${GPU_PYTHON:-3.12} "$here"; do
    $PY -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$py" \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$WHEELS" $(for p in $PACKAGES; do echo "${p%%:*}"; done) || exit 1
  done
  ls -l "$WHEELS" && du -sh "$WHEELS"
  exit 0
fi

DRY=0
[[ ${1:-} == --dry-run ]] && DRY=1
$PY -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null || {
  [[ $DRY == 1 ]] || echo "gpu_check: no CUDA device: running the dry run (CPU, tiny sizes)"
  DRY=1
}
if [[ $DRY == 1 ]]; then  # the same steps and files, small enough for a shared 2-core CPU
  DEVICE=cpu
  KERNEL="--resolution 112 --batch 1 2 --dtype fp32 fp16 --threads 1 --rounds 2 --repeats 1"
  COMPILED="--model swin_micro --resolution 64 --batch 1 --dtype fp32 --threads 1 --rounds 2 --repeats 1"
  PROFILE="--model swin_micro --resolution 112x112 --threads 1"
  ESTIMATE="--resolution 112 --batch 1 2 --dtype fp32 fp16 --hw ${GPU_CHECK_HW:-h100}"
else
  DEVICE=cuda:0
  KERNEL="--resolution 672 --batch 1 4 --dtype fp16 fp32 --rounds 4 --repeats 5"
  COMPILED=$KERNEL
  PROFILE="--model swin_t --resolution 672x672 --dtype fp16"
  ESTIMATE="--resolution 672 --batch 1 4 --dtype fp16 fp32${GPU_CHECK_HW:+ --hw $GPU_CHECK_HW}"
fi

RESULTS=${OUT:-$REPO/gpu_check_out}
FILES=$RESULTS/files
rm -rf "$FILES" && mkdir -p "$FILES"
SUMMARY=$RESULTS/summary.md
SITE=${TMPDIR:-/tmp}/gpu_check_site  # the shipped wheels go here, outside the Python's own site-packages
export PYTHONPATH=$REPO:$REPO/benchmarks:$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
cd "$REPO" || exit 1
FAILED=0
{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC')$([[ $DRY == 1 ]] && echo ' (DRY RUN on the CPU: plumbing only)')"
  echo
  echo "| step | exit | seconds | timeout | log |"
  echo "|---|---:|---:|---:|---|"
} >"$SUMMARY"

# step NAME TIMEOUT_S CMD...: runs CMD under its own timeout (SIGKILL 10 s after SIGTERM: a hung CUDA
# call ignores SIGTERM), logs to files/NAME.log, records the exit status; 124/137 mean timed out.
step() {
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name (timeout ${limit}s): $*" | tee "$FILES/$name.log"
  timeout -k 10 "$limit" "$@" >>"$FILES/$name.log" 2>&1
  rc=$?
  echo "| $name | $rc | $(($(date +%s) - start)) | $limit | files/$name.log |" >>"$SUMMARY"
  if [[ $rc != 0 ]]; then
    FAILED=1
    echo "   $name FAILED (exit $rc); last lines:" && tail -n 8 "$FILES/$name.log" | sed 's/^/   | /'
  else
    echo "   $name ok ($(($(date +%s) - start)) s)"
  fi
}

setup() {  # install from the shipped wheels what is missing; then the imports every step needs
  local need=() p
  for p in $PACKAGES; do
    $PY -c "import ${p##*:}" 2>/dev/null || need+=("${p%%:*}")
  done
  if ((${#need[@]})); then
    echo "installing from $WHEELS: ${need[*]}"
    $PY -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$SITE" \
      --find-links "$WHEELS" "${need[@]}" || return 1
  fi
  $PY -c 'import xgboost, deap.tools, torch, timm, pandas, sklearn, pyarrow
import sparsevit_sdk.sparse, sparsevit_sdk.profiler, sparsevit_sdk.predictor, sparsevit_sdk.search
print("imports ok: xgboost", xgboost.__version__, "from", xgboost.__file__)'
}

environment() {  # what ran where: written as files, never a failure
  date -u '+%Y-%m-%dT%H:%M:%SZ' >"$FILES/date.txt"
  { timeout 20 nvidia-smi && timeout 20 nvidia-smi --format=csv \
      --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit; } \
    >"$FILES/nvidia-smi.txt" 2>&1 || echo "(no nvidia-smi here)" >>"$FILES/nvidia-smi.txt"
  timeout 30 $PY -m pip freeze >"$FILES/pip-freeze.txt" 2>&1
  ls "$SITE" >>"$FILES/pip-freeze.txt" 2>/dev/null
  timeout 30 $PY - >"$FILES/versions.txt" 2>&1 <<'EOF'
import platform, sys, torch
print("python", sys.version.replace("\n", " "), "at", sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu only")
print("platform", platform.platform(), "cpus", __import__("os").cpu_count())
import sparsevit_sdk, timm; print("sparsevit_sdk", sparsevit_sdk.__version__, "timm", timm.__version__)
EOF
  if git -C "$REPO" rev-parse HEAD >/dev/null 2>&1; then  # the device tool copies the tree without .git
    echo "commit $(git -C "$REPO" rev-parse HEAD), $(git -C "$REPO" status --short | wc -l) paths differ" \
      >>"$FILES/versions.txt"
    git -C "$REPO" status --short >"$FILES/git-status.txt"
  else
    echo "commit: unknown (no .git here)" >>"$FILES/versions.txt"
  fi
}

echo "gpu_check: device $DEVICE, results in $RESULTS"
export PY PACKAGES WHEELS SITE && export -f setup  # so that `timeout` can run it
step setup 30 bash -c setup
environment
# the test files that mention CUDA; the plugin keeps the tests among them that need it
step tests 90 $PY -m pytest -q -rs -p gpu_check -p no:cacheprovider --junitxml="$FILES/tests.xml" \
  $(grep -rlis --include='test_*.py' cuda tests)
# $KERNEL, $COMPILED, $PROFILE, $ESTIMATE unquoted: the argument lists above split into words on purpose
step kernel_eager 75 $PY benchmarks/kernel_speedup.py --device "$DEVICE" --only v1 $KERNEL --runtime eager \
  --json "$FILES/kernel_eager.json"
step kernel_compiled 165 $PY benchmarks/kernel_speedup.py --device "$DEVICE" --only v1 $COMPILED --runtime compiled \
  --whole-only --json "$FILES/kernel_compiled.json"
step profile 60 $PY -m sparsevit_sdk.cli.profile --device "$DEVICE" $PROFILE --batch 1 --quick --no-progress \
  --out "$FILES/profile"
step estimate 30 $PY benchmarks/gpu_check.py estimate --files "$FILES" $ESTIMATE

{
  echo
  cat "$FILES/estimate_vs_measured.md" 2>/dev/null || echo "(no estimate table: see files/estimate.log)"
  echo
  echo '```'
  cat "$FILES/versions.txt"
  grep -A1 '^name' "$FILES/nvidia-smi.txt" 2>/dev/null
  echo '```'
} >>"$SUMMARY"
cp "$FILES/estimate_vs_measured.md" "$FILES/estimate_vs_measured.csv" "$RESULTS/" 2>/dev/null
tar -czf "$RESULTS/gpu_check.tar.gz" -C "$RESULTS" files summary.md
[[ -n ${OUT:-} ]] && rm -rf "$FILES"  # the device tool returns at most 8 files: the archive holds them
echo
cat "$SUMMARY"
echo "gpu_check: $([[ $FAILED == 0 ]] && echo 'all steps passed' || echo 'SOME STEPS FAILED'); see $RESULTS"
exit $FAILED
