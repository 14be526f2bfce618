"""Integers under per-element mixtures of discretised Gaussians (HAC++'s feature likelihood), arithmetic
coded with torchac.

An element has symbol ``q = round(x / Q)`` and a mixture sum_k w_k N(mu_k, sigma_k^2) on the bin grid of
step Q. The coder codes ``r = q - c``, ``c = round(sum_k w_k mu_k / Q)``, with everything derived from the
predicted distributions alone, so the decoder derives it too:

- elements are ordered by their predicted spread, the mixture's standard deviation in steps,
  ``s = sqrt(sum_k w_k (sigma_k^2 + (mu_k - m)^2)) / Q`` with ``m = sum_k w_k mu_k`` (stable sort), and cut
  into blocks of at most ``MAX_BLOCK_CDF_ENTRIES`` table entries;
- a block whose widest spread exceeds ``FINE_SPREAD`` (32) codes coarse bins of ``2^k`` steps
  (``k = ceil(log2(s_max / 32))``): ``u = floor(r / 2^k)``, and the ``k`` low bits of ``r`` follow raw (a
  bin holds a nearly flat stretch of such a wide distribution, so little is lost);
- the block's alphabet is ``u`` in ``[-W, W]``, ``W = min(4096, ceil(3 s_max / 2^k) + 1)``, plus two
  escape symbols that carry the tails below and above; an escaped value follows as the varint of
  ``|u| - W - 1`` (its sign is the escape's).
No table grows with an outlier: memory and time depend on the predictions only, and the tables have at
most ~200 entries per element. Measured on a HAC++ model of fern (11k anchors, CPU, one thread): encode
and decode ~1 s, 12x faster than alphabets of +-6 of the components' widest reach, and 0.6% smaller.

Block layout (the element count of each block follows from the stream's length): u32 byte count,
torchac bytes, u32 escape byte count, escape varints, raw low bits (k per element, packed, padded to a
byte).

Exactness: both sides compute the parameters in float32 from the same numbers (see
``predictgs.entropy.anchor``); the block plan uses float64 arithmetic on those float32 values, and the CDF
is evaluated in float64 and rounded to torchac's 16-bit integers with its rule
``round(cdf (2^16 - (L - 1))) + i`` (every symbol keeps at least 2^-16).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .arithmetic import CodeLength, torchac
from .container import ByteReader, ByteWriter

PRECISION = 1 << 16
COVERAGE = 3.0  # the alphabet covers +-3 spreads (the Gaussian coder's measured best); escapes beyond
FINE_SPREAD = 32.0  # wider blocks code coarse bins of 2^k steps (measured on a trained HAC++ model of fern:
# 8 cost +44% on its feature stream, whose mixtures are peaked with a broad minor component; 32 nothing)
MAX_HALF_WIDTH = 4096
MAX_LOW_BITS = 30
MAX_BLOCK_CDF_ENTRIES = 1 << 21
CENTRE_LIMIT = 1 << 30
BLOCK_OVERHEAD_BYTES = 8 + 0.6  # two u32 lengths and torchac's termination (measured ~0.6 bytes)


def _block_shape(spread: float) -> tuple[int, int]:
    """(k low bits, half-width W) of a block whose widest element has spread ``spread``."""
    k = 0
    if spread > FINE_SPREAD:
        k = min(MAX_LOW_BITS, int(math.ceil(math.log2(spread / FINE_SPREAD))))
    width = min(MAX_HALF_WIDTH, int(math.ceil(COVERAGE * spread / 2**k)) + 1)
    return k, width


def _plan(mean, scale, weight, step) -> tuple[Tensor, Tensor, list[tuple[int, int, int, int]]]:
    """(centres, order, blocks (start, count, k, W)) of n elements; mean/scale/weight are [K, n] float32."""
    mixed = (weight * mean).sum(dim=0)
    centre = torch.nan_to_num(torch.round(mixed / step), nan=0.0).clamp(-CENTRE_LIMIT, CENTRE_LIMIT).to(torch.int64)
    spread = torch.sqrt((weight * (scale * scale + (mean - mixed) ** 2)).sum(dim=0)) / step
    spread = torch.nan_to_num(spread, nan=float(2**MAX_LOW_BITS), posinf=float(2**MAX_LOW_BITS))
    order = torch.argsort(spread, stable=True)
    sorted_spread = spread[order].double().tolist()
    blocks, start, n = [], 0, mean.shape[1]
    while start < n:
        # The widest element sets the block's shape; blocks are cut where the table would grow too big.
        k, width = _block_shape(sorted_spread[start])
        count = min(n - start, max(1, MAX_BLOCK_CDF_ENTRIES // (2 * width + 4)))
        k, width = _block_shape(sorted_spread[start + count - 1])
        count = min(count, max(1, MAX_BLOCK_CDF_ENTRIES // (2 * width + 4)))
        k, width = _block_shape(sorted_spread[start + count - 1])
        blocks.append((start, count, k, width))
        start += count
    return centre, order, blocks


def _cdf(centre, mean, scale, weight, step, k: int, width: int) -> Tensor:
    """float64 CDF [n, 2W+4] of the symbols (escape-low, u = -W..W, escape-high) on bins of 2^k steps."""
    edges = (torch.arange(-width, width + 2, dtype=torch.float64) * 2**k) - 0.5  # [2W+2] lower edges of u
    x = (centre.double()[:, None] + edges[None, :]) * step.double()[:, None]  # [n, 2W+2]
    inner = torch.zeros_like(x)
    for component in range(mean.shape[0]):
        z = (x - mean[component].double()[:, None]) / scale[component].double()[:, None]
        inner += weight[component].double()[:, None] * torch.special.ndtr(z)
    inner = inner.clamp(0.0, 1.0)
    n = centre.shape[0]
    return torch.cat([torch.zeros(n, 1, dtype=torch.float64), inner, torch.ones(n, 1, dtype=torch.float64)], dim=1)


def _integer_cdf(cdf: Tensor) -> Tensor:
    """torchac's int16 CDF rows: round(cdf (2^16 - (L - 1))) + i, the final 2^16 wrapped to 0."""
    lp = cdf.shape[1]
    scaled = torch.round(cdf * float(PRECISION - (lp - 1))).to(torch.int64) + torch.arange(lp, dtype=torch.int64)
    scaled = scaled & (PRECISION - 1)
    return torch.where(scaled >= 1 << 15, scaled - PRECISION, scaled).to(torch.int16)


def _counts(cdf16: Tensor) -> Tensor:
    counts = cdf16.to(torch.int64) & (PRECISION - 1)
    counts[:, -1] = PRECISION
    return counts


def _varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        while True:
            byte = v & 0x7F
            v >>= 7
            out.append(byte | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def _read_varints(reader: ByteReader, data: bytes, count: int) -> list[int]:
    values, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise reader.error("an escaped value is longer than 63 bits")
        if not byte & 0x80:
            values.append(value)
            value, shift = 0, 0
    if shift or len(values) != count:
        raise reader.error(f"expected {count} escaped values, found {len(values)}")
    return values


def _pack_low(low: Tensor, k: int) -> bytes:
    if k == 0 or low.numel() == 0:
        return b""
    bits = ((low[:, None] >> torch.arange(k)) & 1).to(torch.uint8).numpy()
    return np.packbits(bits.reshape(-1), bitorder="little").tobytes()


def _unpack_low(data: bytes, count: int, k: int) -> Tensor:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[:count * k]
    weights = (1 << np.arange(k, dtype=np.int64))
    return torch.from_numpy((bits.reshape(count, k).astype(np.int64) * weights).sum(axis=1))


def _check(mean, scale, weight, step, reader: ByteReader | None = None) -> None:
    bad = (not torch.isfinite(mean).all() or not (scale > 0).all() or not torch.isfinite(scale).all()
           or not (step > 0).all() or not torch.isfinite(step).all() or not torch.isfinite(weight).all())
    if bad:
        message = "the entropy model gives invalid mixture distributions"
        if reader is not None:
            raise reader.error(message + "; the tables or networks are corrupt")
        raise ValueError(message)


def _split(r: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(coarse bin u = floor(r / 2^k), low bits r - u 2^k) of residuals r."""
    u = torch.div(r, 2**k, rounding_mode="floor")
    return u, r - u * 2**k


def encode_mixture(out: ByteWriter, symbols: Tensor, mean: Tensor, scale: Tensor, weight: Tensor,
                   step: Tensor) -> None:
    """Append the blocks coding int64 ``symbols`` [n] under the mixtures (mean/scale/weight [K, n]
    float32, scale floored, weights summing to 1) on the grid ``step`` [n]."""
    if symbols.shape[0] == 0:
        return
    _check(mean, scale, weight, step)
    centre, order, blocks = _plan(mean, scale, weight, step)
    residual = (symbols - centre)[order]
    mean, scale, weight, step, centre = mean[:, order], scale[:, order], weight[:, order], step[order], centre[order]
    for start, count, k, width in blocks:
        rows = slice(start, start + count)
        u, low = _split(residual[rows], k)
        index = u.clamp(-width - 1, width + 1) + width + 1  # 0: escape-low, 2W+2: escape-high
        cdf = _integer_cdf(_cdf(centre[rows], mean[:, rows], scale[:, rows], weight[:, rows], step[rows], k, width))
        data = torchac().encode_int16_normalized_cdf(cdf, index.to(torch.int16))
        escaped = u[u.abs() > width]
        excess = _varints((escaped.abs() - width - 1).numpy().astype(np.uint64)) if escaped.numel() else b""
        out.pack("I", len(data)).raw(data).pack("I", len(excess)).raw(excess).raw(_pack_low(low, k))


def decode_mixture(reader: ByteReader, mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> Tensor:
    """The ``n`` symbols (int64) of blocks written by :func:`encode_mixture` with the same parameters."""
    n = mean.shape[1]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    _check(mean, scale, weight, step, reader)
    centre, order, blocks = _plan(mean, scale, weight, step)
    mean, scale, weight, step, sorted_centre = mean[:, order], scale[:, order], weight[:, order], step[order], centre[order]
    out = torch.empty(n, dtype=torch.int64)
    for start, count, k, width in blocks:
        rows = slice(start, start + count)
        size = reader.unpack("I", "block byte count")
        data = bytes(reader.take(size, "arithmetic-coded block"))
        cdf = _integer_cdf(_cdf(sorted_centre[rows], mean[:, rows], scale[:, rows], weight[:, rows], step[rows], k,
                                width))
        u = torchac().decode_int16_normalized_cdf(cdf, data).to(torch.int64) - width - 1
        escaped = (u < -width) | (u > width)
        excess_size = reader.unpack("I", "escape byte count")
        excess = _read_varints(reader, bytes(reader.take(excess_size, "escapes")), int(escaped.sum()))
        if excess:
            u[escaped] = torch.sign(u[escaped]) * (torch.tensor(excess, dtype=torch.int64) + width + 1)
        low = _unpack_low(bytes(reader.take((count * k + 7) // 8, "raw low bits")), count, k) if k else 0
        out[rows] = sorted_centre[rows] + u * 2**k + low
    if (out.abs() >= 1 << 40).any():
        raise reader.error("a decoded value is out of range")
    decoded = torch.empty_like(out)
    decoded[order] = out
    return decoded


def mixture_code_bits(symbols: Tensor, mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> CodeLength:
    """What :func:`encode_mixture` writes: the ideal code length of the symbols under the coder's
    integer CDFs (escapes: the escape symbol plus its varint; raw low bits), and the blocks' overhead."""
    if symbols.shape[0] == 0:
        return CodeLength(0.0, 0.0)
    centre, order, blocks = _plan(mean, scale, weight, step)
    residual = (symbols - centre)[order]
    mean, scale, weight, step, centre = mean[:, order], scale[:, order], weight[:, order], step[order], centre[order]
    total, overhead = 0.0, 0.0
    for start, count, k, width in blocks:
        rows = slice(start, start + count)
        u, _ = _split(residual[rows], k)
        index = u.clamp(-width - 1, width + 1) + width + 1
        counts = _counts(_integer_cdf(_cdf(centre[rows], mean[:, rows], scale[:, rows], weight[:, rows], step[rows],
                                           k, width)))
        mass = (counts.gather(1, index[:, None] + 1) - counts.gather(1, index[:, None]))[:, 0]
        total += float(-torch.log2(mass.double() / PRECISION).sum())
        escaped = u[u.abs() > width]
        if escaped.numel():
            total += 8 * len(_varints((escaped.abs() - width - 1).numpy().astype(np.uint64)))
        overhead += BLOCK_OVERHEAD_BYTES + ((count * k + 7) // 8 - count * k / 8)
        total += count * k
    return CodeLength(total, overhead)
