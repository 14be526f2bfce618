"""Integers under per-element mixtures of discretised Gaussians (HAC++'s feature likelihood), range coded
(:mod:`predictgs.codec.rangecoder`) as a sequence of binary decisions.

An element has symbol ``q = round(x / Q)`` and a mixture sum_k w_k N(mu_k, sigma_k^2) on the bin grid of
step Q. The coder codes ``r = q - c``, ``c = round(sum_k w_k mu_k / Q)``, with everything derived from the
predicted distributions alone, so the decoder derives it too. Per element, from its spread (the
mixture's standard deviation in steps, ``s = sqrt(sum_k w_k (sigma_k^2 + (mu_k - m)^2)) / Q``):

- above ``FINE_SPREAD`` (32) steps it codes coarse bins of ``2^k`` steps (the least k with
  ``s <= 32 2^k``): ``u = floor(r / 2^k)``, and the ``k`` low bits of ``r`` follow raw (a bin holds a
  nearly flat stretch of such a wide distribution);
- the alphabet is ``u`` in ``[-W, W]``, ``W = min(4096, ceil(max(3 s, max_k |mu_k / Q - c| + 6 sigma_k /
  Q) / 2^k) + 1)`` (3 spreads of the mixture and 6 sigmas of every component: coding costs log2 W), plus
  two escape symbols below and above (symbols 0 .. 2W + 2); an escaped value follows as the varint of
  ``|u| - W - 1``.

The symbol's integer CDF is ``C_i = round(F_i (2^24 - (L - 1) f)) + i f`` (L = 2W + 3 symbols, F_i the
mixture's CDF at the lower edge of symbol i, C_0 = 0, C_L = 2^24, f = ``SYMBOL_FLOOR``): every symbol
keeps at least 2^-16, as with torchac's 16-bit tables.
Rather than evaluating all L + 1 values (two normal CDFs each), the symbol is coded as binary
decisions (see :class:`_Bisection`): "is it the centre symbol" (exact counts), "above or below it", then
bisection of the side, each decision with integer counts clamped to [1, 2^24 - 1]. A peaked mixture's
usual centre symbol costs 2 CDF evaluations, any other ~log2(L) + 2, and the code length equals the
categorical one up to the decisions' rounding. All elements of a call are decided in lock step, level
by level (the decoder knows, from the decisions so far, which are still undecided), one coder call per
level.

Call layout: varint byte count, the range-coded message, varint byte count of the escapes, the escape
varints (in element order), the raw low bits (MSB first, zero-padded to a byte).

Exactness: both sides compute the parameters in float32 from the same numbers (see
``predictgs.entropy.anchor``); the element's shape (k, W) comes from IEEE-exact operations on float64
(frexp, multiplication and division by powers of two, ceil), the CDF values from predictgs's own normal CDF
(:mod:`predictgs.codec.normal`: additions and multiplications only, so the same bits on every machine, in
any batch and thread split, which torch's ``ndtr`` does not promise), and the decisions from integer
arithmetic.

Compiled twin. Where the compiled CPU kernels are built (:mod:`predictgs.kernels`), the shapes, the coding
order, the decisions, their probabilities and the range coding run in ``kernels/csrc/mixture_coder.cpp``: the
same float32 and float64 operations in the same order and constriction's coder algorithm, so the same bytes and symbols as the numpy/constriction
path here, which remains for machines without a compiler and as the reference
(tests/test_mixture_compiled.py). About 2.5-4x faster per element (docs/bitstream.md, Speed).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from . import normal, rangecoder
from .arithmetic import CodeLength, _field_values, _pack_bits, _padding_is_zero, _read_varint, _varint_bytes
from .container import ByteReader, ByteWriter
from .rangecoder import FLUSH_BYTES, PRECISION, PRECISION_BITS, SYMBOL_FLOOR

COVERAGE = 3.0  # the alphabet covers +-3 spreads of the mixture (the Gaussian coder's measured best) ...
REACH = 6.0  # ... and +-6 sigma of every component around its mean: bisection costs log2 of the width, so
# a broad minor component (trained HAC++ features: a peaked mixture with a wide second component) is inside
# the alphabet rather than escaped (+8% on such a stream with +-3 spreads alone)
FINE_SPREAD = 32.0  # wider elements code coarse bins of 2^k steps (measured on a trained HAC++ model of
# fern: 8 cost +44% on its feature stream, whose mixtures are peaked with a broad minor component; 32 nothing)
MAX_HALF_WIDTH = 4096
MAX_LOW_BITS = 30
CENTRE_LIMIT = 1 << 30
MAX_ESCAPE_BYTES = 10  # an escape's varint (< 2^63)


class _Shape(NamedTuple):
    centre: Tensor  # int64 c
    shift: Tensor  # int64 k
    width: Tensor  # int64 W


def _shapes(mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> _Shape:
    """Per element: centre, low bits k and half-width W (mean/scale/weight [K, n] float32, step [n])."""
    mixed = (weight * mean).sum(dim=0)
    centre = torch.nan_to_num(torch.round(mixed / step), nan=0.0).clamp(-CENTRE_LIMIT, CENTRE_LIMIT).to(torch.int64)
    spread = torch.sqrt((weight * (scale * scale + (mean - mixed) ** 2)).sum(dim=0)) / step
    limit = float(FINE_SPREAD * 2**MAX_LOW_BITS)
    spread = torch.nan_to_num(spread.double(), nan=limit, posinf=limit).clamp(max=limit)
    ratio = spread / FINE_SPREAD
    mantissa, exponent = torch.frexp(ratio)  # ratio = mantissa 2^exponent, mantissa in [1/2, 1)
    shift = torch.where(mantissa == 0.5, exponent - 1, exponent).to(torch.int64).clamp(0, MAX_LOW_BITS)
    shift = torch.where(spread > FINE_SPREAD, shift, torch.zeros_like(shift))
    bin_steps = torch.ldexp(torch.ones_like(spread), shift)
    component_reach = ((mean.double() / step.double() - centre.double()).abs()
                       + REACH * scale.double() / step.double()).amax(dim=0)
    component_reach = torch.nan_to_num(component_reach, nan=limit, posinf=limit).clamp(max=limit)
    width = torch.ceil(torch.maximum(COVERAGE * spread, component_reach) / bin_steps) + 1
    return _Shape(centre, shift, width.clamp(max=MAX_HALF_WIDTH).to(torch.int64))


class _Ordered(NamedTuple):
    """The elements of a call in coding order (decreasing bisection depth, stable) and their parameters as
    float64 numpy arrays, for :class:`_Bisection` (the compiled twin orders them itself, the same way)."""

    index: np.ndarray  # original positions
    depth: np.ndarray  # D = ceil(log2(W + 1))
    centre: np.ndarray  # float64 (exact: |c| <= 2^30)
    width: np.ndarray
    pow2: np.ndarray  # 2^k
    step: np.ndarray
    mean: np.ndarray  # [K, n]
    scale: np.ndarray
    weight: np.ndarray


def _ordered(mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor, shape: _Shape) -> _Ordered:
    width = shape.width.numpy()
    depth = np.frexp(width.astype(np.float64))[1].astype(np.int64)  # ceil(log2(W + 1)): exact
    o = np.argsort(-depth, kind="stable")
    return _Ordered(o, depth[o], shape.centre.numpy()[o].astype(np.float64), width[o],
                    np.left_shift(np.ones(len(o), dtype=np.int64), shape.shift.numpy()[o]), step.double().numpy()[o],
                    np.ascontiguousarray(mean.double().numpy()[:, o]), np.ascontiguousarray(scale.double().numpy()[:, o]),
                    np.ascontiguousarray(weight.double().numpy()[:, o]))


class _Bisection:
    """The lock-step decisions of all elements of a call (see the module docstring): first "is it the
    centre symbol c = W + 1" (counts exactly C_{c+1} - C_c against the rest), then "above or below c",
    then bisection over [c - 2^D, c) or [c + 1, c + 1 + 2^D), D = ceil(log2(W + 1)) (C_i = 0 for i <= 0
    and 2^24 for i >= L: a decision with no symbol on one side costs ~1e-7 bit), so a non-centre element
    is decided after exactly D more levels. Elements are kept in the order of decreasing D (stable), so
    that the undecided ones are always a prefix of the arrays (the elements come ordered: :func:`_ordered`).

    ``symbols`` (the encoder's, by original position) gives :meth:`truth`; the decoder passes None."""

    def __init__(self, calls: _Ordered, symbols: np.ndarray | None = None):
        self.index, self.depth, self.centre, self.width = calls.index, calls.depth, calls.centre, calls.width
        self.pow2, self.step = calls.pow2, calls.step
        self.mean, self.scale, self.weight = calls.mean, calls.scale, calls.weight
        self.size = 2 * self.width + 3  # L
        self.symbols = None if symbols is None else symbols[calls.index]
        self.decided = np.zeros(len(calls.index), dtype=np.int64)  # by original position
        self.phase, self.levels_done, self.count = 0, 0, len(calls.index)
        self._pending = None

    def _cdf(self, index: np.ndarray, m: int) -> np.ndarray:
        """Integer CDF values C_index of the first m elements (0 below 1, 2^24 from L on)."""
        size = self.size[:m]
        inside = np.clip(index, 1, size - 1)
        edge = ((inside - 1 - self.width[:m]) * self.pow2[:m]).astype(np.float64) - 0.5
        x = (self.centre[:m] + edge) * self.step[:m]
        total = np.zeros_like(x)
        for component in range(self.mean.shape[0]):
            total += self.weight[component, :m] * normal.cdf((x - self.mean[component, :m]) / self.scale[component, :m])
        scaled = np.round(np.clip(total, 0.0, 1.0) * (PRECISION - (size - 1) * SYMBOL_FLOOR).astype(np.float64))
        values = scaled.astype(np.int64) + inside * SYMBOL_FLOOR
        return np.where(index >= size, PRECISION, np.where(index <= 0, 0, values))

    def _keep(self, keep: np.ndarray) -> None:
        for name in ("index", "depth", "centre", "width", "pow2", "step", "size"):
            setattr(self, name, getattr(self, name)[keep])
        self.mean, self.scale, self.weight = self.mean[:, keep], self.scale[:, keep], self.weight[:, keep]
        if self.symbols is not None:
            self.symbols = self.symbols[keep]

    def level(self) -> tuple[int, np.ndarray] | None:
        """(how many elements this step decides, their P(bit 0) in 2^24ths), or None when all are done."""
        if self.phase == 0:
            m = self.count
            if m == 0:
                return None
            c = self.width + 1
            c_at, c_next = self._cdf(c, m), self._cdf(c + 1, m)
            self._pending = (c_at, c_next)
            return m, c_next - c_at  # bit 0: the centre symbol
        if self.phase == 1:
            m = self.count
            c_at, c_next = self._pending
            left, right = c_at, PRECISION - c_next
            p_left = np.clip((left * PRECISION + (left + right) // 2) // (left + right), 1, PRECISION - 1)
            return m, p_left  # bit 0: below the centre
        m = int(np.searchsorted(-self.depth, -self.levels_done, side="left"))  # depth > levels_done
        if m == 0:
            return None
        self.count = m
        mid = self.lo[:m] + self.span[:m] // 2
        c_mid = self._cdf(mid, m)
        total = np.maximum(self.c_hi[:m] - self.c_lo[:m], 1)  # 0 only past the alphabet (corrupt input)
        p_left = np.clip(((c_mid - self.c_lo[:m]) * PRECISION + total // 2) // total, 1, PRECISION - 1)
        self._pending = (mid, c_mid)
        return m, p_left

    def truth(self) -> np.ndarray:
        """The encoder's bits of the current step."""
        m, c = self.count, self.width[:self.count] + 1
        if self.phase == 0:
            return self.symbols[:m] != c
        if self.phase == 1:
            return self.symbols[:m] > c
        return self.symbols[:m] >= self._pending[0]

    def decide(self, bits: np.ndarray) -> None:
        """Apply the step's decisions."""
        m = self.count
        if self.phase == 0:
            centre = ~bits
            self.decided[self.index[centre]] = (self.width + 1)[centre]
            keep = bits
            c_at, c_next = self._pending
            self._keep(keep)
            self._pending = (c_at[keep], c_next[keep])
            self.phase, self.count = 1, int(keep.sum())
            return
        if self.phase == 1:
            c = self.width + 1
            span = np.left_shift(np.ones_like(self.depth), self.depth)
            c_at, c_next = self._pending
            self.lo = np.where(bits, c + 1, c - span)
            self.c_lo = np.where(bits, c_next, 0)
            self.c_hi = np.where(bits, PRECISION, c_at)
            self.span = span
            self.phase = 2
            return
        mid, c_mid = self._pending
        self.lo[:m] = np.where(bits, mid, self.lo[:m])
        self.c_lo[:m] = np.where(bits, c_mid, self.c_lo[:m])
        self.c_hi[:m] = np.where(bits, self.c_hi[:m], c_mid)
        self.span[:m] //= 2
        self.levels_done += 1

    def result(self) -> np.ndarray:
        """The decided symbols, by original position (call when :meth:`level` returned None)."""
        if self.phase == 2:
            self.decided[self.index] = self.lo
        return self.decided


def _decision_counts(p_left: np.ndarray) -> np.ndarray:
    return np.stack([p_left, PRECISION - p_left], axis=1)


def _varints(values: np.ndarray) -> bytes:
    return b"".join(_varint_bytes(int(v)) for v in values.tolist())


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


class _Coded(NamedTuple):
    bits: float  # the decisions' code length
    message: bytes | None
    escapes: bytes
    low: bytes
    low_bits: int


def _compiled(mean, scale, weight, step):
    """The compiled coder for these parameters (float32, as the entropy models give them), or None."""
    if not all(t.dtype == torch.float32 for t in (mean, scale, weight, step)):
        return None
    return rangecoder.compiled()


def _plan(module, mean, scale, weight, step, reader: ByteReader | None = None, check: bool = True) -> _Shape:
    """:func:`_check` (where ``check``) and :func:`_shapes`, by ``mixture_coder.cpp`` where ``module`` is given
    (the same numbers: float32 operations in torch's order, then float64)."""
    if module is not None:
        centre, shift, width, status = module.mixture_shapes(mean, scale, weight, step, FINE_SPREAD, COVERAGE, REACH,
                                                             MAX_HALF_WIDTH, MAX_LOW_BITS, float(CENTRE_LIMIT))
        if not int(status[0]):
            return _Shape(centre, shift, width)
    if check:
        _check(mean, scale, weight, step, reader)
    return _shapes(mean, scale, weight, step)


def _code(symbols: Tensor, mean, scale, weight, step, write: bool) -> _Coded:
    module = _compiled(mean, scale, weight, step)
    shape = _plan(module, mean, scale, weight, step, check=write)
    residual = symbols - shape.centre
    u = torch.div(residual, torch.bitwise_left_shift(torch.ones_like(residual), shape.shift), rounding_mode="floor")
    low = residual - u * torch.bitwise_left_shift(torch.ones_like(u), shape.shift)
    symbol = u.clamp(-shape.width - 1, shape.width + 1) + shape.width + 1
    if module is not None:
        bits, message = _decisions_compiled(module, mean, scale, weight, step, shape, symbol, write)
    else:
        bits, message = _decisions_reference(_ordered(mean, scale, weight, step, shape), symbol.numpy(), write)
    escaped = u[u.abs() > shape.width]
    escapes = _varints((escaped.abs() - shape.width[u.abs() > shape.width] - 1).numpy()) if escaped.numel() else b""
    low_bits = int(shape.shift.sum())
    packed = _pack_bits([(low, shape.shift)]) if low_bits else b""
    return _Coded(bits, message, escapes, packed, low_bits)


def _decisions_reference(calls: _Ordered, symbol: np.ndarray, write: bool) -> tuple[float, bytes | None]:
    """(code length in bits, the message or None) of the symbols' decisions, in numpy and constriction."""
    bisection = _Bisection(calls, symbol)
    encoder = rangecoder.Encoder() if write else None
    bits = 0.0
    while (level := bisection.level()) is not None:
        _, p_zero = level
        decision = bisection.truth()
        chosen = np.where(decision, PRECISION - p_zero, p_zero)
        bits += float((PRECISION_BITS - np.log2(chosen.astype(np.float64))).sum())
        if encoder is not None:
            encoder.rows(decision.astype(np.int32), rangecoder.probabilities(_decision_counts(p_zero)))
        bisection.decide(decision)
    return bits, encoder.getvalue() if encoder is not None else None


@lru_cache(maxsize=1)
def _normal_table() -> Tensor:
    return torch.from_numpy(normal.coefficients().copy())


def _compiled_arguments(mean, scale, weight, step, shape: _Shape) -> tuple:
    return (mean, scale, weight, step, shape.centre, shape.shift, shape.width, _normal_table(), normal.LIMIT,
            normal.PIECES_PER_UNIT, SYMBOL_FLOOR, MAX_HALF_WIDTH, MAX_LOW_BITS)


def _decisions_compiled(module, mean, scale, weight, step, shape: _Shape, symbol: Tensor,
                        write: bool) -> tuple[float, bytes | None]:
    """:func:`_decisions_reference` in ``kernels/csrc/mixture_coder.cpp`` (which orders the elements itself):
    the same bits and bytes."""
    words, bits = module.mixture_encode(symbol, *_compiled_arguments(mean, scale, weight, step, shape), write)
    return float(bits), (rangecoder.words_bytes(words) if write else None)


def encode_mixture(out: ByteWriter, symbols: Tensor, mean: Tensor, scale: Tensor, weight: Tensor,
                   step: Tensor) -> CodeLength:
    """Append the call coding int64 ``symbols`` [n] under the mixtures (mean/scale/weight [K, n]
    float32, scale floored, weights summing to 1) on the grid ``step`` [n]; returns its code length."""
    if symbols.shape[0] == 0:
        return CodeLength(0.0, 0.0)
    coded = _code(symbols, mean, scale, weight, step, write=True)
    out.raw(_varint_bytes(len(coded.message))).raw(coded.message)
    out.raw(_varint_bytes(len(coded.escapes))).raw(coded.escapes).raw(coded.low)
    return _length(coded)


def _length(coded: _Coded, message_bytes: int | None = None) -> CodeLength:
    if message_bytes is None:
        message_bytes = 4 * math.ceil((coded.bits / 8 + FLUSH_BYTES) / 4)
    headers = len(_varint_bytes(message_bytes)) + len(_varint_bytes(len(coded.escapes)))
    bits = coded.bits + 8 * len(coded.escapes) + coded.low_bits
    return CodeLength(bits, headers + FLUSH_BYTES + (-coded.low_bits % 8) / 8)


def mixture_code_bits(symbols: Tensor, mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> CodeLength:
    """What :func:`encode_mixture` writes: the decisions' code length under the coder's integer
    probabilities, the escapes' varints, the raw low bits, and the headers and termination."""
    if symbols.shape[0] == 0:
        return CodeLength(0.0, 0.0)
    return _length(_code(symbols, mean, scale, weight, step, write=False))


def _decode_reference(calls: _Ordered, message, reader: ByteReader) -> np.ndarray:
    """The symbols (0 .. 2W + 2, by original position) of a call's decisions, in numpy and constriction."""
    decoder = rangecoder.Decoder(message, reader)
    bisection = _Bisection(calls)
    while (level := bisection.level()) is not None:
        _, p_zero = level
        bisection.decide(decoder.rows(rangecoder.probabilities(_decision_counts(p_zero))) == 1)
    decoder.finish()
    return bisection.result()


def _decode_compiled(module, mean, scale, weight, step, shape: _Shape, message, reader: ByteReader) -> np.ndarray:
    """:func:`_decode_reference` in ``kernels/csrc/mixture_coder.cpp``: the same symbols, the same refusals."""
    words = torch.from_numpy(rangecoder.message_words(message, reader).view(np.int32))
    decided, status = module.mixture_decode(words, *_compiled_arguments(mean, scale, weight, step, shape))
    state = int(status[0])
    if state == 1:
        raise reader.error("arithmetic-coded message is corrupt (a code point outside both intervals of a decision)")
    if state == 2:
        raise reader.error("arithmetic-coded message: data left after the last symbol")
    return decided.numpy()


def decode_mixture(reader: ByteReader, mean: Tensor, scale: Tensor, weight: Tensor, step: Tensor) -> Tensor:
    """The ``n`` symbols (int64) of a call written by :func:`encode_mixture` with the same parameters."""
    n = mean.shape[1]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    module = _compiled(mean, scale, weight, step)
    shape = _plan(module, mean, scale, weight, step, reader)
    size = _read_varint(reader, "message byte count")
    message = reader.take(size, "arithmetic-coded message")
    if module is not None:
        decided = _decode_compiled(module, mean, scale, weight, step, shape, message, reader)
    else:
        decided = _decode_reference(_ordered(mean, scale, weight, step, shape), message, reader)
    u = torch.from_numpy(decided) - shape.width - 1
    if (u.abs() > shape.width + 1).any():  # a decision into an empty part of an alphabet
        raise reader.error("a decoded symbol lies outside its alphabet")
    escaped = u.abs() > shape.width
    escape_size = _read_varint(reader, "escape byte count")
    count = int(escaped.sum())
    if escape_size > count * MAX_ESCAPE_BYTES:
        raise reader.error(f"{escape_size} escape bytes for {count} escaped values")
    excess = _read_varints(reader, bytes(reader.take(escape_size, "escapes")), count)
    if excess and max(excess) >= 1 << 40:
        raise reader.error("an escaped value is out of range")
    if excess:
        u[escaped] = torch.sign(u[escaped]) * (torch.tensor(excess, dtype=torch.int64) + shape.width[escaped] + 1)
    low_bits = int(shape.shift.sum())
    low = torch.zeros(n, dtype=torch.int64)
    if low_bits:
        data = reader.take((low_bits + 7) // 8, "raw low bits")
        if not _padding_is_zero(data, low_bits):
            raise reader.error("raw low bits: non-zero padding")
        low = _field_values(data, 0, shape.shift)
    if (u.abs() >= 1 << 40).any():
        raise reader.error("a decoded value is out of range")
    out = shape.centre + u * torch.bitwise_left_shift(torch.ones_like(u), shape.shift) + low
    if (out.abs() >= 1 << 40).any():
        raise reader.error("a decoded value is out of range")
    return out
