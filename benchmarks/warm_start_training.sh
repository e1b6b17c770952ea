#!/bin/bash
# Warm-started couplings in a real training loop, with and without a memory bank of
# positives coupled whole (docs/notes.md, "Convergence controls: what did not pay").
# MNIST latents, configs/mnist.py defaults (Gaussian kernel, 64 generated per class per
# step), Sinkhorn only, 1000 steps, tol 1e-3, T at most 401, 256 positives per class in
# every run. Reads the helper networks from $CACHE (default: the main job's cache).
#   bash benchmarks/warm_start_training.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-/tmp/warm_start_training}
CACHE=${CACHE:-workdirs/mnist/cache}
for tau in 0.01 0.3 3.0; do
  for run in cold warm bank_warm; do
    case $run in
      cold) EXTRA=();;
      warm) EXTRA=(--config.drift.warm_start=True);;
      bank_warm) EXTRA=(--config.drift.warm_start=True --config.train.bank_size=256
                        --config.train.bank_push=64);;
    esac
    python -m experiments.run "--config=configs/mnist.py:eq7,methods=(sinkhorn,),steps=1000,T=401,taus=($tau,)" \
      --config.mnist.cache_dir="$CACHE" --config.drift.tol=0.001 \
      --config.train.num_positives=256 --config.train.log_every=50 \
      --config.train.eval_every=500 --config.train.checkpoint_every=500 \
      "${EXTRA[@]}" --workdir="$OUT/tau${tau}_$run" > "$OUT.tau${tau}_$run.log" 2>&1
  done
done
python - "$OUT" <<'PY'
import glob, json, sys
print("| tau | run | half-steps per step (mean of the logged) | column error at step 1000 (pos / neg) | W2^2 | Acc |")
print("|---|---|---:|---|---:|---:|")
for path in sorted(glob.glob(f"{sys.argv[1]}/*/**/metrics.jsonl", recursive=True)):
  recs = [json.loads(l) for l in open(path)]
  hs = [r["half_steps"][0] for r in recs if "half_steps" in r]
  ev = [r for r in recs if "w2" in r][-1]
  name = path[len(sys.argv[1]) + 1:].split("/")[0]
  tau, run = name[3:].split("_", 1)
  print(f"| {tau} | {run} | {sum(hs) / len(hs):.0f} | {ev['marginal_error_pos'][0]:.2g} / "
        f"{ev['marginal_error_neg'][0]:.2g} | {ev['w2'][0]:.2f} | {ev['accuracy'][0]:.1f} |")
PY
