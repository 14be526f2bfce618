"""The compiled CPU hash-grid lookup against the PyTorch reference (the oracle): the same bits in float32 for
the features and the table gradient (the kernel sums each row in the reference's order), on dense and hashed
levels, planes, lattice borders and points outside the box; the same bits whatever the thread count."""

from __future__ import annotations

import pytest
import torch

from predictgs import kernels
from predictgs.nn import hashgrid
from predictgs.nn.hashgrid import BinaryHashGrid, GridPlaneEncoding, backend_override

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the compiled CPU kernels cannot be built here")


def points(n, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=gen, dtype=dtype) * 1.1 - 0.05  # some outside [0,1]^3
    x[0] = 0.0  # every corner on the lattice border
    x[1] = 1.0
    x[2] = torch.tensor([0.5, 0.0, 1.0], dtype=dtype)
    x[3, 1] = 1e-7
    return x


def encoding(dtype, log2_grid=9, log2_plane=10, seed=0):
    torch.manual_seed(seed)
    enc = GridPlaneEncoding(log2_grid=log2_grid, log2_plane=log2_plane).to(dtype)
    with torch.no_grad():
        for table in enc.tables():
            table.params.uniform_(-1.2, 1.2)  # some outside [-1, 1]: the STE passes no gradient there
    return enc


def forward_backward(enc, x, backend):
    with backend_override(backend):
        enc.zero_grad()
        tables = enc.binarised()
        out = enc(x, tables)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
        (out * weights).sum().backward()
    return out.detach(), [t.params.grad.clone() for t in enc.tables()]


@pytest.mark.parametrize("log2_grid,log2_plane", [(9, 10), (13, 15), (19, 19)])
def test_float32_bit_identical_to_the_reference(log2_grid, log2_plane):
    enc = encoding(torch.float32, log2_grid, log2_plane)
    dense = [r**3 <= s for r, s in zip(enc.grid.resolutions, enc.grid._sizes.tolist())]
    assert any(dense) or log2_grid < 13
    x = points(3000, seed=1)
    ref_out, ref_grads = forward_backward(enc, x, "reference")
    out, grads = forward_backward(enc, x, "compiled")
    assert torch.equal(out, ref_out)
    for a, b in zip(grads, ref_grads):
        assert torch.equal(a, b)


def test_float64_agrees_with_the_reference():
    enc = encoding(torch.float64)
    x = points(2000, seed=2, dtype=torch.float64)
    ref_out, ref_grads = forward_backward(enc, x, "reference")
    out, grads = forward_backward(enc, x, "compiled")
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-14)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_single_grid_and_no_points():
    grid = BinaryHashGrid(2, (7, 40, 130), 10, features_per_level=3)
    x = torch.rand(500, 2)
    with backend_override("reference"):
        ref = grid(x)
    with backend_override("compiled"):
        assert torch.equal(grid(x), ref)
        assert grid(torch.zeros(0, 2)).shape == (0, 9)


def test_the_same_bits_whatever_the_thread_count():
    enc = encoding(torch.float32, 13, 15)
    x = points(4000, seed=4)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(forward_backward(enc, x, "compiled"))
    finally:
        torch.set_num_threads(previous)
    for out, grads in results[1:]:
        assert torch.equal(out, results[0][0])
        for a, b in zip(grads, results[0][1]):
            assert torch.equal(a, b)


def test_dispatch():
    x = torch.rand(10, 3)
    tables = [torch.ones(8, 2)]
    assert hashgrid.use_compiled(x, tables)  # auto on the CPU
    with kernels.disabled():
        assert not hashgrid.use_compiled(x, tables)
    with backend_override("reference"):
        assert not hashgrid.use_compiled(x, tables)
    # positions that require grad: auto takes the reference (which differentiates them); compiled refuses
    moving = x.clone().requires_grad_(True)
    assert not hashgrid.use_compiled(moving, tables)
    with backend_override("compiled"):
        with pytest.raises(ValueError, match="no gradient for the positions"):
            hashgrid.use_compiled(moving, tables)
        with pytest.raises(ValueError, match="float32 or float64"):
            hashgrid.use_compiled(x, [torch.ones(8, 2, dtype=torch.float64)])
        with pytest.raises(RuntimeError, match="runs on the CPU"):
            hashgrid.use_compiled(torch.rand(2, 3, device="meta"), [torch.ones(8, 2, device="meta")])


def test_positions_that_require_grad_still_get_gradients():
    enc = encoding(torch.float64)
    x = points(50, seed=5, dtype=torch.float64).clamp(0.01, 0.99).requires_grad_(True)
    enc(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_int8_sign_tables_give_the_same_bits_on_every_backend(dtype):
    """The codec's sign tables: int8 +-1 read by the compiled kernel give the features of the binarised float
    tables bit for bit; the reference takes them converted to the positions' dtype."""
    enc = encoding(torch.float32, 13, 15)
    with torch.no_grad():
        enc.grid.params[:5] = torch.tensor([0.0, -0.0, float("nan"), 1e-30, -1e-30])[:, None]  # sign edge cases
    signs = enc.sign_tables()
    assert all(s.dtype == torch.int8 for s in signs)
    assert torch.equal(signs.flat().to(torch.float32), enc.binary_params().detach())
    x = points(3000, seed=5, dtype=dtype)
    floats = type(signs)(t.to(dtype) for t in enc.binarised())
    with torch.no_grad():
        with backend_override("compiled"):
            want = enc(x, floats)
            assert hashgrid.use_compiled(x, signs)
            assert torch.equal(enc(x, signs), want)
            assert torch.equal(enc.grid(x, signs[0]), enc.grid(x, floats[0]))
        with backend_override("reference"):
            assert torch.equal(enc(x, signs), enc(x, floats))
        with kernels.disabled():  # auto without the kernels: the reference, given widened tables
            assert torch.equal(enc(x, signs), enc(x, floats))
