"""Flax NNX generators and the pixel feature encoder."""
