"""sdrift_jax: Sinkhorn-drifting generative models in JAX.

The public API, re-exported from the layers: :mod:`sdrift_jax.costs`, the Sinkhorn
engines (:mod:`sdrift_jax.solvers`), the drifts (:mod:`sdrift_jax.drift`); models,
evaluation and training are imported from their packages.
"""
from sdrift_jax.costs import COSTS, pairwise_cost
from sdrift_jax.drift.couplings import FORMS
from sdrift_jax.drift.field import NORMALIZATIONS, DriftInfo, drift_field, drift_field_with_info
from sdrift_jax.drift.warm import DriftState
from sdrift_jax.drift.loss import (FeatureDrift, feature_drift, feature_drift_loss,
                                   feature_sets_loss, uncond_weight)
from sdrift_jax.drift.spec import DriftSpec
from sdrift_jax.solvers.ot import SinkhornOutput, sinkhorn, sinkhorn_divergence, sinkhorn_scaling

__version__ = "0.1.0"

__all__ = [
    "COSTS",
    "FORMS",
    "NORMALIZATIONS",
    "DriftInfo",
    "DriftState",
    "DriftSpec",
    "FeatureDrift",
    "SinkhornOutput",
    "drift_field",
    "drift_field_with_info",
    "feature_drift",
    "feature_drift_loss",
    "feature_sets_loss",
    "pairwise_cost",
    "sinkhorn",
    "sinkhorn_divergence",
    "sinkhorn_scaling",
    "uncond_weight",
]
