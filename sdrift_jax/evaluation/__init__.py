"""Sample-quality metrics: W2^2 by exact OT, Frechet distances, k-NN precision and recall."""
from sdrift_jax.evaluation.frechet import (DecodedFID, frechet_distance,
                                           gaussian_frechet_distance)
from sdrift_jax.evaluation.metrics import knn_precision_recall, w2_squared

__all__ = ["DecodedFID", "frechet_distance", "gaussian_frechet_distance",
           "knn_precision_recall", "w2_squared"]
