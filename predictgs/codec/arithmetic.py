"""Arithmetic coding (constriction's range coder, 24-bit integer distributions, CPU:
:mod:`predictgs.codec.rangecoder`): binary streams under one global Bernoulli (hash tables, offset masks)
and integers under per-element discretised Gaussians (the coded anchor attributes).

Gaussian streams. An element has symbol ``q = round(x / Q)`` and the entropy model's N(mu, sigma^2) on
the bin grid of step Q. Its discretised Gaussian is shaped by two numbers, the spread ``s = sigma / Q``
and the position of ``mu / Q`` between grid points, and the coder uses shared CDF tables on a fixed grid
of both (``SPREADS_PER_OCTAVE`` spreads per octave, ``OFFSETS`` positions per bin, built once per
process): an element takes the table of its cell, so no CDF is evaluated per element and no table grows
with the values. Against each element's exact Gaussian the grid costs ~0.0004 bit per element (< 0.06%
of its cost from s = 0.2 up), the coarse bins ~0.002 more.

- Spreads below ``2^(LOW_OCTAVE - 1)`` use the lowest grid spread. Spreads of ``2^COARSE_OCTAVE`` steps
  and more are coded on coarse bins of ``w = 2^k`` steps, k chosen so that sigma is 2^(COARSE_OCTAVE-1)
  to 2^COARSE_OCTAVE bins, and the k low bits of the value inside its bin are stored raw: the Gaussian is
  nearly flat across a bin of a quarter sigma or less (< 0.004 bit per element), and the alphabet stays
  bounded however wide the distribution.
- The alphabet of a table is the bins ``[-K, K]`` around the predicted bin, K = ceil(TAIL_SIGMAS sigma +
  1/2) rounded up to one of ``WIDTH_CLASSES``, plus two escape symbols (below, above) carrying the
  Gaussian's tails. An escaped value's distance beyond the alphabet (in bins) follows in an
  Exp-Golomb code whose order the encoder picks per stream: an outlier costs its escape symbol and
  ~2 log2(distance) bits, and widens no table.
- Elements are grouped by width class (stable: the coding order, :func:`spread_order`), each group cut
  into blocks of at most ``MAX_BLOCK_SYMBOLS`` elements. Each block's header chooses one of
  ``ESCAPE_LEVELS``: the escape symbols get probability eps/2 each on top of the Gaussian's (a mixture
  (1 - eps) N + eps outliers), so that a block with many outliers (a model that predicts them badly)
  pays ~log2(2/eps) bits per escape rather than the tables' 16-bit floor. All blocks of a stream go
  into one range-coded message (the encoder codes each element in a 3-symbol row holding its interval:
  the same bytes as the full rows, which the decoder gathers from the tables).

Stream layout (the blocks, their classes and sizes follow from the distributions, which the decoder
has):
    varint byte count of the message, u8 escape level per block, the message (32-bit words);
    if any element escaped: u8 Exp-Golomb order k;
    one bit field, MSB first, zero-padded to a byte: the escaped elements' code prefixes (n - k zeros
    and a one each), their suffixes (n bits each), then the raw low bits of the elements with bin
    shift > 0, all in coding order.

:func:`gaussian_code_bits` predicts what :func:`encode_gaussian` writes (the ideal code length under the
very integer CDFs the coder uses, plus escape codes, raw bits and headers); ``encode_gaussian`` returns the
same figures.

Exactness. The decoder must build the encoder's integer CDFs, to the bit. The distribution parameters
arrive as float32 (see ``predictgs.entropy.anchor`` for how they are made reproducible). The grid cell of an element
is computed from them with IEEE-exact float64 operations only (division, subtraction, rounding, frexp,
comparisons; no transcendental function, whose last bit may depend on the code path), so both sides
pick the same table. The tables are evaluated in float64 from exactly representable grid values with
predictgs's own normal CDF (:mod:`predictgs.codec.normal`: additions and multiplications only, the same bits
on every machine and in any batch, which torch's ``ndtr`` does not promise) and rounded to 24-bit integers.

Compiled twin. Where the compiled CPU kernels are built (:mod:`predictgs.kernels`), the per-element plan,
the symbols, the range coding and the decoded values come from ``kernels/csrc/gaussian_coder.cpp``: the same
float64 operations in the same order and constriction's coder algorithm, so the same bytes and values as
the PyTorch/constriction path here, which remains for machines without a compiler and as the reference
(tests/test_codec_compiled.py). About twice as fast per stream (docs/bitstream.md, Speed).

Bounds. A block holds at most MAX_BLOCK_SYMBOLS elements, its rows at most 4 (2 max K + 3) bytes each;
the message must be exhausted after the last symbol; every length read from the stream is checked against the bytes left (varints at most
MAX_VARINT_BYTES, escape codes at most 71 bits), decoded values against the int32 range the encoder
accepts.
"""

from __future__ import annotations

import bisect
import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import BitstreamError
from . import normal, rangecoder
from .container import ByteReader, ByteWriter
from .rangecoder import FLUSH_BYTES, PRECISION, PRECISION_BITS, SYMBOL_FLOOR

MAX_BLOCK_SYMBOLS = 1 << 16  # elements per Gaussian block (one escape level each)
CENTRE_LIMIT = 1 << 30  # mu / Q is clamped here (garbage predictions must not overflow)
VALUE_LIMIT = 1 << 31  # coded symbols q satisfy |q| < VALUE_LIMIT

# The grid of shared tables.
SPREADS_PER_OCTAVE = 16  # spreads s = sigma / Q per octave (linear within the octave: exact in binary)
LOW_OCTAVE = -5  # frexp exponent of the lowest octave [2^-6, 2^-5); smaller spreads use 2^-6
COARSE_OCTAVE = 3  # spreads of 2^COARSE_OCTAVE steps and more are coded on coarse bins of 2^k steps
OFFSETS = 64  # positions of mu within its bin
TAIL_SIGMAS = 3.0  # half-width of the alphabet in sigmas (beyond it: escapes); chosen by measurement
WIDTH_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64)
ESCAPE_LEVELS = (0.0,) + tuple(2.0 ** -e for e in (16, 14, 12, 10, 8, 6, 4, 2, 1)) + (0.75, 0.9375)
MAX_SHIFT = 33  # coarse bins of at most 2^33 steps (|q - centre| < 2^32.6)
MAX_VARINT_BYTES = 5  # message byte counts
MAX_COUNT_VARINT_BYTES = 8  # value counts of binary streams
MAX_GOLOMB_K = 32  # escapes' excess (< 2^35) in Exp-Golomb codes of order k <= 32: at most 71 bits

NUM_SPREADS = (COARSE_OCTAVE - LOW_OCTAVE + 1) * SPREADS_PER_OCTAVE
LOWEST_SPREAD = math.ldexp(1.0, LOW_OCTAVE - 1)


class CodeLength(NamedTuple):
    """What :func:`encode_gaussian` writes: ``bits`` of information (the ideal code length of the
    arithmetic-coded symbols under the coder's integer CDFs, plus the escapes' Exp-Golomb codes and the
    raw low bits) and ``overhead_bytes`` (block headers, the escape code order, the bit field's padding,
    and the coder's termination, FLUSH_BYTES per message on average). The coded size is ~ bits / 8 +
    overhead_bytes."""

    bits: float
    overhead_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.bits / 8 + self.overhead_bytes

    def __add__(self, other):  # sum of streams (NamedTuple's + would concatenate)
        return CodeLength(self.bits + other.bits, self.overhead_bytes + other.overhead_bytes)


def warm_up() -> None:
    """Build the coder's shared tables (~0.3 s once per process), e.g. before timing. Nothing is
    compiled: the coder is a prebuilt wheel."""
    _tables()


# -- binary streams ----------------------------------------------------------------------------------
def encode_bernoulli(bits: Tensor) -> bytes:
    """{0,1} values -> f32 p(1), varint count of the values, varint byte count, one range-coded
    message. The count is stored so that a reader expecting another count (a crafted header) fails.
    (:func:`rangecoder.encode_fixed`: the compiled coder where it is built, constriction's bytes.)"""
    bits = bits.reshape(-1).to(torch.uint8).cpu()
    n = bits.numel()
    p_one = float(np.float32(bits.float().mean().item() if n else 0.0))
    data = rangecoder.encode_fixed(bits, _bernoulli_counts(p_one))
    out = ByteWriter().pack("f", p_one).raw(_varint_bytes(n))
    return out.raw(_varint_bytes(len(data))).raw(data).getvalue()


def decode_bernoulli(reader: ByteReader, count: int) -> Tensor:
    """The ``count`` bits of a stream written by :func:`encode_bernoulli` -> bool [count]."""
    p_one = reader.unpack("f", "Bernoulli probability")
    if not 0.0 <= p_one <= 1.0:  # also rejects NaN
        raise reader.error(f"Bernoulli probability {p_one} outside [0, 1]")
    stored = _read_varint(reader, "value count", MAX_COUNT_VARINT_BYTES)
    if stored != count:
        raise reader.error(f"{stored} values stored, {count} expected")
    size = _read_varint(reader, "message byte count")
    message = reader.take(size, "arithmetic-coded message")
    return rangecoder.decode_fixed(message, reader, count, _bernoulli_counts(p_one)).view(torch.bool)


def _bernoulli_counts(p_one: float) -> np.ndarray:
    """[P(0), P(1)] in 2^24ths; each symbol keeps at least 1/2^24."""
    zero_mass = min(max(int(round((1.0 - p_one) * PRECISION)), 1), PRECISION - 1)
    return np.array([zero_mass, PRECISION - zero_mass], dtype=np.int64)


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
CLASS_WIDTH = [WIDTH_CLASSES[c] for c in CLASSES]  # K of each class in use
_CLASS_OF_SPREAD = torch.tensor([CLASSES.index(c) for c in SPREAD_CLASS], dtype=torch.int64)
_CLASS_OF_SPREAD_U8 = _CLASS_OF_SPREAD.to(torch.uint8)
_CLASS_SPREADS = [[i for i, c in enumerate(SPREAD_CLASS) if c == cls] for cls in CLASSES]
_ROW_BASE = torch.tensor([(i - SPREAD_CLASS.index(c)) * OFFSETS for i, c in enumerate(SPREAD_CLASS)],
                         dtype=torch.int64)  # first table row of a spread within its class's table
_CLASS_WIDTH = torch.tensor(CLASS_WIDTH, dtype=torch.int64)
_COARSE_CLASSES = frozenset(CLASSES.index(c) for c in SPREAD_CLASS[-SPREADS_PER_OCTAVE:])  # may have k > 0
HIGHEST_SPREAD = math.ldexp(1.0 - 2.0 ** -52, COARSE_OCTAVE + MAX_SHIFT)  # in the top cell
_POW2 = torch.tensor([2.0 ** k for k in range(MAX_SHIFT + 1)], dtype=torch.float64)
# Approximate cost of an escape and of any other symbol at each escape level, for the encoder's choice.
_FLOOR_BITS = PRECISION_BITS - math.log2(SYMBOL_FLOOR)  # 16: the cost of a symbol at the floor
_LEVEL_COSTS = [(_FLOOR_BITS, 0.0)] + [(min(_FLOOR_BITS, -math.log2(eps / 2)), -math.log2(1.0 - eps))
                                for eps in ESCAPE_LEVELS[1:]]
_LEVEL_COSTS_TENSOR = torch.tensor(_LEVEL_COSTS, dtype=torch.float64)


def _float_table(cls: int) -> Tensor:
    """float64 CDFs [spreads x OFFSETS, 2K + 4] of class ``cls``: symbol 0 escapes below, 1 + K + b is
    bin b in [-K, K], 2K + 2 escapes above; the edge below bin b is Phi((b - 1/2 - o) / sigma), with o
    the position of mu relative to bin 0's middle (in bins) and sigma the spread in bins."""
    k = CLASS_WIDTH[cls]
    sigma = torch.tensor([_grid_spread(i) for i in _CLASS_SPREADS[cls]], dtype=torch.float64)
    offset = (torch.arange(OFFSETS, dtype=torch.float64) + 0.5) / OFFSETS - 0.5
    edges = torch.arange(-k, k + 2, dtype=torch.float64) - 0.5  # [2K + 2]
    z = (edges[None, None, :] - offset[None, :, None]) / sigma[:, None, None]
    # Far tails (|z| >= 40: Phi is 0, subnormal or exactly 1) are clamped, and values below 2^-64 set to
    # 0: both round to the same integers, and subnormal numbers would make the arithmetic ~100x slower.
    inner = torch.from_numpy(normal.cdf(z.clamp_(-40.0, 40.0).numpy())).reshape(-1, 2 * k + 2)
    inner = inner.masked_fill(inner < 2.0 ** -64, 0.0)
    rows = inner.shape[0]
    return torch.cat([torch.zeros(rows, 1, dtype=torch.float64), inner,
                      torch.ones(rows, 1, dtype=torch.float64)], dim=1)


def _integer_cdf_full(cdf: Tensor) -> Tensor:
    """float64 CDFs [n, Lp] (0 first, 1 last) -> int32 [n, Lp] in [0, 2^24]:
    round(cdf (2^24 - (Lp - 1) f)) + i f, f = SYMBOL_FLOOR: every symbol keeps at least 2^-16."""
    lp = cdf.shape[1]
    scaled = torch.round(cdf * float(PRECISION - (lp - 1) * SYMBOL_FLOOR)).to(torch.int32)
    return scaled + torch.arange(lp, dtype=torch.int32) * SYMBOL_FLOOR


class _Tables(NamedTuple):
    """Every table, flat: int32 CDF values in [0, 2^24]; ``base[level, cls]`` is the first entry of
    class ``cls``'s table at that level; ``weights[level][cls]`` the decoder's float32 rows [rows, 2K + 3]
    (:func:`rangecoder.probabilities` of the counts)."""

    full: Tensor
    base: Tensor
    weights: list
    intervals: Tensor  # float32 [entries, 3]: the encoder's 3-symbol row of the symbol whose CDF starts here
    interval_symbols: Tensor  # int32 [entries]: its symbol in that row
    entry_bits: Tensor  # float64 [entries]: that symbol's code length, -log2((above - below) / 2^24)

    def rows(self, level: int, cls: int, rows: Tensor) -> np.ndarray:
        """The coder's weights [n, 2K + 3] of class ``cls`` at ``level`` for table rows ``rows``."""
        return self.weights[level][cls].index_select(0, rows).numpy()


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    """All classes at all escape levels (2M entries, ~60 ms once per process): at level l the escape
    symbols get ESCAPE_LEVELS[l] / 2 each on top of the Gaussian's tails."""
    floats = [_float_table(cls) for cls in range(len(CLASSES))]
    parts, base, weights, offset = [], [], [], 0
    for eps in ESCAPE_LEVELS:
        row, level_weights = [], []
        for cdf in floats:
            if eps:
                cdf = cdf.clone()
                cdf[:, 1:-1] = eps / 2 + (1.0 - eps) * cdf[:, 1:-1]
            integer = _integer_cdf_full(cdf)
            level_weights.append(torch.from_numpy(rangecoder.probabilities(torch.diff(integer, dim=1).numpy())))
            parts.append(integer.reshape(-1))
            row.append(offset)
            offset += parts[-1].numel()
        base.append(row)
        weights.append(level_weights)
    full = torch.cat(parts)
    # Entry i as the lower bound of a symbol (the last entry of a row never is: its row is a dummy).
    above = torch.cat([full[1:], torch.full((1,), PRECISION, dtype=full.dtype)])
    below = torch.where(above > full, full, torch.zeros_like(full))
    above = torch.where(above > full, above, torch.full_like(full, PRECISION))
    rows, symbols = rangecoder.interval_rows(below.numpy(), above.numpy())
    return _Tables(full, torch.tensor(base, dtype=torch.int64), weights, torch.from_numpy(rows),
                   torch.from_numpy(symbols), _code_bits(above - below))


def _code_bits(count: Tensor) -> Tensor:
    """-log2(count / 2^24) of integer counts (float64)."""
    return PRECISION_BITS - torch.log2(count.to(torch.float64))


# -- per-element planning ----------------------------------------------------------------------------
class _Plan(NamedTuple):
    """A stream's coding order and, in that order, each element's class, table row, bin shift k, bin
    width 2^k and centre (the first value of bin 0; float64, exact). ``blocks`` lists (class, start,
    stop)."""

    order: Tensor
    cls: Tensor
    row: Tensor
    shift: Tensor
    width: Tensor
    centre: Tensor
    blocks: list

    def alphabet(self) -> Tensor:
        """K of each element's table (int64)."""
        return _CLASS_WIDTH.index_select(0, self.cls)

    def coarse(self) -> Tensor | None:
        """Elements with raw low bits (k > 0), or None when no class can have them."""
        if not any(c in _COARSE_CLASSES for c, _, _ in self.blocks):
            return None
        return torch.nonzero(self.shift).reshape(-1)


def _check_distributions(mean: Tensor, scale: Tensor, step: Tensor) -> str | None:
    """The name of the first tensor that is not finite (or, scale and step, not positive), else None."""
    for name, t in (("mean", mean), ("scale", scale), ("step", step)):
        low, high = torch.aminmax(t)  # NaN propagates
        if not (math.isfinite(low) and math.isfinite(high)) or (name != "mean" and not low > 0):
            return name
    return None


_EXPONENT_BIAS = 1022  # IEEE float64: s = m 2^e with m in [1/2, 1) has the biased exponent field e + 1022
assert SPREADS_PER_OCTAVE == 16  # the 4 leading mantissa bits are the linear cell within the octave


def _spread_cells(scale: Tensor, step: Tensor) -> tuple[Tensor, Tensor | None]:
    """(spread index, bin shift k or None where every k is 0) per element, from s = sigma / Q in float64:
    with frexp(s) = m 2^e, the index (e - LOW_OCTAVE) 16 + floor((m - 1/2) 32) is read off the bits of
    the (positive, normal) float64: its exponent field and its 4 leading mantissa bits (exact)."""
    s = (scale.double() / step.double()).clamp_(LOWEST_SPREAD, HIGHEST_SPREAD)
    index = torch.bitwise_right_shift(s.view(torch.int64), 48).sub_((_EXPONENT_BIAS + LOW_OCTAVE) * 16)
    coarse_from = (COARSE_OCTAVE + 1 - LOW_OCTAVE) * SPREADS_PER_OCTAVE  # index of s = 2^COARSE_OCTAVE
    if int(index.max()) < coarse_from:
        return index, None
    shift = (torch.bitwise_right_shift(index, 4) + (LOW_OCTAVE - COARSE_OCTAVE)).clamp_(0, MAX_SHIFT)
    return index - shift * SPREADS_PER_OCTAVE, shift


def spread_order(scale: Tensor, step: Tensor) -> Tensor:
    """Coding order of a stream's elements: grouped by the width class of their predicted spread
    sigma / Q, stable (the decoder derives the same order). Each group is coded as one or more blocks
    with tables of one width."""
    spread, _ = _spread_cells(scale, step)
    return torch.argsort(_CLASS_OF_SPREAD_U8.index_select(0, spread), stable=True)


def _blocks(counts: list[int]) -> list:
    """(class, start, stop) of the blocks: each class's elements in runs of at most MAX_BLOCK_SYMBOLS."""
    blocks, start = [], 0
    for c, count in enumerate(counts):
        for first in range(start, start + count, MAX_BLOCK_SYMBOLS):
            blocks.append((c, first, min(first + MAX_BLOCK_SYMBOLS, start + count)))
        start += count
    return blocks


def _plan(mean: Tensor, scale: Tensor, step: Tensor) -> _Plan:
    module = rangecoder.compiled()
    if module is not None:  # the same numbers, bit for bit (tests/test_codec_compiled.py)
        order, cls, row, shift, width, centre, counts = module.gaussian_plan(
            mean.float(), scale.float(), step.float(), _CLASS_OF_SPREAD_U8, _ROW_BASE, len(CLASSES), LOWEST_SPREAD,
            HIGHEST_SPREAD, (_EXPONENT_BIAS + LOW_OCTAVE) * SPREADS_PER_OCTAVE, LOW_OCTAVE - COARSE_OCTAVE, MAX_SHIFT,
            OFFSETS, float(CENTRE_LIMIT))
        return _Plan(order, cls, row, shift, width, centre, _blocks(counts.tolist()))
    return _plan_reference(mean, scale, step)


def _plan_reference(mean: Tensor, scale: Tensor, step: Tensor) -> _Plan:
    spread, shift = _spread_cells(scale, step)
    cls = _CLASS_OF_SPREAD_U8.index_select(0, spread)
    order = torch.argsort(cls, stable=True)
    counts = torch.bincount(cls, minlength=len(CLASSES))
    spread = spread.index_select(0, order)
    m = (mean.double() / step.double()).clamp_(-CENTRE_LIMIT, CENTRE_LIMIT).index_select(0, order)
    if shift is None:  # every bin is one step (the same numbers as below with k = 0)
        shift = torch.zeros(m.shape[0], dtype=torch.int64)
        width = torch.ones(m.shape[0], dtype=torch.float64)
        centre = torch.round(m)
        offset = m - centre
    else:
        shift = shift.index_select(0, order)
        width = _POW2.index_select(0, shift)
        half = (width - 1.0) * 0.5
        centre = torch.round(m - half)  # bin 0 holds the values centre .. centre + 2^k - 1
        offset = (m - centre - half) / width  # mu relative to bin 0's middle, in bins: [-1/2, 1/2]
    cell = ((offset + 0.5) * OFFSETS).to(torch.int64).clamp_(0, OFFSETS - 1)
    row = _ROW_BASE.index_select(0, spread) + cell
    return _Plan(order, cls.index_select(0, order).to(torch.int64), row, shift, width, centre,
                 _blocks(counts.tolist()))


class _Coded(NamedTuple):
    """A stream as :func:`encode_gaussian` writes it (coding order): the symbols' CDF bounds (int32),
    each block's escape level, the escapes' excess (bins beyond the alphabet) and the raw low bits."""

    symbol: Tensor  # int64: 0 escape below, 1 + K + b bin b, 2K + 2 escape above
    at: Tensor  # index of the CDF value below the symbol in the flat tables
    levels: list
    excess: Tensor
    low: Tensor | None  # raw low bits of the elements with k > 0 (their widths: plan.shift[coarse])
    coarse: Tensor | None

    @property
    def below(self) -> Tensor:
        """The symbols' CDF values below (int32)."""
        return _tables().full.index_select(0, self.at)

    @property
    def above(self) -> Tensor:
        return _tables().full.index_select(0, self.at + 1)


def _code(symbols: Tensor, plan: _Plan) -> _Coded:
    module = rangecoder.compiled()
    if module is None:
        return _code_reference(symbols, plan)
    symbol, at, levels, excess, low, bad = module.gaussian_code(
        symbols.reshape(-1).to(torch.int64), plan.order, plan.cls, plan.row, plan.shift, plan.width, plan.centre,
        _CLASS_WIDTH, torch.tensor(plan.blocks, dtype=torch.int64).reshape(-1, 3), _LEVEL_COSTS_TENSOR,
        _tables().base, VALUE_LIMIT)
    if int(bad):
        raise BitstreamError("cannot encode: a quantised value is out of the int32 range")
    coarse = plan.coarse()
    return _Coded(symbol, at, levels.tolist(), excess, low if coarse is not None else None, coarse)


def _code_reference(symbols: Tensor, plan: _Plan) -> _Coded:
    q = symbols.reshape(-1).index_select(0, plan.order)
    if q.numel() and q.abs().max() >= VALUE_LIMIT:
        raise BitstreamError("cannot encode: a quantised value is out of the int32 range")
    r = q.to(torch.float64) - plan.centre  # exact: |r| < 2^53
    bins = torch.floor(r / plan.width)
    k = plan.alphabet()
    symbol = torch.minimum((bins + (k + 1)).clamp_(min=0).to(torch.int64), 2 * k + 2)
    escaped = torch.nonzero((symbol == 0) | (symbol == 2 * k + 2)).reshape(-1)
    excess = (bins.index_select(0, escaped).abs_() - (k.index_select(0, escaped) + 1)).to(torch.int64)
    # Escape level per block, from the escapes' count; then each symbol's CDF bounds.
    starts = torch.tensor([start for _, start, _ in plan.blocks[1:]], dtype=torch.int64)
    block_of_escape = torch.bucketize(escaped, starts, right=True)
    escapes = torch.bincount(block_of_escape, minlength=len(plan.blocks)).tolist()
    tables = _tables()
    at = plan.row * (2 * k + 4) + symbol
    levels = []
    for (c, start, stop), count in zip(plan.blocks, escapes):
        costs = [count * a + (stop - start - count) * b for a, b in _LEVEL_COSTS]
        levels.append(costs.index(min(costs)))
        at[start:stop] += int(tables.base[levels[-1], c])
    coarse = plan.coarse()
    low = None
    if coarse is not None:
        low = (r.index_select(0, coarse) - bins.index_select(0, coarse) * plan.width.index_select(0, coarse))
        low = low.to(torch.int64)
    return _Coded(symbol, at, levels, excess, low, coarse)


# -- escape codes, raw bits and varints ------------------------------------------------------------
def _bit_length(values: Tensor) -> Tensor:
    """Bits of non-negative int64 values below 2^53 (0 for 0), exactly (frexp of an exact float)."""
    return torch.frexp(values.to(torch.float64))[1].to(torch.int64)


def _golomb_order(excess: Tensor) -> int:
    """The Exp-Golomb order k giving the escapes the shortest codes (see :func:`_golomb_code`), among
    the orders near the bit length of their median."""
    middle = int(_bit_length(excess.median().reshape(1)))
    candidates = range(max(0, middle - 3), min(MAX_GOLOMB_K, middle + 1) + 1)
    costs = [int((2 * _bit_length(excess + (1 << k)) - k - 1).sum()) for k in candidates]
    return candidates[costs.index(min(costs))]


def _golomb_code(excess: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Exp-Golomb codes of order k of non-negative values v: with u = v + 2^k of n + 1 bits, n - k
    zeros and a one (the prefix), then u's low n bits (the suffix): 2n - k + 1 bits. Returns (prefix
    widths n - k + 1, suffix values, suffix widths n)."""
    u = excess + (1 << k)
    n = _bit_length(u) - 1
    return n - k + 1, u - torch.bitwise_left_shift(torch.ones_like(u), n), n


_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32)
_BIT_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)


def _pack_bits(fields: list[tuple[Tensor, Tensor]], ones: Tensor | None = None) -> bytes:
    """One bit field, MSB first, zero-padded to a byte: ``ones`` (unary codes: widths[i] - 1 zeros and
    a one), then each (values, widths) of ``fields`` in order, values[i] in widths[i] bits. (The compiled
    ``pack_bits`` where the kernels are built: the same bytes.)"""
    module = rangecoder.compiled()
    if module is None:
        return _pack_bits_reference(fields, ones)
    empty = torch.zeros(0, dtype=torch.int64)
    values = torch.cat([v.reshape(-1).to(torch.int64) for v, _ in fields]) if fields else empty
    widths = torch.cat([w.reshape(-1).to(torch.int64) for _, w in fields]) if fields else empty
    ones = empty if ones is None else ones.reshape(-1).to(torch.int64)
    return module.pack_bits(ones, values, widths).numpy().tobytes()


def _pack_bits_reference(fields: list[tuple[Tensor, Tensor]], ones: Tensor | None = None) -> bytes:
    parts = []
    if ones is not None and ones.numel():
        unary = torch.zeros(int(ones.sum()), dtype=torch.uint8)
        unary[torch.cumsum(ones, 0) - 1] = 1
        parts.append(unary)
    for values, widths in fields:
        if widths.numel() and int(widths.max()) > 0:
            j = torch.arange(int(widths.max()), dtype=torch.int64)
            shift = widths[:, None] - 1 - j
            bits = (values[:, None] >> shift.clamp(min=0)) & 1
            parts.append(bits[shift >= 0].to(torch.uint8))
    if not parts:
        return b""
    bits = torch.cat(parts)
    bits = torch.nn.functional.pad(bits, (0, -bits.numel() % 8))
    return (bits.view(-1, 8).to(torch.int32) * _BIT_WEIGHTS).sum(1).to(torch.uint8).numpy().tobytes()


def _unpack(data) -> Tensor:
    """Bytes -> their bits, MSB first (uint8 0/1)."""
    if not len(data):
        return torch.zeros(0, dtype=torch.uint8)
    data = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return ((data[:, None] >> _BIT_SHIFTS) & 1).reshape(-1)


def _padding_is_zero(data, total: int) -> bool:
    """Whether the bits of ``data`` (ceil(total / 8) bytes) after the first ``total`` are zero."""
    spare = 8 * len(data) - total
    return spare == 0 or not data[-1] & ((1 << spare) - 1)


def _field_values(data, start: int, widths: Tensor) -> Tensor:
    """:func:`_bit_values` of the bytes ``data`` (by the compiled ``unpack_fields`` where it is built)."""
    module = rangecoder.compiled()
    if module is None or not len(data):
        return _bit_values(_unpack(data), start, widths)
    return module.unpack_fields(torch.frombuffer(bytearray(data), dtype=torch.uint8), start, widths.to(torch.int64))


def _bit_values(bits: Tensor, start: int, widths: Tensor) -> Tensor:
    """The values of ``widths`` consecutive fields of ``bits`` from ``start`` (MSB first) -> int64."""
    if widths.numel() == 0 or int(widths.max()) == 0:
        return torch.zeros(widths.numel(), dtype=torch.int64)
    j = torch.arange(int(widths.max()), dtype=torch.int64)
    index = (start + torch.cumsum(widths, 0) - widths)[:, None] + j
    weight = widths[:, None] - 1 - j
    index = torch.where(weight >= 0, index, start)
    fields = bits.index_select(0, index.reshape(-1)).view(index.shape).to(torch.int64)
    return ((fields << weight.clamp(min=0)) * (weight >= 0)).sum(1)


def _read_tail(reader: ByteReader, escapes: int, low_widths: Tensor | None) -> tuple[Tensor, Tensor]:
    """The bit region after the blocks: ``escapes`` Exp-Golomb codes (u8 order first, then the
    prefixes, then the suffixes) and the raw low bits of ``low_widths`` -> (excess, low)."""
    low_widths = low_widths if low_widths is not None else torch.zeros(0, dtype=torch.int64)
    excess = torch.zeros(0, dtype=torch.int64)
    prefix_bits, suffix_widths = 0, torch.zeros(0, dtype=torch.int64)
    k = 0
    if escapes:
        k = reader.unpack("B", "escape code order")
        if k > MAX_GOLOMB_K:
            raise reader.error(f"escape code order {k} above {MAX_GOLOMB_K}")
        longest = 36 - k  # prefix of an excess below 2^35
        peek = reader.data[reader.offset:reader.offset + min(reader.remaining, (escapes * longest + 7) // 8)]
        ones = torch.nonzero(_unpack(peek)).reshape(-1)[:escapes]
        if ones.numel() < escapes:
            raise reader.error(f"escaped values: truncated ({escapes} expected)")
        prefix = torch.diff(ones, prepend=torch.tensor([-1]))  # n - k + 1 each
        if int(prefix.max()) > longest:
            raise reader.error("an escaped value's code is too long")
        prefix_bits, suffix_widths = int(ones[-1]) + 1, prefix - 1 + k
    total = prefix_bits + int(suffix_widths.sum()) + int(low_widths.sum())
    data = reader.take((total + 7) // 8, "escaped values and raw low bits")
    if not _padding_is_zero(data, total):
        raise reader.error("raw bits: non-zero padding")
    if escapes:
        leading = torch.bitwise_left_shift(torch.ones_like(suffix_widths), suffix_widths)
        excess = _field_values(data, prefix_bits, suffix_widths) + leading - (1 << k)
    return excess, _field_values(data, prefix_bits + int(suffix_widths.sum()), low_widths)


def _read_plan_tail(reader: ByteReader, escapes: int, plan: _Plan) -> tuple[Tensor | None, Tensor, Tensor]:
    """:func:`_read_tail` of a stream coded with ``plan``: (its elements with raw low bits or None, the
    escapes' excess, the raw low bits)."""
    coarse = plan.coarse()
    low_widths = plan.shift.index_select(0, coarse) if coarse is not None else None
    return (coarse, *_read_tail(reader, escapes, low_widths))


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 127, value >> 7
        out.append(byte | (128 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(reader: ByteReader, what: str, max_bytes: int = MAX_VARINT_BYTES) -> int:
    value = 0
    for j in range(max_bytes):
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


def encode_gaussian(out: ByteWriter, symbols: Tensor, mean: Tensor, scale: Tensor,
                    step: Tensor) -> CodeLength:
    """Append the blocks coding int64 ``symbols`` [n] under N(mean, scale^2) on the grid ``step``
    (float32 [n] each; ``scale`` already floored). Appends nothing for n = 0. Returns the code
    length that :func:`gaussian_code_bits` predicts for this stream (the same numbers)."""
    if symbols.numel() == 0:
        return CodeLength(0.0, 0.0)
    bad = _check_distributions(mean, scale, step)
    if bad:
        raise BitstreamError(f"cannot encode: the entropy model gives invalid distributions ({bad})")
    plan = _plan(mean, scale, step)
    coded = _code(symbols, plan)
    data = rangecoder.encode_intervals(_tables(), coded.at)
    size = _varint_bytes(len(data))
    out.raw(size).raw(bytes(coded.levels)).raw(data)
    headers = len(size) + len(coded.levels)
    prefix, fields, order = _tail(coded, plan)
    if order is not None:
        out.pack("B", order)
    out.raw(_pack_bits(fields, prefix))
    return _length(coded, plan, _tail_bits(prefix, fields), order is not None, headers)


def _tail(coded: _Coded, plan: _Plan) -> tuple[Tensor | None, list, int | None]:
    """The bit field after the blocks: (the escape codes' prefix widths, [(values, widths)] of their
    suffixes and of the raw low bits, the Exp-Golomb order or None without escapes)."""
    prefix, fields, order = None, [], None
    if coded.excess.numel():
        order = _golomb_order(coded.excess)
        prefix, suffix, suffix_widths = _golomb_code(coded.excess, order)
        fields.append((suffix, suffix_widths))
    if coded.coarse is not None:
        fields.append((coded.low, plan.shift.index_select(0, coded.coarse)))
    return prefix, fields, order


def _tail_bits(prefix: Tensor | None, fields: list) -> int:
    return (int(prefix.sum()) if prefix is not None else 0) + sum(int(w.sum()) for _, w in fields)


def _length(coded: _Coded, plan: _Plan, raw_bits: int, order: bool,
            headers: int | None = None) -> CodeLength:
    """The code length of a coded stream (``headers``: the message's header bytes, when known)."""
    bits = float(_tables().entry_bits.index_select(0, coded.at).sum())
    if headers is None:  # the byte count's varint, from the message's predicted size, and the levels
        words = math.ceil((bits / 8 + FLUSH_BYTES) / 4)
        headers = len(_varint_bytes(4 * words)) + len(plan.blocks)
    bits += raw_bits
    return CodeLength(bits, headers + FLUSH_BYTES + int(order) + (-raw_bits % 8) / 8)


def gaussian_code_bits(symbols: Tensor, mean: Tensor, scale: Tensor, step: Tensor) -> CodeLength:
    """What :func:`encode_gaussian` writes for these arguments, without coding: the ideal code length
    of its symbols under the very integer CDFs it uses (the grid tables, the 2^-16 floor, the escape
    levels it chooses), the escapes' codes and raw bits, and the overhead (headers, padding). The
    coded size differs from ``total_bytes`` by the coder's termination (0-2 bytes per block, counted
    as FLUSH_BYTES on average) and its finite precision (~1e-4 bit per symbol)."""
    if symbols.numel() == 0:
        return CodeLength(0.0, 0.0)
    bad = _check_distributions(mean, scale, step)
    if bad:
        raise BitstreamError(f"invalid distributions ({bad})")
    plan = _plan(mean, scale, step)
    coded = _code(symbols, plan)
    prefix, fields, order = _tail(coded, plan)
    return _length(coded, plan, _tail_bits(prefix, fields), order is not None)


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
    size = _read_varint(reader, "message byte count")
    levels = list(reader.take(len(plan.blocks), "escape levels"))
    if max(levels) >= len(ESCAPE_LEVELS):
        raise reader.error(f"unknown escape level {max(levels)}")
    message = reader.take(size, "arithmetic-coded message")
    module = rangecoder.compiled()
    if module is not None:
        return _decode_compiled(module, reader, message, plan, levels)
    return _decode_reference(reader, message, plan, levels)


def _decode_compiled(module, reader: ByteReader, message, plan: _Plan, levels: list) -> Tensor:
    """:func:`_decode_reference`'s numbers with the compiled coder (the same checks, in the same order)."""
    tables = _tables()
    k = plan.alphabet()
    sizes = torch.tensor([stop - start for _, start, stop in plan.blocks], dtype=torch.int64)
    level = torch.repeat_interleave(torch.tensor(levels, dtype=torch.int64), sizes)
    starts = plan.row * (2 * k + 4) + tables.base[level, plan.cls]
    symbol, escapes = rangecoder.decode_rows(message, reader, tables.full, starts, 2 * k + 4)
    coarse, excess, low = _read_plan_tail(reader, escapes, plan)
    if coarse is None:
        coarse = low = torch.zeros(0, dtype=torch.int64)
    decoded, status = module.gaussian_values(symbol, plan.cls, plan.centre, plan.width, plan.order, _CLASS_WIDTH,
                                             excess, coarse, low, 2.0 ** (MAX_SHIFT + 1), float(VALUE_LIMIT))
    if int(status) == 1:
        raise reader.error("an escaped value is out of range")
    if int(status) == 2:
        raise reader.error("a decoded value is out of range")
    return decoded


def _decode_reference(reader: ByteReader, message, plan: _Plan, levels: list) -> Tensor:
    tables = _tables()
    n = plan.order.numel()
    decoder = rangecoder.Decoder(message, reader)
    symbol = torch.empty(n, dtype=torch.int64)
    for (c, start, stop), level in zip(plan.blocks, levels):
        symbol[start:stop] = torch.from_numpy(decoder.rows(tables.rows(level, c, plan.row[start:stop])))
    decoder.finish()
    k = plan.alphabet()
    b = symbol.to(torch.float64) - (k + 1).to(torch.float64)
    escaped = torch.nonzero((symbol == 0) | (symbol == 2 * k + 2)).reshape(-1)
    coarse, excess, low = _read_plan_tail(reader, escaped.numel(), plan)
    if escaped.numel():
        sign = torch.sign(b.index_select(0, escaped))
        b.index_copy_(0, escaped, sign * (excess + (k.index_select(0, escaped) + 1)).to(torch.float64))
        if (b.abs() * plan.width >= 2.0 ** (MAX_SHIFT + 1)).any():  # exact products: powers of two
            raise reader.error("an escaped value is out of range")
    q = plan.centre + b * plan.width
    if coarse is not None and coarse.numel():
        q.index_add_(0, coarse, low.to(torch.float64))
    if (q.abs() >= VALUE_LIMIT).any():
        raise reader.error("a decoded value is out of range")
    decoded = torch.empty(n, dtype=torch.int64)
    decoded.index_copy_(0, plan.order, q.to(torch.int64))
    return decoded

