"""Sinkhorn engines: log-domain, scaling-domain and blocked half-iterations."""
