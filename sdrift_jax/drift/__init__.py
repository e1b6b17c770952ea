"""Drift fields: the couplings once (:mod:`~sdrift_jax.drift.couplings`), ``drift_field``
for point clouds and ``feature_drift`` (the reference codes' loss) as its two fronts."""
from sdrift_jax.drift.field import DriftInfo, drift_field, drift_field_with_info
from sdrift_jax.drift.warm import DriftState
from sdrift_jax.drift.loss import (FeatureDrift, feature_drift, feature_drift_loss,
                                   feature_sets_loss, uncond_weight)
from sdrift_jax.drift.spec import DriftSpec

__all__ = ["DriftInfo", "DriftState", "DriftSpec", "FeatureDrift", "drift_field", "drift_field_with_info",
           "feature_drift", "feature_drift_loss", "feature_sets_loss", "uncond_weight"]
