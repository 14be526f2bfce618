"""Arithmetic coding with torchac (16-bit precision, CPU): binary streams under one global Bernoulli
(hash tables, offset masks) and integers under per-element discretised Gaussians (the coded anchor
attributes).

Gaussian streams. An element has symbol ``q = round(x / Q)`` and the entropy model's N(mu, sigma^2) on
the bin grid of step Q. The coder codes ``r = q - round(mu / Q)``: centring on the predicted mean keeps
the alphabet of a block small, which makes the CDF tables small and the +1-per-symbol floor of torchac's
integer CDF (below) cheap. The elements are sorted by predicted spread sigma / Q (an order the decoder
derives from the same numbers) and cut into blocks; each block codes the alphabet
``[lo, hi]`` of its own values, the tails of the Gaussian folded into ``lo`` and ``hi``. Values with
``|r| >= ESCAPE`` (a badly predicted or pathological element) are coded as the symbol ``+-ESCAPE`` and
their exact ``r`` follows the block as an int32, so that the alphabet, hence memory and time, stay
bounded whatever the values.

Block layout: u32 count, i16 lo, i16 hi, u32 escape count, u32 byte count, then the torchac bytes, then
the escapes (int32 each).

Exactness. The decoder must build the same integer CDFs as the encoder, to the bit. The distribution
parameters arrive as float32 (see ``streams.py`` for how they are made reproducible); the CDF itself is
evaluated in float64 and rounded to 16-bit integers here, so the vectorised and scalar code paths of
``erfc`` (which can differ in the last float bit, and are chosen by tensor shape and thread count) would
have to differ by ~1e-12 to change a single integer.
"""

from __future__ import annotations

import os
import sys
import tempfile
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..errors import BitstreamError
from .container import ByteReader, ByteWriter

PRECISION = 1 << 16  # torchac's CDF total
ESCAPE = 4096  # |r| >= ESCAPE is coded as an escape; the alphabet of a block is at most 2 ESCAPE + 1
MAX_BLOCK_SYMBOLS = 1 << 16  # elements per Gaussian block
MAX_CDF_ENTRIES = 1 << 22  # elements x (alphabet + 1) per block: bounds the CDF table (~40 MB float64)
BINARY_BLOCK = 1 << 20  # symbols per torchac call for binary streams
CENTRE_LIMIT = 1 << 30  # round(mu / Q) is clamped here (garbage predictions must not overflow)


@lru_cache(maxsize=1)
def torchac():
    """torchac, whose C++ backend compiles on first use. Its build chatter (printed by ninja on the
    process's own stdout) is kept off the console; it is shown only if the build fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            import torchac as module
        except Exception as err:  # the build failed: show what the compiler said
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            log.seek(0)
            raise RuntimeError(f"torchac could not be loaded ({err}); build output:\n{log.read()}") from err
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    return module


def _to_int16(cdf: Tensor) -> Tensor:
    """Integer CDF values in [0, 2^16] as torchac's int16 storage (read back as uint16; the final
    2^16 wraps to 0, which torchac never reads: the last symbol's upper bound is hard-wired)."""
    as_uint16 = (cdf & (PRECISION - 1)).to(torch.int32).numpy().astype(np.uint16)
    return torch.from_numpy(as_uint16.view(np.int16))


def integer_cdf(cdf: Tensor) -> Tensor:
    """float64 CDFs [n, Lp] with cdf[:, 0] = 0 and cdf[:, -1] = 1 -> torchac int16 CDFs.

    torchac's rule: round(cdf (2^16 - (Lp - 1))) + i, which gives every symbol at least 1/2^16."""
    lp = cdf.shape[1]
    scaled = torch.round(cdf * float(PRECISION - (lp - 1))).to(torch.int64)
    return _to_int16(scaled + torch.arange(lp, dtype=torch.int64))


# -- binary streams ----------------------------------------------------------------------------------
def encode_bernoulli(bits: Tensor) -> bytes:
    """{0,1} values -> f32 p(1), then per block of BINARY_BLOCK symbols: u32 byte count + bytes."""
    bits = bits.reshape(-1).to(torch.int16).cpu()
    n = bits.numel()
    p_one = float(np.float32(bits.float().mean().item() if n else 0.0))
    out = ByteWriter().pack("f", p_one)
    cdf = _bernoulli_cdf(p_one)
    for start in range(0, n, BINARY_BLOCK):
        block = bits[start:start + BINARY_BLOCK]
        data = torchac().encode_int16_normalized_cdf(cdf.expand(block.numel(), 3).contiguous(), block)
        out.pack("I", len(data)).raw(data)
    return out.getvalue()


def decode_bernoulli(reader: ByteReader, count: int) -> Tensor:
    """The ``count`` bits of a stream written by :func:`encode_bernoulli` -> bool [count]."""
    p_one = reader.unpack("f", "Bernoulli probability")
    if not 0.0 <= p_one <= 1.0:  # also rejects NaN
        raise reader.error(f"Bernoulli probability {p_one} outside [0, 1]")
    cdf = _bernoulli_cdf(p_one)
    parts = []
    for start in range(0, count, BINARY_BLOCK):
        n = min(BINARY_BLOCK, count - start)
        size = reader.unpack("I", "block byte count")
        data = bytes(reader.take(size, "arithmetic-coded block"))
        parts.append(torchac().decode_int16_normalized_cdf(cdf.expand(n, 3).contiguous(), data))
    return torch.cat(parts).bool() if parts else torch.zeros(0, dtype=torch.bool)


def _bernoulli_cdf(p_one: float) -> Tensor:
    """[1, 3] int16 CDF [0, P(0), 2^16]; each symbol keeps at least 1/2^16."""
    zero_mass = min(max(int(round((1.0 - p_one) * PRECISION)), 1), PRECISION - 1)
    return _to_int16(torch.tensor([[0, zero_mass, PRECISION]], dtype=torch.int64))


# -- Gaussian streams --------------------------------------------------------------------------------
def predicted_centres(mean: Tensor, step: Tensor) -> Tensor:
    """round(mu / Q) as int64, clamped (float32 arithmetic, identical in encoder and decoder)."""
    centre = torch.round(mean / step)
    centre = torch.nan_to_num(centre, nan=0.0).clamp(-CENTRE_LIMIT, CENTRE_LIMIT)
    return centre.to(torch.int64)


def _gaussian_cdf(lo: int, hi: int, centre: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    """float64 CDF [n, L + 1] of the alphabet r in [lo, hi] (L = hi - lo + 1), tails folded into the
    end symbols: entry j (0 < j < L) is Phi(((centre + lo + j - 1/2) Q - mu) / sigma)."""
    edges = torch.arange(1, hi - lo + 1, dtype=torch.float64) + (lo - 0.5)  # [L - 1]
    position = (centre.to(torch.float64)[:, None] + edges[None, :]) * step.double()[:, None]
    z = (position - mean.double()[:, None]) / scale.double()[:, None]
    inner = torch.special.ndtr(z)
    n = centre.shape[0]
    return torch.cat([torch.zeros(n, 1, dtype=torch.float64), inner, torch.ones(n, 1, dtype=torch.float64)],
                     dim=1)


def _block_sizes(residuals: Tensor) -> list[tuple[int, int, int]]:
    """Cut clipped residuals into blocks: (count, lo, hi) each, count * (L + 1) <= MAX_CDF_ENTRIES."""
    blocks, start, n = [], 0, residuals.shape[0]
    while start < n:
        count = min(MAX_BLOCK_SYMBOLS, n - start)
        while True:
            part = residuals[start:start + count]
            lo, hi = int(part.min()), int(part.max())
            entries = count * (hi - lo + 2)
            if entries <= MAX_CDF_ENTRIES:
                break
            count = max(1, MAX_CDF_ENTRIES // (hi - lo + 2))
        blocks.append((count, lo, hi))
        start += count
    return blocks


def spread_order(scale: Tensor, step: Tensor) -> Tensor:
    """Coding order of a stream's elements: by predicted spread sigma / Q (stable, float32, so the
    decoder derives the same order). Blocks then hold elements of similar spread, whose alphabets, and
    so CDF tables, are as small as the values allow."""
    return torch.argsort(scale / step, stable=True)


def encode_gaussian(out: ByteWriter, symbols: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> None:
    """Append the blocks coding int64 ``symbols`` [n] under N(mean, scale^2) on the grid ``step``
    (float32 [n] each; ``scale`` already floored). Appends nothing for n = 0."""
    order = spread_order(scale, step)
    symbols, mean, scale, step = symbols[order], mean[order], scale[order], step[order]
    centre = predicted_centres(mean, step)
    residual = symbols - centre
    clipped = residual.clamp(-ESCAPE, ESCAPE)
    start = 0
    for count, lo, hi in _block_sizes(clipped):
        rows = slice(start, start + count)
        cdf = integer_cdf(_gaussian_cdf(lo, hi, centre[rows], mean[rows], scale[rows], step[rows]))
        data = torchac().encode_int16_normalized_cdf(cdf, (clipped[rows] - lo).to(torch.int16))
        escapes = residual[rows][clipped[rows].abs() == ESCAPE]
        if escapes.numel() and escapes.abs().max() >= 1 << 31:
            raise BitstreamError("cannot encode: a quantised value is out of the int32 range")
        out.pack("IhhII", count, lo, hi, escapes.numel(), len(data)).raw(data)
        out.array(escapes.numpy(), "i4")
        start += count


def decode_gaussian(reader: ByteReader, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    """Read the blocks of ``n = len(mean)`` elements written by :func:`encode_gaussian` -> int64 [n]."""
    n = mean.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    for name, t in (("mean", mean), ("scale", scale), ("step", step)):
        if not torch.isfinite(t).all() or (name != "mean" and not (t > 0).all()):
            raise reader.error(f"the entropy model gives invalid distributions ({name}); the hash tables or "
                               "MLPs are corrupt")
    order = spread_order(scale, step)
    mean, scale, step = mean[order], scale[order], step[order]
    centre = predicted_centres(mean, step)
    out = torch.empty(n, dtype=torch.int64)
    start = 0
    while start < n:
        count, lo, hi, num_escapes, size = reader.unpack("IhhII", "block header")
        if not 0 < count <= min(MAX_BLOCK_SYMBOLS, n - start):
            raise reader.error(f"block of {count} symbols where {n - start} remain")
        if not -ESCAPE <= lo <= hi <= ESCAPE or count * (hi - lo + 2) > MAX_CDF_ENTRIES:
            raise reader.error(f"bad block alphabet [{lo}, {hi}] for {count} symbols")
        if num_escapes > count:
            raise reader.error(f"{num_escapes} escapes in a block of {count} symbols")
        data = bytes(reader.take(size, "arithmetic-coded block"))
        escapes = torch.from_numpy(reader.array("i4", num_escapes, "escapes")).to(torch.int64)
        rows = slice(start, start + count)
        cdf = integer_cdf(_gaussian_cdf(lo, hi, centre[rows], mean[rows], scale[rows], step[rows]))
        residual = torchac().decode_int16_normalized_cdf(cdf, data).to(torch.int64) + lo
        escaped = residual.abs() == ESCAPE
        if int(escaped.sum()) != num_escapes:
            raise reader.error(f"block announces {num_escapes} escapes, the coded symbols hold "
                               f"{int(escaped.sum())}")
        if num_escapes:
            if ((escapes.abs() < ESCAPE) | (torch.sign(escapes) != torch.sign(residual[escaped]))).any():
                raise reader.error("an escaped value does not match its escape symbol")
            residual[escaped] = escapes
        out[rows] = centre[rows] + residual
        start += count
    decoded = torch.empty_like(out)
    decoded[order] = out
    return decoded


def coder_floor_bits(symbols: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> float:
    """The entropy model's cost of the symbols with its likelihood floor (1e-6, HAC's) replaced by the
    coder's (2^-16: torchac gives every symbol at least that much probability). What the coded size
    should approach; the model's own estimate charges ~19.9 bits for an outlier the coder codes in <= 16."""
    if symbols.numel() == 0:
        return 0.0
    x, s, q = symbols.double() * step.double(), scale.double(), step.double()
    mass = torch.special.ndtr((x + 0.5 * q - mean.double()) / s) - torch.special.ndtr((x - 0.5 * q - mean.double()) / s)
    return float(-torch.log2(mass.clamp(min=1.0 / PRECISION)).sum())
