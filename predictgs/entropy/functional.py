"""The functional pieces of the entropy models: likelihoods, bit costs and quantisers.

- Continuous attributes (features or residuals, scaling, offsets) are quantised with a per-anchor step Q
  and modelled by a Gaussian discretised on that step: p(x) = Phi((x + Q/2 - mu)/sigma) -
  Phi((x - Q/2 - mu)/sigma), floored at 1e-6 (HAC's ``Low_bound``: no gradient flows where the likelihood
  is below the floor, whatever its sign; HAC++ uses the same function). sigma has no activation, only a
  1e-9 clamp, as in HAC.
- Binary data (hash tables, offset masks) is costed as one Bernoulli with p = share of ones:
  N H(p) + 32 bits (HAC's ``get_binary_vxl_size``; the 32 bits store p).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LIKELIHOOD_FLOOR = 1e-6
SCALE_FLOOR = 1e-9
CLAMP_STEPS = 15000.0


class _LowBound(torch.autograd.Function):
    """max(x, 1e-6) with the reference's gradient: the incoming gradient where x >= 1e-6, zero below.

    The reference (HAC and HAC++, ``utils/entropy_models.py``) zeroes the gradient where x < 1e-6 and then
    multiplies by (x >= 1e-6 or g < 0), which is 1 wherever the first step left something: the net rule
    is "nothing below the floor", also for a negative gradient (the rate loss's, which would push the
    likelihood up)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.clamp(x, min=LIKELIHOOD_FLOOR)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.where(x >= LIKELIHOOD_FLOOR, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))


def low_bound(x: Tensor) -> Tensor:
    return _LowBound.apply(x)


def _normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def clamp_around(x: Tensor, step: Tensor, center: Tensor | None = None) -> Tensor:
    """HAC keeps values within center +- 15000 Q (center: the mean of the values) before coding."""
    center = x.mean() if center is None else center
    return torch.maximum(torch.minimum(x, center + CLAMP_STEPS * step), center - CLAMP_STEPS * step)


def gaussian_likelihood(x: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    """Probability of the quantisation bin of x (bin width ``step``) under N(mean, scale^2), floored.
    Callers apply HAC's range clamp (:func:`clamp_around`) first, with the centre they need."""
    scale = torch.clamp(scale, min=SCALE_FLOOR)
    upper = _normal_cdf((x + 0.5 * step - mean) / scale)
    lower = _normal_cdf((x - 0.5 * step - mean) / scale)
    return low_bound(torch.abs(upper - lower))


def gaussian_bits(x: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    """Estimated bits per element, -log2 of :func:`gaussian_likelihood`."""
    return -torch.log2(gaussian_likelihood(x, mean, scale, step))


def _bernoulli_bits(p: Tensor, n: int) -> Tensor:
    """N H(p) + 32 for the share p of ones among n values."""
    p = p.clamp(1e-6, 1 - 1e-6)
    entropy = -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    return n * entropy + 32.0


def binary_bits(values01: Tensor) -> Tensor:
    """Bits to code a {0,1} tensor with one global Bernoulli: N H(p) + 32. Differentiable in p."""
    n = values01.numel()
    if n == 0:
        return values01.new_tensor(0.0)
    return _bernoulli_bits(values01.float().mean(), n)


class _ShareOfPlusOnes(torch.autograd.Function):
    """The float32 mean of (b + 1) / 2 over tables of entries in {-1, +1}, without concatenating them.

    The same value and gradient bits as the mean in ``binary_bits((cat(tables) + 1) / 2)`` (tables of
    fewer than 2^24 entries; HAC's have 1.8M): the count of ones is exact in float32 whatever the order of
    the sum, CPU ``mean`` is sum / n, and the gradient of every entry is (g / n) / 2 (MeanBackward, then
    DivBackward), here one constant per table, broadcast without memory. Two to three passes over the
    tables instead of about ten (the concatenation, its slices' gradients, the elementwise divisions)."""

    @staticmethod
    def forward(ctx, *tables: Tensor) -> Tensor:
        n = sum(t.numel() for t in tables)
        ctx.n = n
        ctx.dtypes = [t.dtype for t in tables]
        ctx.shapes = [t.shape for t in tables]
        ones = torch.stack([(t > 0).sum() for t in tables]).sum()  # int64 on the tables' device: no sync
        return ones.to(torch.float32) / n

    @staticmethod
    def backward(ctx, grad: Tensor):
        per_mean = grad / ctx.n
        return tuple((per_mean.to(dtype) / 2).expand(shape) for dtype, shape in zip(ctx.dtypes, ctx.shapes))


def hash_table_bits(encoding, tables=None) -> Tensor:
    """Bits of a binarised hash encoding's tables (entries in {-1, +1}) under one global Bernoulli.
    ``tables``: the step's ``encoding.binarised()``, to reuse the binarisation of the forward pass."""
    tables = encoding.binarised() if tables is None else tables
    n = sum(t.numel() for t in tables)
    if n == 0:
        return tables[0].new_zeros(()) if len(tables) else torch.zeros(())
    return _bernoulli_bits(_ShareOfPlusOnes.apply(*tables), n)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def quantize(x: Tensor, step: Tensor | float, mode: str) -> Tensor:
    """Simulated or real quantisation with step Q (broadcast against x).

    mode "noise": x + U(-Q/2, Q/2) (training); "round": round(x/Q) Q with a straight-through gradient
    (test time and the bitstream)."""
    if mode == "noise":
        noise = torch.rand(x.shape, device=x.device, dtype=x.dtype) - 0.5
        return x + noise * step
    if mode == "round":
        return _RoundSTE.apply(x / step) * step
    raise ValueError(f"unknown quantisation mode {mode!r}")


def adaptive_step(base_step: float, adjustment: Tensor) -> Tensor:
    """HAC's adaptive quantisation step Q = Q0 (1 + tanh(adj)), in (0, 2 Q0)."""
    return base_step * (1.0 + torch.tanh(adjustment))
