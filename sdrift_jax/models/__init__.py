"""Flax NNX generators (looked up by ``config.model.kind``) and the pixel feature encoder."""
from sdrift_jax.models.generators import (MLPGenerator, ResidualMLPGenerator,
                                          check_model_config, make_generator)
from sdrift_jax.models.pixel import ConvGenerator, MaskedConvEncoder

__all__ = ["ConvGenerator", "MLPGenerator", "MaskedConvEncoder", "ResidualMLPGenerator",
           "check_model_config", "make_generator"]
