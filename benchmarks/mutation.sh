#!/usr/bin/env bash
# Mutation testing of the drift core with mutmut 3, one module per run, one worker.
#
# Usage (from the repository root, with mutmut installed: pip install 'mutmut>=3.8'):
#   benchmarks/mutation.sh MODULE [MUTANT_PATTERN ...]
# MODULE is one of the names in TESTS below; patterns (mutmut's mutant names with '*',
# e.g. 'sdrift_jax.drift.x__couplings*') restrict the run to some functions. With
# MUTATION_REF=<commit> the tests are taken from that commit instead of the working tree
# (how the "before" counts in docs/testing.md were made). The library is always the working tree's. The run happens in a scratch copy
# ($MUTATION_DIR/MODULE, default /tmp/sdrift_mutation/MODULE) holding its own setup.cfg
# with the [mutmut] section, so the project needs no mutmut configuration; results stay
# there: `cd $MUTATION_DIR/MODULE && mutmut results` lists the survivors and
# `mutmut show NAME` prints one as a diff.
set -euo pipefail

module=$1
shift
ref=${MUTATION_REF:-}
root=$(git rev-parse --show-toplevel)
work=${MUTATION_DIR:-/tmp/sdrift_mutation}/$module

# The fast tests that cover each module (per-mutant cost is one process start, the JAX
# import, and the compilations of the selected tests that reach the mutated function).
# Pytest arguments separated by ';'.
declare -A TESTS=(
  [metrics]="tests/test_metrics.py"
  [costs]="tests/test_costs.py;tests/test_validation.py"
  [sinkhorn_solver]="tests/test_sinkhorn_solver.py;-k;not prop_3_1"
  # drift: a quick subset of tests/test_drift.py (the whole file runs ~5 min per mutant).
  [drift]="tests/test_validation.py;tests/test_drift.py::test_matches_float64_numpy[sinkhorn-euclidean-True-True];tests/test_drift.py::test_matches_float64_numpy[two_sided-sqeuclidean-False-True];tests/test_drift.py::test_matches_float64_numpy[two_sided_joint-half_sqeuclidean-True-True];tests/test_drift.py::test_matches_float64_numpy[one_sided-sqeuclidean-True-False];tests/test_drift.py::test_marginal_errors_are_float64_column_errors;tests/test_drift.py::test_T1_and_one_sided_are_the_float64_row_softmax[True-euclidean];tests/test_drift.py::test_T_2k_plus_1_is_k_full_iterations_of_the_reference_code[0];tests/test_drift.py::test_T_2k_plus_1_is_k_full_iterations_of_the_reference_code[2];tests/test_drift.py::test_positive_part_is_a_convex_combination_matching_float64;tests/test_drift.py::test_relative_tau_is_tau_times_the_float64_mean_cost;tests/test_stabilized.py::test_auto_picks_scaling_for_positive_weights_and_matches_float64;tests/test_stabilized.py::test_concrete_weights_inside_jit_keep_the_scaling_domain;tests/test_stabilized.py::test_zero_weights_fall_back_to_the_log_domain;tests/test_drift.py::test_float32_inputs_stay_float32_with_x64_enabled;tests/test_blocked.py::test_blocked_rejects_normalizations_it_does_not_implement;tests/test_blocked.py::test_blocked_equals_dense[1.0-one_sided-1-sqeuclidean-True];tests/test_blocked.py::test_auto_picks_blocked_when_the_dense_matrices_would_not_fit"
  [stabilized]="tests/test_stabilized.py"
  [blocked]="tests/test_blocked.py"
  [loss]="tests/test_loss.py"
  [feature_couplings]="tests/test_loss.py"
)
IFS=';' read -r -a selection <<< "${TESTS[$module]}"

rm -rf "$work"
mkdir -p "$work"
tar -C "$root" --exclude=__pycache__ -cf - sdrift_jax tests pyproject.toml | tar -C "$work" -xf -
if [[ -n "$ref" ]]; then
  rm -rf "$work/tests"
  git -C "$root" archive "$ref" tests | tar -C "$work" -xf -
  cp "$root/tests/mutation_plugin.py" "$work/tests/"
fi
{
  echo "[mutmut]"
  echo "source_paths = sdrift_jax"
  echo "only_mutate = sdrift_jax/$module.py"
  echo "pytest_add_cli_args_test_selection ="
  for arg in "${selection[@]}"; do echo "  $arg"; done
  echo "pytest_add_cli_args ="
  echo "  -p"
  echo "  mutation_plugin"
  # Fork each mutant's process from a server that has imported JAX and the library but
  # run nothing (no backend, no compiled functions, one thread): forking a process that
  # has run JAX would inherit its compiled (unmutated) functions and its XLA threads.
  # The imports (~5 s) are then paid once, not per mutant.
  echo "process_isolation = forkserver"
  echo "forkserver_warmup = import"
  echo "preload_modules_file = preload.txt"
} > "$work/setup.cfg"
printf '%s\n' numpy scipy.optimize scipy.special jax jax.numpy pytest sdrift_jax \
  ott.tools.sinkhorn_divergence > "$work/preload.txt"

cd "$work"
start=$(date +%s)
nice -n 10 mutmut run --max-children 1 "$@" > run.log 2>&1 || true
echo "wall time: $(( $(date +%s) - start )) s" | tee -a run.log
mutmut results --all true > results.txt 2>&1 || true
# The last progress line: done/total, killed, ..., survived.
tr '\r' '\n' < run.log | grep -E '^. [0-9]+/[0-9]+' | tail -1
echo "survivors: $(grep -c ': survived' results.txt || true)"
