"""Drift fields: the couplings, ``drift_field`` and the feature drift of the reference codes."""
