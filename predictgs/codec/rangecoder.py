"""The one entropy coder of the bitstream: constriction's range coder (a prebuilt wheel, no compiler)
driven with integer probabilities that it reproduces exactly.

Every model handed to the coder is an integer distribution: counts ``c_i >= 1`` with ``sum c_i = 2^24``
(``PRECISION``). constriction's categorical model (``perfect=False``) turns float weights ``p_i`` of n
symbols into the left cumulatives ``floor(P_i (2^24 - n) / sum p) + i`` (``P_i`` the running float sum).
Given ``p_i = c_i - 1`` (exact in float32: at most 2^24), ``sum p = 2^24 - n``, the scale is exactly 1
and every sum is an exact integer, so the coder uses exactly ``c_i``: the code length of a symbol is
``-log2(c_i / 2^24)``, which the entropy models compute themselves (coder-exact ``bits()``), and the
encoder and decoder can only disagree if their counts do (they come from integers here).

Why this coder (measured on 1.5M symbols of 19-symbol rows, one thread, 2-core Xeon VM): range coder
27 ns per symbol encoding, 41 ns decoding, 2-3 bytes per message above the ideal code length; the ANS
coder of the same package is as fast but ~4.5 bytes per message. It needs no compiler (torchac, the
previous coder, built a C++ extension on every new machine). The stream is a sequence of 32-bit words,
stored little endian; a message of n words is 4 n bytes.

The encoder needs only each symbol's interval ``[below, above)``: :func:`interval_rows` gives 3-symbol
rows with the same interval (identical coder state, identical bytes: tests/test_arithmetic.py), so that
no full row is gathered for encoding.
"""

from __future__ import annotations

import numpy as np

import constriction

from .container import ByteReader

PRECISION_BITS = 24
PRECISION = 1 << PRECISION_BITS  # total of every integer distribution (constriction's default precision)
# Least count of a symbol in the models built from continuous distributions (Gaussian tables, mixtures):
# 2^-16, as torchac's 16-bit tables had. A 2^-24 floor made every value predicted badly but inside the
# alphabet cost up to 24 bits instead of 16 (measured: +9% on a briefly trained HAC model's feature
# stream); values far outside are escapes, whose cost the escape levels set.
SYMBOL_FLOOR = 1 << 8
FLUSH_BYTES = 2.5  # mean bytes per message above the ideal code length (measured 2.1-2.9)
MAX_MESSAGE_BYTES = 1 << 34


def _model():
    return constriction.stream.model.Categorical(perfect=False)


def probabilities(counts: np.ndarray) -> np.ndarray:
    """Integer counts (each >= 1, rows summing to 2^24) -> the float32 weights that make constriction
    use exactly those counts (see the module docstring)."""
    return np.ascontiguousarray(counts - 1, dtype=np.float32)


def interval_rows(below: np.ndarray, above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 weights [n, 3], int32 symbols [n]) of 3-symbol distributions in which the coded symbol
    has exactly the interval [below, above) of 2^24: the encoder then writes the same bytes as with the
    full rows. A first symbol (below 0) is coded as symbol 0 of (above, 1, rest), a last one (above
    2^24) as symbol 2 of (below - 1, 1, rest), the others as symbol 1 of (below, count, rest); rows of
    at least 4 symbols guarantee every count >= 1."""
    below = below.astype(np.int64)
    above = above.astype(np.int64)
    first, last = below == 0, above == PRECISION
    a = np.where(first, above, np.where(last, below - 1, below))
    b = np.where(first | last, 1, above - below)
    c = PRECISION - a - b
    symbols = np.where(first, 0, np.where(last, 2, 1)).astype(np.int32)
    return probabilities(np.stack([a, b, c], axis=1)), symbols


def message_words(data: bytes | memoryview, reader: ByteReader) -> np.ndarray:
    """A message's 32-bit words (little endian in the stream) as native uint32; refused unless whole words."""
    if len(data) % 4:
        raise reader.error(f"an arithmetic-coded message of {len(data)} bytes is not a whole number of words")
    return np.frombuffer(bytes(data), dtype="<u4").astype(np.uint32)


def words_bytes(words) -> bytes:
    """The compiled coders' message (an int32 tensor of its words) as stream bytes, little endian."""
    return words.numpy().view(np.uint32).astype("<u4").tobytes()


def compiled():
    """The compiled coder (``predictgs/kernels/csrc/gaussian_coder.cpp``: this coder's algorithm, the same words,
    and the Gaussian streams' planning), or None where the kernels cannot be built or are disabled
    (``PREDICTGS_NO_COMPILED=1``, ``predictgs.kernels.disabled()``): then constriction codes them, slower."""
    from .. import kernels

    return kernels.load()


def encode_intervals(tables, at) -> bytes:
    """One message of the symbols whose intervals are ``[full[at], full[at + 1])`` of the flat integer CDF
    tables (``tables.full``, int32; ``tables.intervals`` / ``tables.interval_symbols`` hold each entry's
    3-symbol row for constriction)."""
    module = compiled()
    if module is not None:
        return words_bytes(module.range_encode(tables.full, at))
    encoder = Encoder()
    encoder.rows(tables.interval_symbols.index_select(0, at).numpy(), tables.intervals.index_select(0, at).numpy())
    return encoder.getvalue()


def decode_rows(data: bytes | memoryview, reader: ByteReader, table, starts, lengths):
    """(symbols (int64 tensor), the count of symbols that are the first or the last of their row) of a
    message written by :func:`encode_intervals`, symbol i read from the integer CDF row
    ``table[starts[i] : starts[i] + lengths[i]]``; the message must end with the last one. Compiled coder
    only (see :func:`compiled`)."""
    import torch

    words = torch.from_numpy(message_words(data, reader).view(np.int32))
    symbols, status = compiled().range_decode(words, table, starts, lengths)
    state, edges = status.tolist()
    _check_decoded(state, reader)
    return symbols, edges


def _check_decoded(state: int, reader: ByteReader) -> None:
    """The compiled decoders' status: 0 ok, 1 a code point outside every interval, 2 data left over."""
    if state == 1:
        raise reader.error("arithmetic-coded message is corrupt (a code point outside every symbol's interval)")
    if state == 2:
        raise reader.error("arithmetic-coded message: data left after the last symbol")


def _fixed_cdf(counts: np.ndarray):
    import torch

    return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))


def encode_fixed(symbols, counts: np.ndarray) -> bytes:
    """One message of ``symbols`` (a uint8 tensor) all under the integer distribution ``counts`` [L]: the
    bytes of :meth:`Encoder.fixed`, by the compiled coder where it is built."""
    module = compiled()
    if module is not None:
        return words_bytes(module.range_encode_fixed(_fixed_cdf(counts), symbols.contiguous()))
    encoder = Encoder()
    encoder.fixed(symbols.numpy(), counts)
    return encoder.getvalue()


def decode_fixed(data: bytes | memoryview, reader: ByteReader, count: int, counts: np.ndarray):
    """The ``count`` symbols (a uint8 tensor) of a message written by :func:`encode_fixed`; the message must
    end with the last one."""
    import torch

    module = compiled()
    if module is None:
        decoder = Decoder(data, reader)
        values = decoder.fixed(count, counts)
        decoder.finish()
        return torch.from_numpy(values.astype(np.uint8))
    words = torch.from_numpy(message_words(data, reader).view(np.int32))
    symbols, status = module.range_decode_fixed(words, _fixed_cdf(counts), count)
    _check_decoded(int(status[0]), reader)
    return symbols


class Encoder:
    """One message: symbols under per-symbol rows or one fixed distribution, in order."""

    def __init__(self):
        self.coder = constriction.stream.queue.RangeEncoder()

    def rows(self, symbols: np.ndarray, weights: np.ndarray) -> None:
        """Symbols [n] (int) under per-symbol weights [n, L] from :func:`probabilities`."""
        if len(symbols):
            self.coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _model(), weights)

    def fixed(self, symbols: np.ndarray, counts: np.ndarray) -> None:
        """Symbols [n] under one integer distribution ``counts`` [L]."""
        if len(symbols):
            model = constriction.stream.model.Categorical(probabilities(counts).astype(np.float64), perfect=False)
            self.coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), model)

    def getvalue(self) -> bytes:
        return self.coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """The symbols of a message written by :class:`Encoder`, read with the same distributions."""

    def __init__(self, data: bytes | memoryview, reader: ByteReader):
        self.reader = reader
        self.coder = constriction.stream.queue.RangeDecoder(message_words(data, reader))

    def rows(self, weights: np.ndarray) -> np.ndarray:
        if not len(weights):
            return np.zeros(0, dtype=np.int64)
        try:
            return self.coder.decode(_model(), weights).astype(np.int64)
        except (ValueError, RuntimeError, AssertionError) as err:
            raise self.reader.error(f"arithmetic-coded message is corrupt ({err})") from None

    def finish(self) -> None:
        """After the last symbol: the message must hold no more data (a decoder that was told to read
        fewer symbols than were coded, from a crafted header or section, is caught here)."""
        if not self.coder.maybe_exhausted():
            raise self.reader.error("arithmetic-coded message: data left after the last symbol")

    def fixed(self, count: int, counts: np.ndarray) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        model = constriction.stream.model.Categorical(probabilities(counts).astype(np.float64), perfect=False)
        try:
            return self.coder.decode(model, count).astype(np.int64)
        except (ValueError, RuntimeError, AssertionError) as err:
            raise self.reader.error(f"arithmetic-coded message is corrupt ({err})") from None
