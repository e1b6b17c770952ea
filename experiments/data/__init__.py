"""Datasets: 2-D toy targets, the particle experiment's clouds, MNIST and latent sets."""
