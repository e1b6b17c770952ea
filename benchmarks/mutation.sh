#!/usr/bin/env bash
# Mutation testing of the drift core with mutmut 3, one module per run, one worker
# (MUTATION_CHILDREN=2 for two).
#
# Usage (from the repository root, with mutmut installed: pip install 'mutmut>=3.8'):
#   benchmarks/mutation.sh MODULE [MUTANT_PATTERN ...]
# MODULE is one of the names in TESTS below (dotted under sdrift_jax, e.g. drift.field, solvers.scaling); patterns (mutmut's mutant names with '*',
# e.g. 'sdrift_jax.drift.field.x__couplings*') restrict the run to some functions. With
# MUTATION_REF=<commit> the tests are taken from that commit instead of the working tree
# (how the "before" counts in docs/notes.md were made). The library is always the working tree's. The run happens in a scratch copy
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
# The loss modules' selection: one case of tests/drift/test_loss.py's grid per form x
# normalization x CFG mode (costs and masks rotated; the whole 180-case grid is ~2 min per
# surviving mutant), and the file's other tests.
LOSS_TESTS="tests/drift/test_loss.py::test_matches_numpy_reference[split-one_sided-euclidean-maskNone-w1.0-weighted_cols-nou-fsTrue-K1-L1-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[split-one_sided-euclidean-maskFalse-w2.5-weighted_cols-u-fsFalse-K1-L4-raw-T41];tests/drift/test_loss.py::test_matches_numpy_reference[split-two_sided-euclidean-maskTrue-w1.0-weighted_cols-nou-fsFalse-K1-L1-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[split-two_sided-sqeuclidean-maskNone-w2.5-weighted_cols-u-fsTrue-K1-L4-raw-T41];tests/drift/test_loss.py::test_matches_numpy_reference[split-sinkhorn-sqeuclidean-maskFalse-w1.0-weighted_cols-nou-fsFalse-K3-L1-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[split-sinkhorn-sqeuclidean-maskTrue-w2.5-weighted_cols-u-fsFalse-K3-L1-raw-T41];tests/drift/test_loss.py::test_matches_numpy_reference[split-sinkhorn-euclidean-maskNone-w3.0-none-u-fsFalse-K1-L4-unit-T8];tests/drift/test_loss.py::test_matches_numpy_reference[split-sinkhorn-euclidean-maskFalse-w2.0-post_guidance-u-fsFalse-K3-L1-raw-T41];tests/drift/test_loss.py::test_matches_numpy_reference[joint-one_sided-euclidean-maskTrue-w1.0-weighted_cols-nou-fsTrue-K3-L4-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[joint-one_sided-sqeuclidean-maskNone-w2.5-weighted_cols-u-fsTrue-K1-L1-raw-T41];tests/drift/test_loss.py::test_matches_numpy_reference[joint-two_sided-sqeuclidean-maskFalse-w1.0-weighted_cols-nou-fsFalse-K3-L4-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[joint-two_sided-sqeuclidean-maskTrue-w2.5-weighted_cols-u-fsFalse-K1-L1-raw-T41];tests/drift/test_loss.py::test_matches_numpy_reference[joint-sinkhorn-euclidean-maskNone-w1.0-weighted_cols-nou-fsFalse-K3-L1-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[joint-sinkhorn-euclidean-maskFalse-w2.5-weighted_cols-u-fsFalse-K1-L4-raw-T8];tests/drift/test_loss.py::test_matches_numpy_reference[joint-sinkhorn-euclidean-maskTrue-w3.0-none-u-fsFalse-K1-L1-raw-T8];tests/drift/test_loss.py::test_aggregate_kernels_matches_reference;tests/drift/test_loss.py::test_post_guidance_with_aggregate_kernels;tests/drift/test_loss.py::test_high_dimension_matmul_costs;tests/drift/test_loss.py::test_scale_free;tests/drift/test_loss.py::test_squared_cost_without_normalization_is_not_scale_free;tests/drift/test_loss.py::test_translation_invariant;tests/drift/test_loss.py::test_omega_one_equals_no_unconditional_negatives;tests/drift/test_loss.py::test_guidance_moves_the_drift_away_from_unconditional_samples;tests/drift/test_loss.py::test_weighted_cols_never_infeasible_and_none_is_refused;tests/drift/test_loss.py::test_weighted_cols_marginal_is_met;tests/drift/test_loss.py::test_uncond_weight_formula;tests/drift/test_loss.py::test_scaling_path_and_log_domain_match_float64;tests/drift/test_loss.py::test_vmap_over_classes_and_traced_omega;tests/drift/test_loss.py::test_loss_gradient_is_the_drift;tests/drift/test_loss.py::test_loss_of_2d_input_and_feature_sets_sum;tests/drift/test_loss.py::test_relative_tau_drift_field_equals_feature_drift;tests/drift/test_loss.py::test_bad_arguments_raise;tests/drift/test_loss.py::test_bad_shapes_raise;tests/drift/test_loss.py::test_feature_sets_loss_passes_each_sets_unconditional_negatives;tests/drift/test_loss.py::test_feature_inputs_are_checked_and_lists_accepted;tests/drift/test_loss.py::test_omega_must_be_a_real_scalar_defaults_to_one_and_integers_are_accepted;tests/drift/test_loss.py::test_smallest_accepted_sets_and_empty_unconditional_negatives;tests/drift/test_loss.py::test_inputs_promote_to_a_common_dtype_under_x64;tests/drift/test_loss.py::test_cost_aliases_are_the_canonical_costs;tests/drift/test_loss.py::test_marginal_errors_are_means_over_locations;tests/drift/test_loss.py::test_joint_marginal_errors_match_float64;tests/drift/test_loss.py::test_unnormalized_drift_matches_float64;tests/drift/test_loss.py::test_float64_inputs_match_the_float64_reference_closely;tests/test_check_finite.py"
declare -A TESTS=(
  [evaluation.metrics]="tests/evaluation/test_metrics.py"
  [costs]="tests/test_costs.py;tests/test_validation.py"
  # drift.spec: its own tests, the 'auto' sizing and weight checks, the argument errors.
  [drift.spec]="tests/drift/test_spec.py;tests/test_validation.py;tests/solvers/test_blocked.py::test_auto_threshold_is_the_dense_matrices_bytes;tests/solvers/test_blocked.py::test_auto_picks_blocked_when_the_dense_matrices_would_not_fit;tests/solvers/test_blocked.py::test_blocked_rejects_normalizations_it_does_not_implement;tests/drift/test_field.py::test_auto_sizes_the_problem_by_rows_and_the_larger_target_set;tests/drift/test_field.py::test_high_dimension_drifts_match_float64;tests/solvers/test_scaling.py::test_forced_absorption_changes_nothing[2];tests/solvers/test_scaling.py::test_zero_weights_fall_back_to_the_log_domain;tests/solvers/test_scaling.py::test_concrete_weights_inside_jit_keep_the_scaling_domain;tests/solvers/test_scaling.py::test_auto_picks_scaling_for_positive_weights_and_matches_float64"
  [solvers.ot]="tests/solvers/test_ot.py;-k;not prop_3_1"
  # drift.field: a quick subset of tests/drift/test_field.py (the whole file runs ~5 min per mutant).
  [drift.field]="tests/test_validation.py;tests/drift/test_field.py::test_matches_float64_numpy[sinkhorn-euclidean-True-True];tests/drift/test_field.py::test_matches_float64_numpy[two_sided-sqeuclidean-False-True];tests/drift/test_field.py::test_matches_float64_numpy[two_sided_joint-half_sqeuclidean-True-True];tests/drift/test_field.py::test_matches_float64_numpy[one_sided-sqeuclidean-True-False];tests/drift/test_field.py::test_marginal_errors_are_float64_column_errors;tests/drift/test_field.py::test_T1_and_one_sided_are_the_float64_row_softmax[True-euclidean];tests/drift/test_field.py::test_T_2k_plus_1_is_k_full_iterations_of_the_reference_code[0];tests/drift/test_field.py::test_T_2k_plus_1_is_k_full_iterations_of_the_reference_code[2];tests/drift/test_field.py::test_positive_part_is_a_convex_combination_matching_float64;tests/drift/test_field.py::test_relative_tau_is_tau_times_the_float64_mean_cost;tests/solvers/test_scaling.py::test_auto_picks_scaling_for_positive_weights_and_matches_float64;tests/solvers/test_scaling.py::test_concrete_weights_inside_jit_keep_the_scaling_domain;tests/solvers/test_scaling.py::test_zero_weights_fall_back_to_the_log_domain;tests/drift/test_field.py::test_float32_inputs_stay_float32_with_x64_enabled;tests/solvers/test_blocked.py::test_blocked_rejects_normalizations_it_does_not_implement;tests/solvers/test_blocked.py::test_blocked_equals_dense[1.0-one_sided-41-sqeuclidean-True];tests/solvers/test_blocked.py::test_auto_picks_blocked_when_the_dense_matrices_would_not_fit;tests/drift/test_field.py::test_multi_temperature_is_rms_normalized_sum;tests/drift/test_field.py::test_marginal_error_shrinks_with_T;tests/drift/test_field.py::test_float64_weights_with_float32_inputs_and_x64_enabled;tests/solvers/test_fast_paths.py::test_default_drift_equals_log_domain_and_float64[0.01-one_sided-1-True];tests/solvers/test_fast_paths.py::test_default_drift_equals_log_domain_and_float64[1.0-sinkhorn-41-False];tests/solvers/test_fast_paths.py::test_default_drift_equals_log_domain_and_float64[0.0001-sinkhorn-8-True];tests/solvers/test_fast_paths.py::test_one_sided_with_weights_keeps_the_column_weights;tests/solvers/test_blocked.py::test_blocked_equals_dense[0.05-sinkhorn-8-euclidean-True];tests/solvers/test_blocked.py::test_blocked_with_weights_and_several_temperatures;tests/solvers/test_blocked.py::test_blocked_memory_does_not_grow_with_n_times_m;tests/drift/test_field.py::test_defaults_and_options_reach_both_entry_points;tests/drift/test_field.py::test_any_float64_cloud_promotes_the_drift_under_x64;tests/drift/test_field.py::test_auto_sizes_the_problem_by_rows_and_the_larger_target_set;tests/test_check_finite.py"
  # solvers.scaling: the scaling path's own tests, one case each where they are parametrized
  # (absorption, tiny tau, d = 64, the fallbacks, derivatives, batch axes, T = 1).
  [solvers.scaling]="tests/solvers/test_scaling.py::test_coupling_equals_log_domain_and_float64[2-64-50-2-0.05];tests/solvers/test_scaling.py::test_coupling_equals_log_domain_and_float64[9-64-50-2-0.05];tests/solvers/test_scaling.py::test_coupling_equals_log_domain_and_float64[201-64-50-2-0.0001];tests/solvers/test_scaling.py::test_forced_absorption_changes_nothing[5];tests/solvers/test_scaling.py::test_forced_absorption_changes_nothing[41];tests/solvers/test_scaling.py::test_coupling_row_fallback_matches_float64;tests/solvers/test_scaling.py::test_vmap_folds_into_one_batch_and_matches_a_loop;tests/solvers/test_scaling.py::test_derivatives_follow_the_log_domain_path;tests/solvers/test_scaling.py::test_auto_picks_scaling_for_positive_weights_and_matches_float64;tests/solvers/test_fast_paths.py::test_barycentric_map_equals_coupling_product[2-40-70-16-0.001];tests/solvers/test_fast_paths.py::test_barycentric_map_equals_coupling_product[9-48-48-64-0.5];tests/solvers/test_fast_paths.py::test_barycentric_map_equals_coupling_product[41-64-50-2-0.0001];tests/solvers/test_fast_paths.py::test_barycentric_map_under_forced_absorption[5];tests/solvers/test_fast_paths.py::test_barycentric_map_row_fallback;tests/solvers/test_fast_paths.py::test_column_mass_derivative_matches_float64_central_differences;tests/solvers/test_fast_paths.py::test_leading_batch_axes_are_separate_problems;tests/drift/test_field.py::test_marginal_errors_are_float64_column_errors[sinkhorn-8-True];tests/drift/test_field.py::test_marginal_errors_are_float64_column_errors[one_sided-1-True]"
  [solvers.scaling_kernel]="tests/solvers/test_scaling.py::test_coupling_equals_log_domain_and_float64[2-64-50-2-0.05];tests/solvers/test_scaling.py::test_coupling_equals_log_domain_and_float64[9-64-50-2-0.05];tests/solvers/test_scaling.py::test_coupling_equals_log_domain_and_float64[201-64-50-2-0.0001];tests/solvers/test_scaling.py::test_forced_absorption_changes_nothing[5];tests/solvers/test_scaling.py::test_forced_absorption_changes_nothing[41];tests/solvers/test_scaling.py::test_coupling_row_fallback_matches_float64;tests/solvers/test_scaling.py::test_vmap_folds_into_one_batch_and_matches_a_loop;tests/solvers/test_scaling.py::test_derivatives_follow_the_log_domain_path;tests/solvers/test_scaling.py::test_auto_picks_scaling_for_positive_weights_and_matches_float64;tests/solvers/test_fast_paths.py::test_barycentric_map_equals_coupling_product[2-40-70-16-0.001];tests/solvers/test_fast_paths.py::test_barycentric_map_equals_coupling_product[9-48-48-64-0.5];tests/solvers/test_fast_paths.py::test_barycentric_map_equals_coupling_product[41-64-50-2-0.0001];tests/solvers/test_fast_paths.py::test_barycentric_map_under_forced_absorption[5];tests/solvers/test_fast_paths.py::test_barycentric_map_row_fallback;tests/solvers/test_fast_paths.py::test_column_mass_derivative_matches_float64_central_differences;tests/solvers/test_fast_paths.py::test_leading_batch_axes_are_separate_problems;tests/drift/test_field.py::test_marginal_errors_are_float64_column_errors[sinkhorn-8-True];tests/drift/test_field.py::test_marginal_errors_are_float64_column_errors[one_sided-1-True]"
  [solvers.blocked]="tests/solvers/test_blocked.py;tests/solvers/test_fast_paths.py;tests/drift/test_field.py::test_relative_tau_is_tau_times_the_float64_mean_cost;-k;not barycentric_map and not default_drift"
  [drift.loss]="$LOSS_TESTS"
  [drift.couplings]="$LOSS_TESTS"
  [drift.features]="$LOSS_TESTS"
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
  echo "only_mutate = sdrift_jax/${module//.//}.py"
  echo "pytest_add_cli_args_test_selection ="
  for arg in "${selection[@]}"; do echo "  $arg"; done
  echo "pytest_add_cli_args ="
  echo "  -p"
  echo "  tests.mutation_plugin"
  # Fork each mutant's process from a server that has imported JAX and the library but
  # run nothing (no backend, no compiled functions, one thread): forking a process that
  # has run JAX would inherit its compiled (unmutated) functions and its XLA threads.
  # The imports (~5 s) are then paid once, not per mutant.
  echo "process_isolation = forkserver"
  echo "forkserver_warmup = import"
  echo "preload_modules_file = preload.txt"
  # A mutant that never ends a while_loop is a timeout after 4x the tests' recorded time
  # (mutmut's default, 30x, spends a quarter of an hour on each).
  echo "timeout_multiplier = 2.0"
} > "$work/setup.cfg"
printf '%s\n' numpy scipy.optimize scipy.special jax jax.numpy pytest sdrift_jax \
  ott.tools.sinkhorn_divergence > "$work/preload.txt"

cd "$work"
# Programs that a mutant does not change (the plain log-domain references, the other
# modules) compile once for the whole run: JAX's persistent cache, keyed by the
# program's text, so a mutated program never hits an unmutated entry.
export JAX_COMPILATION_CACHE_DIR="$work/jax_cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
start=$(date +%s)
nice -n 10 mutmut run --max-children "${MUTATION_CHILDREN:-1}" "$@" > run.log 2>&1 || true
echo "wall time: $(( $(date +%s) - start )) s" | tee -a run.log
mutmut results --all true > results.txt 2>&1 || true
# The last progress line: done/total, killed, ..., survived.
tr '\r' '\n' < run.log | grep -aE '[0-9]+/[0-9]+ ' | tail -1 || true
echo "survivors: $(grep -c ': survived' results.txt || true)"
