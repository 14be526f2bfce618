"""Arithmetic coding with torchac (16-bit precision, CPU): binary streams under one global Bernoulli
(hash tables, offset masks) and integers under per-element discretised Gaussians (the coded anchor
attributes).

Gaussian streams. An element has symbol ``q = round(x / Q)`` and the entropy model's N(mu, sigma^2) on
the bin grid of step Q. Its distribution is described by two numbers, its spread ``s = sigma / Q`` and
the position of ``mu / Q`` between grid points, and the coder uses shared, precomputed CDF tables on a
fixed grid of both (``SPREADS_PER_OCTAVE`` spreads per octave, ``OFFSETS`` positions per bin): an
element takes the table of its grid cell, so no CDF is evaluated per element and no table grows with
the values. The grid costs ~0.05% of the file against the exact per-element Gaussians.

- Spreads below ``2^(LOW_OCTAVE - 1)`` use the lowest spread; spreads of ``2^COARSE_OCTAVE`` steps and
  more are coded on coarse bins of ``w = 2^k`` steps (k chosen so that sigma is 2^(COARSE_OCTAVE - 1) to
  2^COARSE_OCTAVE bins) and the k low bits of the value inside its bin follow raw: the Gaussian is
  nearly flat across a bin of a quarter sigma or less, so this costs < 0.005 bit per element.
- The alphabet of a table is the bins ``[-K, K]`` around the predicted bin, K = ceil(TAIL_SIGMAS sigma +
  1/2) rounded up to a class of ``WIDTH_CLASSES``, plus two escape symbols (below, above) carrying the
  Gaussian's tails. An escaped value's distance beyond the alphabet follows as a LEB128 varint: an
  outlier costs its escape symbol and a few bytes, and widens nothing.
- Elements are grouped by width class (stable: the coding order, :func:`spread_order`) and each group
  is one block per at most ``MAX_BLOCK_SYMBOLS`` elements. A block's header chooses one of
  ``ESCAPE_LEVELS``: the escape symbols get probability eps/2 each on top of the Gaussian's (mixture
  (1 - eps) N + eps outliers), so a block with many outliers pays ~log2(1/eps) bits per escape
  instead of the coder's 16-bit floor.

Block layout (everything else follows from the distributions, which the decoder has):
    varint byte count, u8 escape level, torchac bytes,
    one varint per escaped element (its distance beyond the alphabet, in bins),
    the raw low bits of the block's coarse elements (MSB first, k bits each, zero-padded to a byte).

Exactness. The decoder must build the encoder's integer CDFs, to the bit. The distribution parameters
arrive as float32 (see ``streams.py`` for how they are made reproducible). The grid cell of an element
is computed from them with IEEE-exact float64 operations only (division, subtraction, rounding, frexp,
comparisons: no transcendental function, whose last bit may depend on the code path), so both sides
pick the same table. The tables are evaluated in float64 from exactly representable grid values and
rounded to 16-bit integers; a last-bit difference of ``ndtr`` between machines or code paths would have
to be ~1e-12 to change a single integer.

Bounds. A block holds at most MAX_BLOCK_SYMBOLS elements and its tables at most 2 (2 max K + 4) bytes
per element; every count read from the stream is checked against the bytes left, decoded values
against the int32 range the encoder accepts.
"""

from __future__ import annotations

import bisect
import math
import os
import sys
import tempfile
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import BitstreamError
from .container import ByteReader, ByteWriter

PRECISION = 1 << 16  # torchac's CDF total
MAX_BLOCK_SYMBOLS = 1 << 16  # elements per Gaussian block
BINARY_BLOCK = 1 << 20  # symbols per torchac call for binary streams
CENTRE_LIMIT = 1 << 30  # mu / Q is clamped here (garbage predictions must not overflow)
VALUE_LIMIT = 1 << 31  # coded symbols q satisfy |q| < VALUE_LIMIT

# The grid of shared tables.
SPREADS_PER_OCTAVE = 16  # spreads s = sigma / Q per octave (linear within the octave: exact in binary)
LOW_OCTAVE = -5  # frexp exponent of the lowest octave [2^-6, 2^-5); smaller spreads use 2^-6
COARSE_OCTAVE = 2  # spreads of 2^COARSE_OCTAVE steps and more are coded on coarse bins of 2^k steps
OFFSETS = 64  # positions of mu within its bin
TAIL_SIGMAS = 4.0  # half-width of the alphabet in sigmas (beyond it: escapes)
WIDTH_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64)
ESCAPE_LEVELS = (0.0,) + tuple(2.0 ** -e for e in (16, 14, 12, 10, 8, 6, 4, 2))
MAX_SHIFT = 33  # coarse bins of at most 2^33 steps (|q - centre| < 2^32.6)
MAX_VARINT_BYTES = 5

NUM_SPREADS = (COARSE_OCTAVE - LOW_OCTAVE + 1) * SPREADS_PER_OCTAVE
LOWEST_SPREAD = math.ldexp(1.0, LOW_OCTAVE - 1)


class CodeLength(NamedTuple):
    """What :func:`encode_gaussian` writes: ``bits`` of information (the ideal code length of the
    arithmetic-coded symbols under the coder's integer CDFs, plus the raw low bits and the escapes'
    varints) and ``overhead_bytes`` (block headers, padding of the raw bits, and the coder's
    termination, FLUSH_BYTES per block). The coded size is ~ bits / 8 + overhead_bytes."""

    bits: float
    overhead_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.bits / 8 + self.overhead_bytes

    def __add__(self, other):  # sum of streams (NamedTuple's + would concatenate)
        return CodeLength(self.bits + other.bits, self.overhead_bytes + other.overhead_bytes)


FLUSH_BYTES = 1.0  # torchac's mean termination cost per call beyond the ideal code length (measured)


class _Torchac:
    """torchac's two integer-CDF entry points, ``encode_int16_normalized_cdf(cdf, sym) -> bytes`` and
    ``decode_int16_normalized_cdf(cdf, data) -> int16``, on a backend built from torchac's own C++
    source. torchac's loader compiles that source without optimisation (no -O flag), which makes the
    coder 5-10x slower; the code is integer-only, so both builds write and read the same bytes."""

    def __init__(self, backend):
        self.backend = backend

    def encode_int16_normalized_cdf(self, cdf: Tensor, sym: Tensor) -> bytes:
        # The backend reads the CDF rows at i * Lp: the table must be contiguous int16 (it checks the
        # dtype, not the layout).
        return self.backend.encode_cdf(cdf.reshape(-1, cdf.shape[-1]).contiguous(),
                                       sym.reshape(-1).to(torch.int16).contiguous())

    def decode_int16_normalized_cdf(self, cdf: Tensor, data: bytes) -> Tensor:
        return self.backend.decode_cdf(cdf.reshape(-1, cdf.shape[-1]).contiguous(), data)


@lru_cache(maxsize=1)
def torchac():
    """The torchac coder (:class:`_Torchac`), whose C++ backend compiles on first use (~30 s) with -O2.
    Its build chatter (printed by ninja on the process's own stdout) is kept off the console; it is
    shown only if the build fails."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchac")  # without importing it: its import builds the slow backend
    if spec is None or spec.origin is None:
        raise RuntimeError("torchac is not installed")
    source = Path(spec.origin).parent / "backend" / "torchac_backend.cpp"
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            from torch.utils.cpp_extension import load

            backend = load(name="torchac_backend_o2", sources=[str(source)], extra_cflags=["-O2"])
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
    return _Torchac(backend)


def _to_int16(cdf: Tensor) -> Tensor:
    """Integer CDF values in [0, 2^16] as torchac's int16 storage (read back as uint16; the final
    2^16 wraps to 0, which torchac never reads: the last symbol's upper bound is hard-wired)."""
    low = (cdf & (PRECISION - 1)).to(torch.int32)
    return torch.where(low >= 1 << 15, low - PRECISION, low).to(torch.int16)


def _integer_cdf_full(cdf: Tensor) -> Tensor:
    """float64 CDFs [n, Lp] (0 first, 1 last) -> int32 [n, Lp] in [0, 2^16], torchac's rule:
    round(cdf (2^16 - (Lp - 1))) + i, which gives every symbol at least 1/2^16."""
    lp = cdf.shape[1]
    scaled = torch.round(cdf * float(PRECISION - (lp - 1))).to(torch.int32)
    return scaled + torch.arange(lp, dtype=torch.int32)


def integer_cdf(cdf: Tensor) -> Tensor:
    """float64 CDFs [n, Lp] with cdf[:, 0] = 0 and cdf[:, -1] = 1 -> torchac int16 CDFs."""
    return _to_int16(_integer_cdf_full(cdf))


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


# -- the table grid ----------------------------------------------------------------------------------
def _grid_spread(index: int) -> float:
    """The table spread (in bins) of spread index ``index``: the middle of its linear sub-interval."""
    octave, sub = divmod(index, SPREADS_PER_OCTAVE)
    return math.ldexp(1.0 + (sub + 0.5) / SPREADS_PER_OCTAVE, LOW_OCTAVE + octave - 1)


def _width_class(spread: float) -> int:
    needed = math.ceil(TAIL_SIGMAS * spread + 0.5)
    cls = bisect.bisect_left(WIDTH_CLASSES, needed)
    if cls == len(WIDTH_CLASSES):
        raise AssertionError("WIDTH_CLASSES does not cover the widest table")
    return cls


SPREAD_CLASS = [_width_class(_grid_spread(i)) for i in range(NUM_SPREADS)]  # non-decreasing
CLASSES = sorted(set(SPREAD_CLASS))  # the width classes in use, in order
_CLASS_OF_SPREAD = torch.tensor([CLASSES.index(c) for c in SPREAD_CLASS], dtype=torch.int64)
_FIRST_SPREAD = {k: SPREAD_CLASS.index(c) for k, c in enumerate(CLASSES)}
_ROW_BASE = torch.tensor([(i - SPREAD_CLASS.index(c)) * OFFSETS for i, c in enumerate(SPREAD_CLASS)],
                         dtype=torch.int64)  # first table row of a spread within its class's table
CLASS_WIDTH = [WIDTH_CLASSES[c] for c in CLASSES]  # K of each class in use
_CLASS_WIDTH = torch.tensor(CLASS_WIDTH, dtype=torch.int64)


@lru_cache(maxsize=None)
def _float_table(cls: int) -> Tensor:
    """float64 CDFs [spreads x OFFSETS, 2K + 4] of class ``cls``: symbol 0 escapes below, 1 + K + b is
    bin b in [-K, K], 2K + 2 escapes above; the edge below bin b is Phi((b - 1/2 - o) / sigma) with o
    the position of mu relative to bin 0's centre, in bins."""
    k = CLASS_WIDTH[cls]
    spreads = [i for i, c in enumerate(SPREAD_CLASS) if CLASSES.index(c) == cls]
    sigma = torch.tensor([_grid_spread(i) for i in spreads], dtype=torch.float64)
    offset = (torch.arange(OFFSETS, dtype=torch.float64) + 0.5) / OFFSETS - 0.5
    edges = torch.arange(-k, k + 2, dtype=torch.float64) - 0.5  # [2K + 2]
    z = (edges[None, None, :] - offset[None, :, None]) / sigma[:, None, None]
    inner = torch.special.ndtr(z).reshape(-1, 2 * k + 2)
    rows = inner.shape[0]
    return torch.cat([torch.zeros(rows, 1, dtype=torch.float64), inner,
                      torch.ones(rows, 1, dtype=torch.float64)], dim=1)


@lru_cache(maxsize=None)
def _tables(cls: int, level: int) -> tuple[Tensor, Tensor]:
    """(int32 [rows x Lp] flattened, in [0, 2^16]; torchac int16 [rows, Lp]) of class ``cls`` at escape level
    ``level``: the escape symbols get ESCAPE_LEVELS[level] / 2 each on top of the Gaussian's tails."""
    cdf = _float_table(cls)
    eps = ESCAPE_LEVELS[level]
    if eps:
        cdf = cdf.clone()
        cdf[:, 1:-1] = eps / 2 + (1.0 - eps) * cdf[:, 1:-1]
    full = _integer_cdf_full(cdf)
    return full.reshape(-1), _to_int16(full)


@lru_cache(maxsize=1)
def _neg_log2() -> Tensor:
    """-log2(p / 2^16) for p in [0, 2^16] (index 0 unused)."""
    p = torch.arange(PRECISION + 1, dtype=torch.float64).clamp(min=1)
    return -torch.log2(p / PRECISION)


# -- per-element planning ----------------------------------------------------------------------------
HIGHEST_SPREAD = math.ldexp(1.0 - 2.0 ** -52, COARSE_OCTAVE + MAX_SHIFT)  # in the top cell
_POW2 = torch.tensor([2.0 ** k for k in range(MAX_SHIFT + 1)], dtype=torch.float64)
_CLASS_OF_SPREAD_U8 = _CLASS_OF_SPREAD.to(torch.uint8)
_COARSE_CLASSES = frozenset(CLASSES.index(c) for c in SPREAD_CLASS[-SPREADS_PER_OCTAVE:])  # may have k > 0


class _Plan(NamedTuple):
    """A stream's coding order and, in that order, each element's table row, bin shift k, bin width
    2^k and centre (the first value of bin 0; float64, exact); ``blocks`` lists (class, start, stop)."""

    order: Tensor
    row: Tensor
    shift: Tensor
    width: Tensor
    centre: Tensor
    blocks: list


def _check_distributions(mean: Tensor, scale: Tensor, step: Tensor) -> str | None:
    for name, t in (("mean", mean), ("scale", scale), ("step", step)):
        if not torch.isfinite(t).all() or (name != "mean" and not (t > 0).all()):
            return name
    return None


def _spread_cells(scale: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
    """(spread index, bin shift k) per element, from s = sigma / Q in float64 (exact operations)."""
    s = (scale.double() / step.double()).clamp_(LOWEST_SPREAD, HIGHEST_SPREAD)
    mantissa, exponent = torch.frexp(s)  # s = mantissa 2^exponent, mantissa in [0.5, 1)
    exponent = exponent.to(torch.int64)
    shift = (exponent - COARSE_OCTAVE).clamp_(0, MAX_SHIFT)
    sub = ((mantissa - 0.5) * (2 * SPREADS_PER_OCTAVE)).to(torch.int64)
    return (exponent - shift - LOW_OCTAVE) * SPREADS_PER_OCTAVE + sub, shift


def spread_order(scale: Tensor, step: Tensor) -> Tensor:
    """Coding order of a stream's elements: grouped by the width class of their predicted spread
    sigma / Q, stable (the decoder derives the same order). Each group is coded as one or more blocks
    with tables of one width."""
    spread, _ = _spread_cells(scale, step)
    return torch.argsort(_CLASS_OF_SPREAD_U8.index_select(0, spread), stable=True)


def _plan(mean: Tensor, scale: Tensor, step: Tensor) -> _Plan:
    spread, shift = _spread_cells(scale, step)
    cls = _CLASS_OF_SPREAD_U8.index_select(0, spread)
    order = torch.argsort(cls, stable=True)
    counts = torch.bincount(cls, minlength=len(CLASSES)).tolist()
    spread, shift = spread.index_select(0, order), shift.index_select(0, order)
    m = (mean.double() / step.double()).clamp_(-CENTRE_LIMIT, CENTRE_LIMIT).index_select(0, order)
    width = _POW2.index_select(0, shift)
    half = (width - 1.0) * 0.5
    centre = torch.round(m - half)  # bin 0 holds the values centre .. centre + 2^k - 1
    offset = (m - centre - half) / width  # mu relative to bin 0's middle, in bins: [-1/2, 1/2]
    cell = ((offset + 0.5) * OFFSETS).to(torch.int64).clamp_(0, OFFSETS - 1)
    row = _ROW_BASE.index_select(0, spread) + cell
    blocks, start = [], 0
    for c, count in enumerate(counts):
        for first in range(start, start + count, MAX_BLOCK_SYMBOLS):
            blocks.append((c, first, min(first + MAX_BLOCK_SYMBOLS, start + count)))
        start += count
    return _Plan(order, row, shift, width, centre, blocks)


class _Block(NamedTuple):
    """One block's content, as :func:`encode_gaussian` writes it."""

    cls: int
    rows: Tensor  # table rows
    symbol: Tensor  # int64: 0 escape below, 1 + K + b bin b, 2K + 2 escape above
    level: int
    excess: Tensor  # escaped elements' distance beyond the alphabet, in bins
    low: Tensor | None  # int64 raw low bits (coarse classes), with their widths ``shift``
    shift: Tensor | None


def _blocks(symbols: Tensor, plan: _Plan):
    """The blocks coding ``symbols`` (in stream order) under ``plan``."""
    q = symbols.reshape(-1).index_select(0, plan.order)
    if q.numel() and q.abs().max() >= VALUE_LIMIT:
        raise BitstreamError("cannot encode: a quantised value is out of the int32 range")
    r = q.to(torch.float64) - plan.centre  # exact: |r| < 2^53
    bins = torch.floor(r / plan.width)
    for c, start, stop in plan.blocks:
        k = CLASS_WIDTH[c]
        b = bins[start:stop]
        symbol = (b + (k + 1)).clamp_(0, 2 * k + 2).to(torch.int64)
        escaped = torch.nonzero((symbol == 0) | (symbol == 2 * k + 2)).reshape(-1)
        excess = b.index_select(0, escaped).abs_().sub_(k + 1).to(torch.int64)
        low = shift = None
        if c in _COARSE_CLASSES:
            shift = plan.shift[start:stop]
            low = (r[start:stop] - b * plan.width[start:stop]).to(torch.int64)
        yield _Block(c, plan.row[start:stop], symbol, _escape_level(stop - start, escaped.numel()),
                     excess, low, shift)


def _bounds(block: _Block) -> tuple[Tensor, Tensor]:
    """int32 (CDF below, CDF above) of each symbol of a block, in [0, 2^16]."""
    flat = _tables(block.cls, block.level)[0]
    at = block.rows * (2 * CLASS_WIDTH[block.cls] + 4) + block.symbol
    return flat.index_select(0, at), flat.index_select(0, at + 1)


def _ideal_bits(below: Tensor, above: Tensor) -> float:
    """Ideal code length of symbols with these integer CDF bounds."""
    return float(_neg_log2().index_select(0, above - below).sum())


def _encoder_rows(below: Tensor, above: Tensor) -> tuple[Tensor, Tensor]:
    """torchac's encoder reads only the two CDF values around each symbol: (int16 [n, 3] CDF rows,
    int16 symbols) that give it exactly those values, so that it writes the same bytes as with the full
    rows without their memory traffic. Row [below, above, 0] with symbol 0; for a last symbol (above =
    2^16, which int16 storage cannot hold: torchac hard-wires it) row [0, below, 0] with symbol 1."""
    last = above == PRECISION
    rows = torch.zeros(below.numel(), 3, dtype=torch.int32)
    rows[:, 0] = below.masked_fill(last, 0)
    rows[:, 1] = torch.where(last, below, above)
    return _to_int16(rows), last.to(torch.int16)


def _escape_level(count: int, escapes: int) -> int:
    """The escape level minimising the approximate cost of the escape symbols: each escape costs
    -log2(eps / 2) bits (16 at most: the coder's floor), each other symbol -log2(1 - eps)."""
    best, best_cost = 0, 16.0 * escapes
    for level, eps in enumerate(ESCAPE_LEVELS[1:], start=1):
        cost = escapes * min(16.0, -math.log2(eps / 2)) - (count - escapes) * math.log2(1.0 - eps)
        if cost < best_cost:
            best, best_cost = level, cost
    return best


# -- varints and raw bits ----------------------------------------------------------------------------
_VARINT_SHIFTS = torch.arange(MAX_VARINT_BYTES, dtype=torch.int64) * 7


def _varint_sizes(values: Tensor) -> Tensor:
    size = torch.ones_like(values)
    for j in range(1, MAX_VARINT_BYTES):
        size += values >= 1 << (7 * j)
    return size


def _pack_varints(values: Tensor) -> bytes:
    """LEB128 of non-negative int64 values below 2^35."""
    if values.numel() == 0:
        return b""
    size = _varint_sizes(values)
    index = torch.arange(MAX_VARINT_BYTES, dtype=torch.int64)
    groups = (values[:, None] >> _VARINT_SHIFTS) & 127
    groups = groups | ((index < size[:, None] - 1).to(torch.int64) << 7)
    return groups[index < size[:, None]].to(torch.uint8).numpy().tobytes()


def _read_varints(reader: ByteReader, count: int) -> Tensor:
    """``count`` LEB128 values (at most MAX_VARINT_BYTES each, canonical) -> int64 [count]."""
    available = min(reader.remaining, count * MAX_VARINT_BYTES)
    view = reader.data[reader.offset:reader.offset + available]
    data = torch.frombuffer(bytearray(view), dtype=torch.uint8).to(torch.int64) if available else \
        torch.zeros(0, dtype=torch.int64)
    last = data < 128
    ends = torch.nonzero(last).reshape(-1)[:count]
    if ends.numel() < count:
        raise reader.error(f"truncated: {count} escaped values expected")
    total = int(ends[-1]) + 1
    data, last = data[:total], last[:total]
    starts = torch.cat([torch.zeros(1, dtype=torch.int64), ends[:-1] + 1])
    sizes = ends - starts + 1
    if (sizes > MAX_VARINT_BYTES).any():
        raise reader.error("an escaped value's varint is too long")
    if ((sizes > 1) & (data[ends] == 0)).any():
        raise reader.error("an escaped value's varint is not canonical")
    group = torch.cumsum(last.to(torch.int64), 0) - last.to(torch.int64)
    position = torch.arange(total, dtype=torch.int64) - starts[group]
    values = torch.zeros(count, dtype=torch.int64).index_add_(0, group, (data & 127) << (7 * position))
    reader.take(total, "escaped values")
    return values


_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int64)
_BIT_SHIFTS = torch.arange(7, -1, -1, dtype=torch.int64)


def _pack_bits(values: Tensor, widths: Tensor, total: int) -> bytes:
    """values[i] in widths[i] bits (``total`` in all), MSB first, concatenated, zero-padded to a byte."""
    if total == 0:
        return b""
    j = torch.arange(int(widths.max()), dtype=torch.int64)
    bits = (values[:, None] >> (widths[:, None] - 1 - j).clamp_(min=0)) & 1
    bits = torch.nn.functional.pad(bits[j < widths[:, None]], (0, -total % 8))
    return (bits.view(-1, 8) * _BIT_WEIGHTS).sum(1).to(torch.uint8).numpy().tobytes()


def _read_bits(reader: ByteReader, widths: Tensor, total: int) -> Tensor:
    """The values written by :func:`_pack_bits` for ``widths`` -> int64 (0 where the width is 0)."""
    if total == 0:
        return torch.zeros(widths.numel(), dtype=torch.int64)
    data = torch.frombuffer(bytearray(reader.take((total + 7) // 8, "raw low bits")), dtype=torch.uint8)
    bits = ((data.to(torch.int64)[:, None] >> _BIT_SHIFTS) & 1).reshape(-1)
    if bits[total:].any():
        raise reader.error("raw low bits: non-zero padding")
    j = torch.arange(int(widths.max()), dtype=torch.int64)
    index = ((torch.cumsum(widths, 0) - widths)[:, None] + j).clamp_(max=total - 1)
    weight = (widths[:, None] - 1 - j)
    return ((bits[index] << weight.clamp(min=0)) * (weight >= 0)).sum(1)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 127, value >> 7
        out.append(byte | (128 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(reader: ByteReader, what: str) -> int:
    value = 0
    for j in range(MAX_VARINT_BYTES):
        byte = reader.unpack("B", what)
        value |= (byte & 127) << (7 * j)
        if byte < 128:
            if j and not byte:
                raise reader.error(f"{what}: varint not canonical")
            return value
    raise reader.error(f"{what}: varint too long")


# -- Gaussian streams --------------------------------------------------------------------------------
def predicted_centres(mean: Tensor, step: Tensor) -> Tensor:
    """round(mu / Q) as int64, clamped (float32 arithmetic): the predicted symbol."""
    centre = torch.round(mean / step)
    centre = torch.nan_to_num(centre, nan=0.0).clamp(-CENTRE_LIMIT, CENTRE_LIMIT)
    return centre.to(torch.int64)


def encode_gaussian(out: ByteWriter, symbols: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> CodeLength:
    """Append the blocks coding int64 ``symbols`` [n] under N(mean, scale^2) on the grid ``step``
    (float32 [n] each; ``scale`` already floored). Appends nothing for n = 0. Returns the code
    length that :func:`gaussian_code_bits` predicts for these blocks."""
    if symbols.numel() == 0:
        return CodeLength(0.0, 0.0)
    bad = _check_distributions(mean, scale, step)
    if bad:
        raise BitstreamError(f"cannot encode: the entropy model gives invalid distributions ({bad})")
    bits = overhead = 0.0
    for block in _blocks(symbols, _plan(mean, scale, step)):
        below, above = _bounds(block)
        data = torchac().encode_int16_normalized_cdf(*_encoder_rows(below, above))
        size = _varint_bytes(len(data))
        out.raw(size).pack("B", block.level).raw(data)
        if block.excess.numel():
            out.raw(_pack_varints(block.excess))
        raw_bits = 0
        if block.low is not None:
            raw_bits = int(block.shift.sum())
            out.raw(_pack_bits(block.low, block.shift, raw_bits))
        bits += _ideal_bits(below, above) + raw_bits + 8 * int(_varint_sizes(block.excess).sum())
        overhead += len(size) + 1 + (-raw_bits % 8) / 8 + FLUSH_BYTES
    return CodeLength(bits, overhead)


def gaussian_code_bits(symbols: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> CodeLength:
    """What :func:`encode_gaussian` writes for these arguments, without coding: the ideal code length
    of its symbols under the very integer CDFs it uses (the grid tables, the 2^-16 floor, the escape
    level it would choose), its raw bits and escape varints, and the block overhead. The coded size
    differs from ``total_bytes`` by the coder's termination (0-2 bytes per block, FLUSH_BYTES counted)
    and its finite precision (~1e-4 bit per symbol)."""
    if symbols.numel() == 0:
        return CodeLength(0.0, 0.0)
    bad = _check_distributions(mean, scale, step)
    if bad:
        raise BitstreamError(f"invalid distributions ({bad})")
    bits = overhead = 0.0
    for block in _blocks(symbols, _plan(mean, scale, step)):
        coded = _ideal_bits(*_bounds(block))
        raw_bits = int(block.shift.sum()) if block.low is not None else 0
        bits += coded + raw_bits + 8 * int(_varint_sizes(block.excess).sum())
        size = math.ceil(coded / 8 + FLUSH_BYTES)
        overhead += len(_varint_bytes(size)) + 1 + (-raw_bits % 8) / 8 + FLUSH_BYTES
    return CodeLength(bits, overhead)


def decode_gaussian(reader: ByteReader, mean: Tensor, scale: Tensor, step: Tensor) -> Tensor:
    """Read the blocks of ``n = len(mean)`` elements written by :func:`encode_gaussian` -> int64 [n]."""
    n = mean.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    bad = _check_distributions(mean, scale, step)
    if bad:
        raise reader.error(f"the entropy model gives invalid distributions ({bad}); the hash tables or "
                           "MLPs are corrupt")
    plan = _plan(mean, scale, step)
    out = torch.empty(n, dtype=torch.float64)
    for c, start, stop in plan.blocks:
        size = _read_varint(reader, "block byte count")
        level = reader.unpack("B", "block escape level")
        if level >= len(ESCAPE_LEVELS):
            raise reader.error(f"unknown escape level {level}")
        data = bytes(reader.take(size, "arithmetic-coded block"))
        k = CLASS_WIDTH[c]
        table = _tables(c, level)[1].index_select(0, plan.row[start:stop])
        symbol = torchac().decode_int16_normalized_cdf(table, data)
        b = symbol.to(torch.float64) - (k + 1)
        escaped = torch.nonzero((symbol == 0) | (symbol == 2 * k + 2)).reshape(-1)
        width = plan.width[start:stop]
        if escaped.numel():
            excess = _read_varints(reader, escaped.numel()).to(torch.float64)
            b.index_copy_(0, escaped, torch.sign(b.index_select(0, escaped)) * (excess + (k + 1)))
            if (b.abs() * width >= 2.0 ** (MAX_SHIFT + 1)).any():  # exact products: powers of two
                raise reader.error("an escaped value is out of range")
        q = plan.centre[start:stop] + b * width
        if c in _COARSE_CLASSES:
            shift = plan.shift[start:stop]
            q += _read_bits(reader, shift, int(shift.sum())).to(torch.float64)
        if (q.abs() >= VALUE_LIMIT).any():
            raise reader.error("a decoded value is out of range")
        out[start:stop] = q
    decoded = torch.empty(n, dtype=torch.int64)
    decoded.index_copy_(0, plan.order, out.to(torch.int64))
    return decoded


def coder_floor_bits(symbols: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> float:
    """Deprecated name, kept for ``streams.py``: the coder-exact size in bits of what
    :func:`encode_gaussian` writes (:func:`gaussian_code_bits`, information plus overhead)."""
    length = gaussian_code_bits(symbols.to(torch.int64), mean, scale, step)
    return 8 * length.total_bytes
