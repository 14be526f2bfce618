"""The compiled mixture coder (predictgs/kernels/csrc/mixture_coder.cpp) against the numpy/constriction path of
predictgs/codec/mixture.py: the same decisions, the same words, the same code length, the same symbols and the
same refusals. The rest of the test suite runs HAC++'s codec with whichever backend is available."""

from __future__ import annotations

import pytest
import torch

from predictgs import kernels
from predictgs.codec import mixture
from predictgs.codec.container import ByteReader, ByteWriter
from test_codec_compiled import assert_corruptions_agree, backend
from test_hacpp import random_mixtures

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the compiled CPU kernels cannot be built here")


def calls():
    """Mixtures of every kind the coder meets: peaked, broad (coarse bins), outliers (escapes), one and three
    components, centres at the clamp, near-zero weights."""
    for spread, outliers in [(0.05, 0.0), (1.0, 0.0), (30.0, 0.0), (1.0, 0.01), (3000.0, 0.0)]:
        yield f"spread {spread} outliers {outliers}", random_mixtures(4000, seed=11, spread=spread, outliers=outliers)
    symbols, mean, scale, weight, step = random_mixtures(3000, seed=12)
    yield "one component", (symbols, mean[:1], scale[:1], torch.ones_like(weight[:1]), step)
    generator = torch.Generator().manual_seed(13)
    mean3 = torch.randn(3, 3000, generator=generator) * 4
    scale3 = torch.rand(3, 3000, generator=generator) * 3 + 0.02
    weight3 = torch.softmax(torch.randn(3, 3000, generator=generator) * 3, dim=0)
    yield "three components", (symbols, mean3, scale3, weight3, step)
    yield "clamped centres", (symbols, mean * 1e12, scale, weight, step)
    tiny = weight.clone()
    tiny[0] = 1e-30
    tiny[1] = 1 - 1e-30
    yield "a vanishing component", (symbols, mean, scale, tiny, step)


CALLS = list(calls())
IDS = [name for name, _ in CALLS]


def encode_with(arguments, compiled: bool):
    out = ByteWriter()
    with backend(compiled):
        length = mixture.encode_mixture(out, *arguments)
    return out.getvalue(), length


@pytest.mark.parametrize("name, arguments", CALLS, ids=IDS)
def test_shapes_are_the_references_bit_for_bit(name, arguments):
    """Centre, bin shift and half-width of every element (float32 operations in torch's order)."""
    _, mean, scale, weight, step = arguments
    centre, shift, width, status = kernels.load().mixture_shapes(
        mean, scale, weight, step, mixture.FINE_SPREAD, mixture.COVERAGE, mixture.REACH, mixture.MAX_HALF_WIDTH,
        mixture.MAX_LOW_BITS, float(mixture.CENTRE_LIMIT))
    reference = mixture._shapes(mean, scale, weight, step)
    assert int(status[0]) == 0
    assert torch.equal(centre, reference.centre) and torch.equal(shift, reference.shift)
    assert torch.equal(width, reference.width)


def symbols_of(symbols, shape):
    """The coded symbol of each element (0 .. 2W + 2), as mixture._code makes it."""
    residual = symbols - shape.centre
    u = torch.div(residual, torch.bitwise_left_shift(torch.ones_like(residual), shape.shift), rounding_mode="floor")
    return u.clamp(-shape.width - 1, shape.width + 1) + shape.width + 1


@pytest.mark.parametrize("name, arguments", CALLS, ids=IDS)
def test_decisions_are_the_references(name, arguments):
    """The decisions' words and code length, directly (with and without writing)."""
    symbols, mean, scale, weight, step = arguments
    shape = mixture._shapes(mean, scale, weight, step)
    symbol = symbols_of(symbols, shape)
    ordered = mixture._ordered(mean, scale, weight, step, shape)
    for write in (True, False):
        bits, message = mixture._decisions_compiled(kernels.load(), mean, scale, weight, step, shape, symbol, write)
        reference_bits, reference_message = mixture._decisions_reference(ordered, symbol.numpy(), write)
        assert message == reference_message
        assert bits == pytest.approx(reference_bits, rel=1e-12)


@pytest.mark.parametrize("name, arguments", CALLS, ids=IDS)
def test_calls_are_the_same_bytes_and_decode_both_ways(name, arguments):
    data, length = encode_with(arguments, compiled=True)
    reference, reference_length = encode_with(arguments, compiled=False)
    assert data == reference
    assert length.total_bytes == pytest.approx(reference_length.total_bytes, rel=1e-12)
    symbols, mean, scale, weight, step = arguments
    for compiled in (True, False):
        reader = ByteReader(data, "call")
        with backend(compiled):
            decoded = mixture.decode_mixture(reader, mean, scale, weight, step)
        reader.expect_end()
        assert torch.equal(decoded, symbols)


def test_corrupt_calls_give_the_references_result():
    """Random byte edits of a call: both decoders give the same symbols or both refuse it."""
    arguments = random_mixtures(1500, seed=14, spread=60.0, outliers=0.01)  # coarse bins: raw low bits
    _, mean, scale, weight, step = arguments
    data, _ = encode_with(arguments, compiled=True)
    assert_corruptions_agree(data, lambda reader: mixture.decode_mixture(reader, mean, scale, weight, step), 200,
                             seed=1)


def test_the_compiled_coder_refuses_symbols_outside_their_alphabet():
    symbols, mean, scale, weight, step = random_mixtures(50, seed=15)
    shape = mixture._shapes(mean, scale, weight, step)
    bad = torch.zeros(50, dtype=torch.int64)
    bad[7] = 2 * int(shape.width[7]) + 3
    with pytest.raises(RuntimeError, match="outside its alphabet"):
        mixture._decisions_compiled(kernels.load(), mean, scale, weight, step, shape, bad, True)


@pytest.mark.parametrize("field", ["mean", "scale", "weight", "step"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -1.0])
def test_invalid_distributions_are_refused_as_by_the_reference(field, value):
    symbols, mean, scale, weight, step = random_mixtures(40, seed=16)
    arguments = {"mean": mean, "scale": scale, "weight": weight, "step": step}
    target = arguments[field]
    target.view(-1)[5] = value
    valid = value == value and abs(value) != float("inf") and (field in ("mean", "weight") or value > 0)
    for compiled in (True, False):
        with backend(compiled):
            if valid:
                mixture.encode_mixture(ByteWriter(), symbols, mean, scale, weight, step)
            else:
                with pytest.raises(ValueError, match="invalid mixture distributions"):
                    mixture.encode_mixture(ByteWriter(), symbols, mean, scale, weight, step)
