"""The Gaussian-stream coder on its own: exact round trips (outliers, escapes at the alphabet's edges,
coarse bins, block splits, empty streams), the coder-exact size estimate, refusal of hostile blocks,
and the exactness of the shared CDF tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import predictgs.codec.arithmetic as ac
from predictgs.codec.arithmetic import (
    CodeLength,
    decode_gaussian,
    encode_gaussian,
    gaussian_code_bits,
    spread_order,
)
from predictgs.codec import normal
from predictgs.codec.container import ByteReader, ByteWriter
from predictgs.errors import BitstreamError

SPREADS = [0.05, 0.2, 1.0, 5.0, 50.0]  # sigma / Q


def gaussian_stream(n: int, spread: float, outliers: float = 0.0, outlier_steps: int = 300, seed: int = 0,
                    jitter: float = 0.5):
    """(int64 symbols, float32 mean, scale, step): symbols drawn from per-element Gaussians with
    sigma / Q around ``spread`` (log-normal jitter), a share ``outliers`` moved by +-outlier_steps."""
    g = torch.Generator().manual_seed(seed)
    step = 0.01 * (1 + torch.rand(n, generator=g))
    scale = step * spread * torch.exp(jitter * torch.randn(n, generator=g))
    mean = 3 * torch.randn(n, generator=g)
    symbols = torch.round((mean + scale * torch.randn(n, generator=g)) / step).to(torch.int64)
    hit = torch.rand(n, generator=g) < outliers
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1, 1)
    symbols = symbols + hit * sign * outlier_steps
    return symbols, mean, scale.float(), step.float()


def encode(symbols, mean, scale, step) -> tuple[bytes, CodeLength]:
    out = ByteWriter()
    length = encode_gaussian(out, symbols, mean, scale, step)
    return out.getvalue(), length


def decode(data: bytes, mean, scale, step) -> torch.Tensor:
    reader = ByteReader(data, "stream")
    values = decode_gaussian(reader, mean, scale, step)
    reader.expect_end()
    return values


def round_trip(symbols, mean, scale, step) -> bytes:
    data, _ = encode(symbols, mean, scale, step)
    decoded = decode(data, mean, scale, step)
    assert decoded.dtype == torch.int64
    assert torch.equal(decoded, symbols)
    return data


# -- round trips ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("outliers", [0.0, 0.001, 0.05])
def test_round_trip_with_and_without_outliers(spread, outliers):
    round_trip(*gaussian_stream(20000, spread, outliers, seed=int(spread * 100)))


def test_round_trip_across_all_spreads_and_extreme_values():
    """Spreads from far below the grid to far above it (coarse bins up to the largest shift), means up
    to the clamp, symbols up to the int32 limit."""
    n = 4000
    g = torch.Generator().manual_seed(1)
    step = torch.full((n,), 0.5)
    scale = step * torch.logspace(-12, 12, n, dtype=torch.float64).float()
    mean = torch.randn(n, generator=g) * 10
    symbols = torch.round(mean / step).to(torch.int64) + torch.randint(-3, 4, (n,), generator=g)
    symbols[::7] = torch.randint(-(2**31) + 1, 2**31 - 1, symbols[::7].shape, generator=g)
    symbols[1] = 2**31 - 1
    symbols[2] = -(2**31) + 1
    mean[3] = 1e30  # clamped centre
    mean[4] = -1e30
    round_trip(symbols, mean, scale, step)


def test_escapes_at_the_edges_of_the_alphabet():
    """For each width class: values on the last bin of the alphabet (coded), one bin beyond (escaped,
    excess 0), and far beyond, on both sides, at fine and coarse spreads."""
    for index in range(0, ac.NUM_SPREADS, 3):
        sigma = ac._grid_spread(index)
        k = ac.CLASS_WIDTH[ac._CLASS_OF_SPREAD[index]]
        for shift in (0, 5) if index >= ac.NUM_SPREADS - ac.SPREADS_PER_OCTAVE else (0,):
            width = 2**shift
            n = 8
            step = torch.ones(n)
            scale = torch.full((n,), sigma * width)
            mean = torch.full((n,), 0.25)
            centre = round(0.25 - (width - 1) / 2)
            bins = torch.tensor([k, k + 1, -k, -k - 1, 1000, -1000, k + 2, 0])
            symbols = centre + bins * width + torch.arange(n) % width
            round_trip(symbols.to(torch.int64), mean, scale, step)


def test_blocks_are_split_at_the_symbol_limit():
    n = ac.MAX_BLOCK_SYMBOLS * 2 + 17
    symbols, mean, scale, step = gaussian_stream(n, 1.0, 0.001, jitter=0.0)
    plan = ac._plan(mean, scale, step)
    assert len(plan.blocks) >= 3
    round_trip(symbols, mean, scale, step)


def test_empty_streams():
    empty_f, empty_i = torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    data, length = encode(empty_i, empty_f, empty_f, empty_f)
    assert data == b"" and length.total_bytes == 0
    assert decode(b"", empty_f, empty_f, empty_f).shape == (0,)
    assert gaussian_code_bits(empty_i, empty_f, empty_f, empty_f) == (0.0, 0.0)


def test_decoding_does_not_depend_on_the_thread_count():
    symbols, mean, scale, step = gaussian_stream(30000, 2.0, 0.01)
    data, _ = encode(symbols, mean, scale, step)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(decode(data, mean, scale, step), symbols)
        assert encode(symbols, mean, scale, step)[0] == data
    finally:
        torch.set_num_threads(threads)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.floats(-8, 6), st.floats(0, 0.3), st.integers(0, 2**16))
def test_round_trip_property(n, log_spread, outliers, seed):
    round_trip(*gaussian_stream(n, 2.0**log_spread, outliers, outlier_steps=1 + seed % 5000, seed=seed))


def test_coding_order_groups_by_width_class():
    _, _, scale, step = gaussian_stream(5000, 1.0, jitter=2.0)
    order = spread_order(scale, step)
    spread, _ = ac._spread_cells(scale, step)
    classes = ac._CLASS_OF_SPREAD[spread][order]
    assert (classes[1:] >= classes[:-1]).all()
    assert torch.equal(torch.sort(order).values, torch.arange(5000))


# -- the size estimate ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("outliers", [0.0, 0.001, 0.03])
def test_coded_size_within_1_percent_of_the_estimate(spread, outliers):
    """Streams of 2 kB or more: the coded bytes within 1% of bits / 8 + overhead."""
    n = 4000
    while True:
        stream = gaussian_stream(n, spread, outliers, seed=7)
        data, returned = encode(*stream)
        if len(data) >= 2000:
            break
        n *= 2
    estimate = gaussian_code_bits(*stream)
    assert abs(returned.bits - estimate.bits) < 1e-6 * estimate.bits
    assert abs(len(data) - estimate.total_bytes) <= 0.01 * len(data), (len(data), estimate)


def test_the_estimate_charges_the_coders_probabilities():
    """bits is the ideal code length under the coder's integer CDFs: within the coder's termination
    and precision of the arithmetic-coded part alone (a stream without escapes or raw bits)."""
    symbols, mean, scale, step = gaussian_stream(50000, 0.7, jitter=0.2)
    data, _ = encode(symbols, mean, scale, step)
    estimate = gaussian_code_bits(symbols, mean, scale, step)
    blocks = len(ac._plan(mean, scale, step).blocks)
    assert abs(len(data) - estimate.total_bytes) < 2 * blocks + 0.001 * len(data)


def test_the_grid_costs_little_against_exact_gaussians():
    """The shared tables against each element's own discretised Gaussian (floored at 2^-16, as the
    coder must): at most 0.01 bit more per element, 0.5% from sigma / Q = 0.05 up, for values that
    follow the model."""
    n = 40000
    for spread in SPREADS + [0.01, 4.0]:
        symbols, mean, scale, step = gaussian_stream(n, spread, seed=3)
        x, s, q, mu = symbols.double() * step.double(), scale.double(), step.double(), mean.double()
        mass = torch.special.ndtr((x + q / 2 - mu) / s) - torch.special.ndtr((x - q / 2 - mu) / s)
        exact = float(-torch.log2(mass.clamp(min=2.0**-16)).sum())
        bits = gaussian_code_bits(symbols, mean, scale, step).bits
        assert bits <= exact + 0.01 * n, spread
        assert spread < 0.05 or bits <= 1.005 * exact, spread


def test_outliers_cost_a_bounded_number_of_bits():
    """An outlier costs its escape symbol and its varint, not a wider table for its block."""
    symbols, mean, scale, step = gaussian_stream(50000, 1.0, seed=5)
    clean = gaussian_code_bits(symbols, mean, scale, step).total_bytes
    moved = symbols.clone()
    moved[::1000] += 300  # 50 outliers
    dirty = gaussian_code_bits(moved, mean, scale, step).total_bytes
    assert 0 < (dirty - clean) * 8 / 50 <= 40


# -- the tables ----------------------------------------------------------------------------------------
def test_tables_do_not_depend_on_the_evaluation_shape():
    """The integer tables from one batched float64 evaluation equal those evaluated one value at a time
    (codec/normal.py's CDF, whose value does not depend on its batch), and are strictly increasing from 0
    to 2^24."""
    for cls in range(len(ac.CLASSES)):
        batched = ac._float_table(cls)
        k = ac.CLASS_WIDTH[cls]
        edges = torch.arange(-k, k + 2, dtype=torch.float64) - 0.5
        spreads = [i for i, c in enumerate(ac.SPREAD_CLASS) if ac.CLASSES.index(c) == cls]
        for row in range(0, batched.shape[0], 37):
            sigma = ac._grid_spread(spreads[row // ac.OFFSETS])
            offset = (row % ac.OFFSETS + 0.5) / ac.OFFSETS - 0.5
            single = [float(normal.cdf(np.array([(e - offset) / sigma]))[0]) for e in edges.tolist()]
            got = ac._integer_cdf_full(batched[row:row + 1])
            want = ac._integer_cdf_full(torch.tensor([[0.0] + single + [1.0]], dtype=torch.float64))
            assert torch.equal(got, want), (cls, row)
        tables = ac._tables()
        for level in range(len(ac.ESCAPE_LEVELS)):
            first = int(tables.base[level, cls])
            full = tables.full[first:first + batched.numel()].reshape(batched.shape)
            assert (full[:, 0] == 0).all() and (full[:, -1] == ac.PRECISION).all()
            assert (full[:, 1:] > full[:, :-1]).all()


def test_spread_cells_use_exact_arithmetic():
    """The grid cell of a spread: exact octave boundaries (powers of two) and linear sub-cells."""
    step = torch.ones(6)
    coarse = 2.0**ac.COARSE_OCTAVE
    scale = torch.tensor([2.0**-6, 2.0**-6 * (1 - 2**-20), 1.0, 1.5, coarse, coarse * (1 - 2**-20)])
    spread, shift = ac._spread_cells(scale, step)
    j = ac.SPREADS_PER_OCTAVE
    base = -ac.LOW_OCTAVE + 1  # octave index of [1, 2)
    assert spread.tolist()[:2] == [0, 0]
    assert spread[2] == base * j and spread[3] == base * j + j // 2
    assert shift.tolist() == [0, 0, 0, 0, 1, 0]


def test_compact_encoder_rows_write_the_same_bytes_as_full_rows():
    """The encoder codes each symbol in a 3-symbol row with its interval (rangecoder.interval_rows):
    the same bytes as the full rows, which the decoder uses, and the ideal code length plus a few bytes."""
    from predictgs.codec import rangecoder

    symbols, mean, scale, step = gaussian_stream(20000, 3.0, 0.01)
    plan = ac._plan(mean, scale, step)
    coded = ac._code(symbols, plan)
    assert (coded.above == ac.PRECISION).any() and (coded.below == 0).any()  # both edge rules are used
    compact, full = rangecoder.Encoder(), rangecoder.Encoder()
    weights, rows_symbols = rangecoder.interval_rows(coded.below.numpy(), coded.above.numpy())
    compact.rows(rows_symbols, weights)
    for (c, start, stop), level in zip(plan.blocks, coded.levels):
        full.rows(coded.symbol[start:stop].numpy(), ac._tables().rows(level, c, plan.row[start:stop]))
    assert compact.getvalue() == full.getvalue()
    tables = ac._tables()  # the encoder's precomputed rows are the same rows
    assert torch.equal(tables.intervals.index_select(0, coded.at), torch.from_numpy(weights))
    assert torch.equal(tables.interval_symbols.index_select(0, coded.at), torch.from_numpy(rows_symbols))
    ideal = float(ac._code_bits(coded.above - coded.below).sum()) / 8
    assert 0 <= len(full.getvalue()) - ideal <= 8


def test_the_coder_uses_exactly_the_integer_counts():
    """constriction reproduces integer distributions exactly (weights c - 1): the message is the ideal
    code length under those counts plus its termination, on skewed and flat rows alike."""
    from predictgs.codec import rangecoder
    import numpy as np

    rng = np.random.default_rng(3)
    for width in (2, 5, 60):
        raw = rng.random((5000, width)) ** 6 + 1e-7
        counts = np.floor(raw / raw.sum(1, keepdims=True) * (rangecoder.PRECISION - width)).astype(np.int64) + 1
        counts[:, 0] += rangecoder.PRECISION - counts.sum(1)
        cum = np.cumsum(counts, 1)
        symbols = (rng.random(5000)[:, None] * rangecoder.PRECISION >= cum).sum(1)
        encoder = rangecoder.Encoder()
        encoder.rows(symbols, rangecoder.probabilities(counts))
        data = encoder.getvalue()
        ideal = float(-np.log2(counts[np.arange(5000), symbols] / rangecoder.PRECISION).sum()) / 8
        assert 0 <= len(data) - ideal <= 8, (width, len(data), ideal)
        decoder = rangecoder.Decoder(data, ByteReader(data, "x"))
        assert (decoder.rows(rangecoder.probabilities(counts)) == symbols).all()


# -- hostile input -------------------------------------------------------------------------------------
def _stream_with_escapes():
    symbols, mean, scale, step = gaussian_stream(3000, 40.0, 0.02, seed=11)  # coarse bins, escapes
    data, _ = encode(symbols, mean, scale, step)
    return data, mean, scale, step


def test_truncated_streams_raise():
    data, mean, scale, step = _stream_with_escapes()
    for cut in sorted({0, 1, 2, len(data) // 3, len(data) // 2, len(data) - 1}):
        with pytest.raises(BitstreamError):
            decode(data[:cut], mean, scale, step)


def test_bad_headers_raise():
    symbols, mean, scale, step = gaussian_stream(500, 0.1, jitter=0.0)  # one block
    data, _ = encode(symbols, mean, scale, step)
    assert len(ac._plan(mean, scale, step).blocks) == 1
    size_bytes = len(ac._varint_bytes(ac._read_varint(ByteReader(data, "x"), "size")))
    level_at = size_bytes
    with pytest.raises(BitstreamError, match="escape level"):
        decode(data[:level_at] + bytes([len(ac.ESCAPE_LEVELS)]) + data[level_at + 1:], mean, scale, step)
    with pytest.raises(BitstreamError, match="varint"):
        decode(b"\x80\x80\x80\x80\x80\x01" + data, mean, scale, step)
    with pytest.raises(BitstreamError, match="canonical"):
        decode(b"\x85\x00" + data[size_bytes:], mean, scale, step)
    with pytest.raises(BitstreamError, match="truncated"):
        decode(ac._varint_bytes(10**9) + data[size_bytes:], mean, scale, step)


def _bits(text: str) -> bytes:
    text = text + "0" * (-len(text) % 8)
    return bytes(int(text[i:i + 8], 2) for i in range(0, len(text), 8))


def test_escape_codes():
    """Exp-Golomb codes of the escapes' excess: known code words, and the order the encoder picks."""
    prefix, suffix, widths = ac._golomb_code(torch.tensor([0, 1, 2, 6, 994]), 0)
    assert prefix.tolist() == [1, 2, 2, 3, 10] and widths.tolist() == [0, 1, 1, 2, 9]
    assert suffix.tolist() == [0, 0, 1, 3, 995 - 512]
    assert ac._golomb_order(torch.zeros(100, dtype=torch.int64)) == 0
    assert ac._golomb_order(torch.full((100,), 300)) in (7, 8)


def test_escape_payload_checks():
    """Escapes: a bad order, truncated or overlong codes, values beyond int32, non-zero padding."""
    mean, scale, step = torch.zeros(1), torch.ones(1), torch.ones(1)
    data, _ = encode(torch.tensor([1000]), mean, scale, step)  # one escape (excess 994), nothing else
    head = 1 + 1 + data[0]  # one-byte size, level, range-coded message
    assert data[head] <= ac.MAX_GOLOMB_K
    assert torch.equal(decode(data, mean, scale, step), torch.tensor([1000]))
    cases = [(bytes([ac.MAX_GOLOMB_K + 1]) + data[head + 1:], "order"),
             (data[head:head + 1], "truncated"),
             (b"\x00" + _bits("0" * 38 + "1"), "too long"),
             (b"\x00" + _bits("0" * 35 + "1" + "1" * 35), "out of range"),
             (data[head:] + b"\x00", None)]
    for tail, error in cases:
        if error is None:  # trailing bytes are the caller's to find
            with pytest.raises(BitstreamError, match="unexpected bytes"):
                decode(data[:head] + tail, mean, scale, step)
            continue
        with pytest.raises(BitstreamError, match=error):
            decode(data[:head] + tail, mean, scale, step)
    # the raw low bits' padding must be zero
    mean, scale, step = torch.zeros(1), torch.full((1,), 100.0), torch.ones(1)
    data, _ = encode(torch.tensor([3]), mean, scale, step)
    with pytest.raises(BitstreamError, match="padding"):
        decode(data[:-1] + bytes([data[-1] | 1]), mean, scale, step)


def test_invalid_distributions_raise():
    n = 10
    symbols = torch.zeros(n, dtype=torch.int64)
    good = torch.ones(n)
    for bad in (torch.full((n,), float("nan")), torch.full((n,), float("inf")), torch.zeros(n)):
        for args in ((good, bad, good), (good, good, bad)):
            with pytest.raises(BitstreamError):
                encode(symbols, *args)
            with pytest.raises(BitstreamError):
                decode(b"\x00\x00", *args)
    with pytest.raises(BitstreamError):
        encode(symbols, torch.full((n,), float("nan")), good, good)
    with pytest.raises(BitstreamError, match="int32"):
        encode(torch.full((n,), 2**31, dtype=torch.int64), good, good, good)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, 10**6))
def test_corrupt_streams_raise_bitstream_errors_only(edits, cut):
    data, mean, scale, step = _stream_with_escapes()
    data = bytearray(data)
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[:len(data) - cut % 4])
    try:
        values = decode(data, mean, scale, step)
    except BitstreamError:
        return
    assert values.shape == mean.shape and (values.abs() < 2**31).all()


def test_hostile_block_sizes_are_checked_against_the_bytes_left():
    mean, scale, step = torch.zeros(100), torch.ones(100), torch.ones(100)
    with pytest.raises(BitstreamError, match="truncated"):
        decode(ac._varint_bytes(2**34) + b"\x00", mean, scale, step)
    assert math.isfinite(gaussian_code_bits(torch.zeros(100, dtype=torch.int64), mean, scale, step).bits)
