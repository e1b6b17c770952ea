#!/usr/bin/env bash
# GPU checks of the drift in one call of a lent accelerator machine (runs from the
# repository root). Each stage has its own time limit and log under $OUT, so a stage
# that fails or runs out of time leaves the others' results.
#
# Wheels that the machine's image lacks (ott-jax, jaxopt, ml-collections) travel in the
# git-ignored folder .whl (see docs/testing.md, "On a GPU").
#
#   bash benchmarks/device_checks.sh            # all stages
#   STAGES="floors vs_ott" bash benchmarks/device_checks.sh
set -u
OUT=${OUT:-/tmp/device_checks}
mkdir -p "$OUT"
PY=${PY:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
STAGES=${STAGES:-env floors vs_ott vs_ott_tf32 blocked tests}

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND, appends its output to NAME.log
  local name=$1 secs=$2 start rc
  shift 2
  start=$(date +%s)
  echo "\$ $*" >> "$OUT/$name.log"
  # SIGINT first: pytest then prints the tracebacks of the failures so far.
  timeout -s INT -k 10 "$secs" "$@" >> "$OUT/$name.log" 2>&1
  rc=$?
  echo "== $name: rc=$rc in $(( $(date +%s) - start )) s: $*"
}

for s in $STAGES; do
  case $s in
    env)
      stage env 30 nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm \
        --format=csv
      stage env 30 $PY -c "import jax, flax, optax, ott, ml_collections; \
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, \
'ott', ott.__version__); print(jax.devices())"
      ;;
    floors)
      stage floors 60 $PY -m benchmarks.gpu_floors --n 16384 --T 31
      ;;
    vs_ott)
      stage vs_ott 90 $PY -m benchmarks.drift_vs_ott --sizes 16384 --dims 6 512 \
        --Ts 1 31 --repeats 10
      stage vs_ott 70 $PY -m benchmarks.drift_vs_ott --sizes 4096 8192 --dims 2 64 512 \
        --Ts 41 --repeats 10
      ;;
    blocked)
      stage blocked 30 $PY -m benchmarks.blocked_memory --n 16384 --d 64 --T 3 \
        --algorithm blocked
      stage blocked 30 $PY -m benchmarks.blocked_memory --n 16384 --d 64 --T 3 \
        --algorithm scaling
      for n in 65536 131072 262144; do
        stage blocked 40 $PY -m benchmarks.blocked_memory --n $n --d 64 --T 3
      done
      ;;
    vs_ott_tf32)  # ott-jax as its users get it on a GPU: costs by TF32 matmuls
      stage vs_ott_tf32 90 $PY -m benchmarks.drift_vs_ott --sizes 16384 --dims 6 512 \
        --Ts 1 31 --repeats 10 --ott-precision default
      ;;
    tests)
      stage tests 100 $PY -m pytest -v -p no:randomly tests/solvers/test_fast_paths.py \
        tests/solvers/test_blocked.py tests/drift/test_field.py
      ;;
  esac
done
for f in "$OUT"/*.log; do echo "---- $f"; tail -n 30 "$f"; done
