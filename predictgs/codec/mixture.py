"""Integers under per-element mixtures of discretised Gaussians (HAC++'s feature likelihood), arithmetic
coded with torchac.

An element has symbol ``q = round(x / Q)`` and a mixture sum_k w_k N(mu_k, sigma_k^2) on the bin grid of
step Q. The coder codes ``r = q - c``, ``c = round(sum_k w_k mu_k / Q)``, over an alphabet derived from the
predicted distributions alone (so the decoder derives it too): elements are ordered by their predicted
spread ``s = max_k (sigma_k + |mu_k - sum_j w_j mu_j|) / Q`` (stable sort) and cut into blocks; a block
codes ``r`` in ``[-W, W]``, ``W = min(4096, ceil(6 max s) + 1)``, plus two escape symbols that carry the
tails below and above. An escaped value follows as the zigzag-free varint of ``|r| - W - 1`` (its sign is
the escape's). No table grows with an outlier: memory and time depend on the predictions only.

Block layout (the element count of each block follows from the stream's length): u32 byte count,
torchac bytes, u32 escape byte count, escape varints.

Exactness: both sides compute the parameters in float32 from the same numbers (see
``predictgs.entropy.anchor``); the CDF is evaluated here in float64 and rounded to torchac's 16-bit
integers with its rule ``round(cdf (2^16 - (L - 1))) + i`` (every symbol keeps at least 2^-16).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .arithmetic import CodeLength, torchac
from .container import ByteReader, ByteWriter

PRECISION = 1 << 16
COVERAGE = 6.0
MAX_HALF_WIDTH = 4096
MAX_BLOCK_CDF_ENTRIES = 1 << 22
CENTRE_LIMIT = 1 << 30


def _order_and_blocks(mean, scale, weight, step) -> tuple[Tensor, Tensor, list[tuple[int, int, int]]]:
    """(centres, order, blocks (start, count, W)) of n elements; mean/scale/weight are [K, n] float32."""
    mixed = (weight * mean).sum(dim=0)
    centre = torch.nan_to_num(torch.round(mixed / step), nan=0.0).clamp(-CENTRE_LIMIT, CENTRE_LIMIT).to(torch.int64)
    spread = ((scale + (mean - mixed).abs()).amax(dim=0) / step)
    spread = torch.nan_to_num(spread, nan=float(MAX_HALF_WIDTH), posinf=float(MAX_HALF_WIDTH))
    order = torch.argsort(spread, stable=True)
    sorted_spread = spread[order]
    blocks, start, n = [], 0, mean.shape[1]
    while start < n:
        width = min(MAX_HALF_WIDTH, int(math.ceil(COVERAGE * float(sorted_spread[start]))) + 1)
        count = max(1, MAX_BLOCK_CDF_ENTRIES // (2 * width + 3))
        count = min(count, n - start)
        # The block's width is set by its widest element (the last, in spread order).
        width = min(MAX_HALF_WIDTH, int(math.ceil(COVERAGE * float(sorted_spread[start + count - 1]))) + 1)
        count = min(count, max(1, MAX_BLOCK_CDF_ENTRIES // (2 * width + 3)))
        blocks.append((start, count, width))
        start += count
    return centre, order, blocks


def _cdf(centre, mean, scale, weight, step, width: int) -> Tensor:
    """float64 CDF [n, 2W+4] of the symbols (escape-low, r = -W..W, escape-high)."""
    edges = torch.arange(-width, width + 2, dtype=torch.float64) - 0.5  # [2W+2] edges of r = -W..W
    x = (centre.double()[:, None] + edges[None, :]) * step.double()[:, None]  # [n, 2W+2]
    inner = torch.zeros_like(x)
    for k in range(mean.shape[0]):
        z = (x - mean[k].double()[:, None]) / scale[k].double()[:, None]
        inner += weight[k].double()[:, None] * torch.special.ndtr(z)
    inner = inner.clamp(0.0, 1.0)
    n = centre.shape[0]
    return torch.cat([torch.zeros(n, 1, dtype=torch.float64), inner, torch.ones(n, 1, dtype=torch.float64)], dim=1)


def _integer_cdf(cdf: Tensor) -> Tensor:
    lp = cdf.shape[1]
    scaled = torch.round(cdf * float(PRECISION - (lp - 1))).to(torch.int64) + torch.arange(lp, dtype=torch.int64)
    scaled = scaled & (PRECISION - 1)  # the final 2^16 wraps to 0, which torchac never reads
    return torch.where(scaled >= 1 << 15, scaled - PRECISION, scaled).to(torch.int16)


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


def _check(mean, scale, weight, step, reader: ByteReader | None = None) -> None:
    bad = (not torch.isfinite(mean).all() or not (scale > 0).all() or not torch.isfinite(scale).all()
           or not (step > 0).all() or not torch.isfinite(step).all() or not torch.isfinite(weight).all())
    if bad:
        message = "the entropy model gives invalid mixture distributions"
        if reader is not None:
            raise reader.error(message + "; the tables or networks are corrupt")
        raise ValueError(message)


def encode_mixture(out: ByteWriter, symbols: Tensor, mean: Tensor, scale: Tensor, weight: Tensor,
                   step: Tensor) -> None:
    """Append the blocks coding int64 ``symbols`` [n] under the mixtures (mean/scale/weight [K, n]
    float32, scale floored, weights summing to 1) on the grid ``step`` [n]."""
    n = symbols.shape[0]
    if n == 0:
        return
    _check(mean, scale, weight, step)
    centre, order, blocks = _order_and_blocks(mean, scale, weight, step)
    residual = (symbols - centre)[order]
    mean, scale, weight, step, centre = mean[:, order], scale[:, order], weight[:, order], step[order], centre[order]
    for start, count, width in blocks:
        rows = slice(start, start + count)
        r = residual[rows]
        index = r.clamp(-width - 1, width + 1) + width + 1  # 0: escape-low, 2W+2: escape-high
        cdf = _integer_cdf(_cdf(centre[rows], mean[:, rows], scale[:, rows], weight[:, rows], step[rows], width))
        data = torchac().encode_int16_normalized_cdf(cdf, index.to(torch.int16))
        escaped = r[r.abs() > width]
        excess = _varints((escaped.abs() - width - 1).numpy().astype(np.uint64)) if escaped.numel() else b""
        out.pack("I", len(data)).raw(data).pack("I", len(excess)).raw(excess)


def decode_mixture(reader: ByteReader, mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> Tensor:
    """The ``n`` symbols (int64) of blocks written by :func:`encode_mixture` with the same parameters."""
    n = mean.shape[1]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    _check(mean, scale, weight, step, reader)
    centre, order, blocks = _order_and_blocks(mean, scale, weight, step)
    mean, scale, weight, step, sorted_centre = mean[:, order], scale[:, order], weight[:, order], step[order], centre[order]
    out = torch.empty(n, dtype=torch.int64)
    for start, count, width in blocks:
        rows = slice(start, start + count)
        size = reader.unpack("I", "block byte count")
        data = bytes(reader.take(size, "arithmetic-coded block"))
        cdf = _integer_cdf(_cdf(sorted_centre[rows], mean[:, rows], scale[:, rows], weight[:, rows], step[rows], width))
        index = torchac().decode_int16_normalized_cdf(cdf, data).to(torch.int64)
        r = index - width - 1
        escaped = (r < -width) | (r > width)
        excess_size = reader.unpack("I", "escape byte count")
        excess = _read_varints(reader, bytes(reader.take(excess_size, "escapes")), int(escaped.sum()))
        if excess:
            extra = torch.tensor(excess, dtype=torch.int64) + width + 1
            r[escaped] = torch.sign(r[escaped]) * extra
        out[rows] = sorted_centre[rows] + r
    decoded = torch.empty_like(out)
    decoded[order] = out
    return decoded


BLOCK_OVERHEAD_BYTES = 8 + 0.6  # two u32 lengths and torchac's termination (measured ~0.6 bytes)


def mixture_code_bits(symbols: Tensor, mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> CodeLength:
    """What :func:`encode_mixture` writes: the ideal code length of the symbols under the coder's
    integer CDFs (escapes: the escape symbol plus its varint), and the blocks' overhead."""
    n = symbols.shape[0]
    if n == 0:
        return CodeLength(0.0, 0.0)
    centre, order, blocks = _order_and_blocks(mean, scale, weight, step)
    total, overhead = 0.0, 0.0
    residual = (symbols - centre)[order]
    mean, scale, weight, step, centre = mean[:, order], scale[:, order], weight[:, order], step[order], centre[order]
    for start, count, width in blocks:
        rows = slice(start, start + count)
        r = residual[rows]
        index = r.clamp(-width - 1, width + 1) + width + 1
        cdf = _integer_cdf(_cdf(centre[rows], mean[:, rows], scale[:, rows], weight[:, rows], step[rows], width))
        counts = cdf.to(torch.int64) & (PRECISION - 1)
        counts[:, -1] = PRECISION
        mass = (counts.gather(1, index[:, None] + 1) - counts.gather(1, index[:, None]))[:, 0]
        total += float(-torch.log2(mass.double() / PRECISION).sum())
        escaped = r[r.abs() > width]
        if escaped.numel():
            total += 8 * len(_varints((escaped.abs() - width - 1).numpy().astype(np.uint64)))
        overhead += BLOCK_OVERHEAD_BYTES
    return CodeLength(total, overhead)
