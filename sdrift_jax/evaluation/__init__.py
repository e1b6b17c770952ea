"""Sample-quality metrics: W2^2 by exact OT, Frechet distances, precision and recall."""
