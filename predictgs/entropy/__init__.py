"""Entropy models: the functional pieces (likelihoods, bit costs, quantisers) and the models built on
them, each owning its rate estimate and its coding (``AnchorEntropyModel``: HAC's context model of the
per-anchor attributes; ``binary``: Bernoulli-coded binary tables and masks)."""

from .functional import (CLAMP_STEPS, LIKELIHOOD_FLOOR, SCALE_FLOOR, adaptive_step, binary_bits, clamp_around,
                         gaussian_bits, gaussian_likelihood, hash_table_bits, low_bound, quantize)

__all__ = ["CLAMP_STEPS", "LIKELIHOOD_FLOOR", "SCALE_FLOOR", "adaptive_step", "binary_bits", "clamp_around",
           "gaussian_bits", "gaussian_likelihood", "hash_table_bits", "low_bound", "quantize"]
