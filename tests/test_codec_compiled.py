"""The compiled Gaussian-stream coder (predictgs/kernels/csrc/gaussian_coder.cpp) against the references it
replaces: constriction's range coder (the same words, and reading constriction's words), and the PyTorch plan,
symbols and decoding of predictgs/codec/arithmetic.py (the same numbers bit for bit, the same bytes, the same
errors). The rest of the test suite runs the codec with whichever backend is available (compiled here)."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch

import predictgs.codec.arithmetic as ac
from predictgs import kernels
from predictgs.codec import rangecoder
from predictgs.codec.container import ByteReader, ByteWriter
from predictgs.errors import BitstreamError
from predictgs.methods import method_class
from predictgs.methods.synthetic import random_hac
from predictgs.pipeline.codec import decode_model, encode_model
from test_arithmetic import gaussian_stream

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the compiled CPU kernels cannot be built here")

PRECISION = rangecoder.PRECISION


def random_intervals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(below, above) of n symbols' intervals of 2^24, of every size from 1 to the whole range (small
    probabilities and top or bottom intervals drive the coder through its carry-pending situations)."""
    rng = random.Random(seed)
    below, above = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for i in range(n):
        kind = rng.random()
        width = rng.choice([1, 2, 16, 256, 1 << 12, 1 << 16, 1 << 20, PRECISION])
        if kind < 0.1:  # the top of the range
            a = PRECISION - rng.randint(1, width)
        elif kind < 0.2:  # the bottom
            a = 0
        elif kind < 0.3:  # around the middle
            a = (PRECISION >> 1) - rng.randint(1, 8)
        else:
            a = rng.randint(0, PRECISION - 1)
        b = min(PRECISION, a + rng.randint(1, width))
        below[i], above[i] = a, b
    return below, above


def compiled_words(table: torch.Tensor, at: torch.Tensor) -> bytes:
    """The compiled range encoder's message (the stream's little-endian words)."""
    return rangecoder.words_bytes(kernels.load().range_encode(table, at))


def constriction_words(below: np.ndarray, above: np.ndarray) -> bytes:
    encoder = rangecoder.Encoder()
    weights, symbols = rangecoder.interval_rows(below, above)
    encoder.rows(symbols, weights)
    return encoder.getvalue()


@pytest.mark.parametrize("n, seed", [(0, 0), (1, 1), (2, 2), (7, 3), (1000, 4), (60_000, 5)])
def test_range_encoder_writes_constrictions_words(n, seed):
    below, above = random_intervals(n, seed)
    table = torch.from_numpy(np.stack([below, above], axis=1).reshape(-1).astype(np.int32))
    at = torch.arange(0, 2 * n, 2, dtype=torch.int64)
    assert compiled_words(table, at) == constriction_words(below, above)


@pytest.mark.parametrize("sequence", ["top", "middle"])
def test_range_encoder_ends_in_a_pending_carry_as_constriction_does(sequence):
    """Sequences that leave the coder with held-back words at the end (the seal writes them)."""
    n = 500
    if sequence == "top":
        below = np.full(n, PRECISION - 3, dtype=np.int64)
        above = np.full(n, PRECISION, dtype=np.int64)
    else:
        rng = np.random.default_rng(0)
        below = (PRECISION >> 1) - rng.integers(1, 5, n)
        above = below + 8
    table = torch.from_numpy(np.stack([below, above], axis=1).reshape(-1).astype(np.int32))
    at = torch.arange(0, 2 * n, 2, dtype=torch.int64)
    assert compiled_words(table, at) == constriction_words(below, above)


def random_rows(rows: int, length: int, seed: int) -> np.ndarray:
    """Integer CDF rows [rows, length]: 0 first, 2^24 last, every count >= 1, some very peaked."""
    rng = np.random.default_rng(seed)
    weights = rng.exponential(size=(rows, length - 1)) ** rng.uniform(0.5, 8, size=(rows, 1))
    counts = np.floor(weights / weights.sum(1, keepdims=True) * (PRECISION - (length - 1))).astype(np.int64) + 1
    counts[:, -1] += PRECISION - counts.sum(1)
    assert (counts >= 1).all()
    return np.concatenate([np.zeros((rows, 1), dtype=np.int64), np.cumsum(counts, 1)], axis=1)


@pytest.mark.parametrize("length", [3, 6, 20, 133])
def test_range_decoder_reads_constrictions_messages(length):
    rows = random_rows(64, length, seed=length)
    rng = np.random.default_rng(length)
    n = 20_000
    which = rng.integers(0, len(rows), n)
    cdf = rows[which]
    # symbols drawn from their rows' distributions
    u = rng.integers(0, PRECISION, n)
    symbols = np.array([np.searchsorted(c, x, side="right") - 1 for c, x in zip(cdf, u)], dtype=np.int64)
    encoder = rangecoder.Encoder()
    encoder.rows(symbols.astype(np.int32), rangecoder.probabilities(np.diff(cdf, axis=1)))
    data = encoder.getvalue()
    table = torch.from_numpy(rows.reshape(-1).astype(np.int32))
    starts = torch.from_numpy(which * length)
    decoded, edges = rangecoder.decode_rows(data, ByteReader(data, "m"), table, starts,
                                            torch.full((n,), length, dtype=torch.int64))
    assert torch.equal(decoded, torch.from_numpy(symbols))
    assert edges == int(((symbols == 0) | (symbols == length - 2)).sum())
    # and the compiled encoder writes the same message
    at = torch.from_numpy(which * length + symbols)
    assert compiled_words(table, at) == data
    # a message with a word more, a word less or a changed word: the same outcome as constriction's reader
    weights = rangecoder.probabilities(np.diff(cdf, axis=1))
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x5A
    for bad in (data + data[:4], data[:-4], bytes(changed)):
        outcome = []
        for compiled in (True, False):
            reader = ByteReader(bad, "m")
            try:
                if compiled:
                    got, _ = rangecoder.decode_rows(bad, reader, table, starts,
                                                    torch.full((n,), length, dtype=torch.int64))
                else:
                    decoder = rangecoder.Decoder(bad, reader)
                    got = torch.from_numpy(decoder.rows(weights))
                    decoder.finish()
                outcome.append(got.tolist())
            except BitstreamError:
                outcome.append("error")
        assert outcome[0] == outcome[1]


def streams():
    """Gaussian streams of every kind the coder meets (see tests/test_arithmetic.py)."""
    yield "narrow", gaussian_stream(5000, 0.05, seed=1)
    yield "unit", gaussian_stream(5000, 1.0, outliers=0.01, seed=2)
    yield "wide", gaussian_stream(5000, 50.0, outliers=0.02, outlier_steps=100_000, seed=3)
    yield "mixed", tuple(torch.cat(parts) for parts in zip(*(gaussian_stream(3000, s, outliers=0.01, seed=s_i)
                                                              for s_i, s in enumerate([0.01, 0.3, 4.0, 300.0, 1e7]))))
    symbols, mean, scale, step = gaussian_stream(3000, 2.0, seed=4)
    yield "huge values", (symbols * 100_000, mean, scale, step)
    yield "one element", gaussian_stream(1, 1.0, seed=5)
    symbols, mean, scale, step = gaussian_stream(70_000, 1.0, seed=6)
    yield "blocks split", (symbols, mean, scale, step)
    # means on the half grid (round half to even) and far off (clamped centres)
    symbols, mean, scale, step = gaussian_stream(2000, 1.0, seed=7)
    step = torch.full_like(step, 0.5)
    mean = torch.round(mean * 4) / 4
    yield "half-grid means", (torch.round(mean / step).to(torch.int64), mean, scale, step)
    yield "clamped centres", (symbols, mean * 1e12, scale, step)


def backend(compiled: bool):
    """The codec's compiled twin (where built) or, inside ``kernels.disabled()``, the PyTorch/constriction path."""
    return contextlib.nullcontext() if compiled else kernels.disabled()


def encode_with(symbols, mean, scale, step, compiled: bool):
    out = ByteWriter()
    with backend(compiled):
        length = ac.encode_gaussian(out, symbols, mean, scale, step)
    return out.getvalue(), length


def assert_same_fields(got, want):
    """Every field of two named tuples equal (tensors: the same dtype and values)."""
    for field in want._fields:
        a, b = getattr(got, field), getattr(want, field)
        if isinstance(b, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), field
        else:
            assert a == b, field


@pytest.mark.parametrize("name, stream", list(streams()), ids=[name for name, _ in streams()])
def test_plan_and_symbols_are_the_references_bit_for_bit(name, stream):
    symbols, mean, scale, step = stream
    plan = ac._plan(mean, scale, step)
    coded = ac._code(symbols, plan)
    with kernels.disabled():
        reference = ac._plan(mean, scale, step)
        coded_reference = ac._code(symbols, reference)
    assert_same_fields(plan, reference)
    assert_same_fields(coded, coded_reference)


@pytest.mark.parametrize("name, stream", list(streams()), ids=[name for name, _ in streams()])
def test_streams_are_the_same_bytes_and_decode_both_ways(name, stream):
    symbols, mean, scale, step = stream
    data, length = encode_with(symbols, mean, scale, step, compiled=True)
    reference, reference_length = encode_with(symbols, mean, scale, step, compiled=False)
    assert data == reference
    assert length == reference_length
    assert length == ac.gaussian_code_bits(symbols, mean, scale, step)
    for compiled in (True, False):
        reader = ByteReader(data, "stream")
        with backend(compiled):
            decoded = ac.decode_gaussian(reader, mean, scale, step)
        reader.expect_end()
        assert torch.equal(decoded, symbols)


def test_out_of_range_symbols_are_refused_by_both():
    symbols, mean, scale, step = gaussian_stream(100, 1.0, seed=8)
    symbols[17] = ac.VALUE_LIMIT
    for compiled in (True, False):
        with pytest.raises(BitstreamError, match="out of the int32 range"):
            encode_with(symbols, mean, scale, step, compiled)


def assert_corruptions_agree(data: bytes, decode, count: int, seed: int) -> None:
    """``count`` random byte edits (and truncations) of ``data``: ``decode(reader)`` on the compiled path and on
    the reference gives the same values or both refuse; both outcomes must occur."""
    rng = random.Random(seed)
    outcomes = set()
    for _ in range(count):
        corrupt = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        if rng.random() < 0.2:
            corrupt = corrupt[:rng.randrange(len(corrupt))]
        results = []
        for compiled in (True, False):
            reader = ByteReader(bytes(corrupt), "stream")
            try:
                with backend(compiled):
                    values = decode(reader)
                results.append(("ok", values.tolist(), reader.offset))
            except BitstreamError:
                results.append(("error",))
        assert results[0] == results[1]
        outcomes.add(results[0][0])
    assert outcomes == {"ok", "error"}  # both kinds were met


def test_corrupt_streams_give_the_references_result():
    """Random byte edits of a stream: both decoders give the same symbols or both refuse the stream."""
    symbols, mean, scale, step = gaussian_stream(3000, 3.0, outliers=0.02, outlier_steps=5000, seed=9)
    data, _ = encode_with(symbols, mean, scale, step, compiled=True)
    assert_corruptions_agree(data, lambda reader: ac.decode_gaussian(reader, mean, scale, step), 300, seed=0)


@pytest.mark.parametrize("seed", range(4))
def test_bit_fields_are_the_references_bytes_and_values(seed):
    """The raw bit fields after the symbols (escape codes, low bits): packed and read back by the compiled
    pack_bits / unpack_fields as by the PyTorch reference, widths 0 to 63, with and without unary codes."""
    gen = torch.Generator().manual_seed(seed)
    fields = []
    for _ in range(3):
        n = int(torch.randint(0, 400, (1,), generator=gen))
        widths = torch.randint(0, 64, (n,), generator=gen) * (torch.rand(n, generator=gen) < 0.8)
        values = torch.randint(0, 1 << 62, (n,), generator=gen) & ((torch.ones(n, dtype=torch.int64) << widths) - 1)
        fields.append((values, widths))
    ones = torch.randint(1, 30, (int(torch.randint(0, 50, (1,), generator=gen)),), generator=gen) if seed % 2 else None
    data = ac._pack_bits(fields, ones)
    with kernels.disabled():
        assert ac._pack_bits(fields, ones) == data
    start = 0 if ones is None else int(ones.sum())
    total = start + sum(int(w.sum()) for _, w in fields)
    assert len(data) == (total + 7) // 8 and ac._padding_is_zero(data, total)
    for compiled in (True, False):
        at = start
        with backend(compiled):
            for values, widths in fields:
                assert torch.equal(ac._field_values(data, at, widths), values)
                at += int(widths.sum())
    if total % 8:
        assert not ac._padding_is_zero(data[:-1] + bytes([data[-1] | 1]), total)


def bernoulli_bits(n: int, p_one: float, seed: int) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) < p_one


@pytest.mark.parametrize("n, p_one", [(0, 0.5), (1, 0.0), (1, 1.0), (1000, 0.5), (50_000, 0.02), (50_000, 0.999),
                                      (200_000, 0.37)])
def test_bernoulli_streams_are_the_same_bytes_and_decode_both_ways(n, p_one):
    """The hash tables' and the masks' streams: the compiled fixed-distribution coder writes constriction's
    bytes (all-0 and all-1 streams, whose other symbol has the least count, included) and both read both."""
    bits = bernoulli_bits(n, p_one, seed=n)
    streams = []
    for compiled in (True, False):
        with backend(compiled):
            streams.append(ac.encode_bernoulli(bits))
    assert streams[0] == streams[1]
    for compiled in (True, False):
        reader = ByteReader(streams[0], "stream")
        with backend(compiled):
            decoded = ac.decode_bernoulli(reader, n)
        assert reader.offset == len(streams[0])
        assert decoded.dtype == torch.bool and torch.equal(decoded, bits)


def test_fixed_distributions_of_several_symbols_match_constriction():
    counts = np.array([1, 5_000_000, 256, PRECISION - 5_000_257], dtype=np.int64)
    symbols = torch.from_numpy(np.random.default_rng(0).choice(4, 20_000, p=counts / PRECISION).astype(np.uint8))
    data = rangecoder.encode_fixed(symbols, counts)
    with kernels.disabled():
        assert rangecoder.encode_fixed(symbols, counts) == data
    for compiled in (True, False):
        with backend(compiled):
            decoded = rangecoder.decode_fixed(data, ByteReader(data, "x"), symbols.numel(), counts)
        assert torch.equal(decoded, symbols)
    with pytest.raises(RuntimeError, match="outside the distribution"):
        rangecoder.encode_fixed(torch.full((3,), 4, dtype=torch.uint8), counts)


def test_corrupt_bernoulli_streams_give_the_references_result():
    data = ac.encode_bernoulli(bernoulli_bits(5000, 0.2, seed=1))
    assert_corruptions_agree(data, lambda reader: ac.decode_bernoulli(reader, 5000), 300, seed=1)


@pytest.mark.parametrize("method", ["hac", "predictgs", "hacpp"])
def test_whole_files_are_the_same_bytes(method):
    cls = method_class(method)
    model = random_hac(1500, seed=3, config=cls.config_class(), method_class=cls, outliers=0.01, outlier_steps=300)
    data = encode_model(model).data
    with kernels.disabled():
        reference = encode_model(model).data
    assert data == reference
    decoded = decode_model(data).model.state_dict()
    with kernels.disabled():
        decoded_reference = decode_model(data).model.state_dict()
    assert decoded.keys() == decoded_reference.keys()
    assert all(torch.equal(decoded[k], decoded_reference[k]) for k in decoded)
