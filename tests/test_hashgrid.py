"""Hash-grid lookup against a brute-force, scalar transcription of HAC's GridEncoder kernel."""

import itertools

import pytest
import torch

from predictgs.nn import hashgrid
from predictgs.nn.hashgrid import (BinarisedTables, BinaryHashGrid, GridPlaneEncoding, backend_override, binarize,
                                    level_table_sizes)


def brute_force_level(table, offset, size, res, point, dims):
    """One level for one point, written out scalar by scalar."""
    if any(c < 0 or c > 1 for c in point):
        return [0.0] * table.shape[1]
    pos = [c * (res - 2) + 0.5 for c in point]
    base = [int(p // 1) for p in pos]
    frac = [p - b for p, b in zip(pos, base)]
    dense = res**dims <= size
    acc = [0.0] * table.shape[1]
    total = 0.0
    for bits in itertools.product((0, 1), repeat=dims):
        coords = [min(b + o, res - 1) for b, o in zip(base, bits)]
        if any(c == 0 or c == res - 1 for c in coords):
            continue  # border corners are excluded
        w = 1.0
        for f, o in zip(frac, bits):
            w *= f if o else 1 - f
        if dense:
            index, stride = 0, 1
            for c in coords:
                index += c * stride
                stride *= res
        else:
            index = 0
            for c, prime in zip(coords, (1, 2654435761, 805459861)):
                index ^= (c * prime) & 0xFFFFFFFF
        index %= size
        total += w
        for k in range(table.shape[1]):
            acc[k] += w * float(table[offset + index, k])
    total = total if total > 0 else 1e-9
    return [a / total for a in acc]


@pytest.mark.parametrize("dims,resolutions,log2", [(3, (6, 9, 40), 10), (2, (7, 70), 9)])
def test_lookup_matches_brute_force(dims, resolutions, log2):
    torch.manual_seed(0)
    grid = BinaryHashGrid(dims, resolutions, log2, features_per_level=3).double()
    with torch.no_grad():
        grid.params.uniform_(-1, 1)
    sizes = level_table_sizes(resolutions, dims, log2)
    # The set-up covers a dense level and a hashed level.
    assert resolutions[0] ** dims <= sizes[0] and resolutions[-1] ** dims > sizes[-1]
    points = torch.rand(40, dims, dtype=torch.float64)
    points[0] = 0.0  # every corner on the border: all excluded
    points[1] = 1.0
    points[2, 0] = 0.01  # near the low border on one axis
    points[3, -1] = 0.995  # near the high border
    points[4, 0] = 1.2  # outside: zeros
    points[5, 1] = -0.1
    out = grid(points)
    table = grid.binary_params().detach()
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    for i, p in enumerate(points.tolist()):
        expected = []
        for level, res in enumerate(resolutions):
            expected += brute_force_level(table, offsets[level], sizes[level], res, p, dims)
        torch.testing.assert_close(out[i], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert out[4].abs().sum() == 0 and out[5].abs().sum() == 0


def test_hac_sizes_and_output_dimension():
    enc = GridPlaneEncoding()
    assert enc.grid.num_entries == 5832 + 11 * 8192 == 95944
    assert all(p.num_entries == 16904 + 3 * 32768 == 115208 for p in enc.planes)
    assert enc.num_binary_params() == 1_766_272
    assert enc.output_dim == 96
    assert enc(torch.rand(7, 3)).shape == (7, 96)


def test_straight_through_binarisation():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_gradients_reach_the_table():
    grid = BinaryHashGrid(3, (6, 40), 9, features_per_level=2)
    out = grid(torch.rand(50, 3) * 0.8 + 0.1)
    out.square().sum().backward()
    assert grid.params.grad is not None and grid.params.grad.abs().sum() > 0


# -- the reference path: same numbers as the implementation it replaced -----------------------------------
def legacy_forward(grid, x, table):
    """The lookup as written before the int32 / per-axis / index_select rewrite: [N, L, 2^d, d] int64
    corners, advanced indexing. The rewrite must give the same bits, forward and table gradient."""
    n, dims = x.shape[0], grid.dims
    corners = torch.tensor([[(c >> i) & 1 for i in range(dims)] for c in range(1 << dims)], dtype=torch.long)
    res = grid._res.to(x.dtype)
    inside = ((x >= 0) & (x <= 1)).all(dim=-1)
    pos = x[:, None, :] * (res[None, :, None] - 2) + 0.5
    base = torch.floor(pos)
    frac = pos - base
    corner = base.long()[:, :, None, :] + corners[None, None]
    r_max = (grid._res - 1)[None, :, None, None]
    corner = torch.minimum(corner, r_max)
    weight = torch.where(corners[None, None].bool(), frac[:, :, None, :], 1 - frac[:, :, None, :]).prod(-1)
    weight = weight * ~((corner == 0) | (corner == r_max)).any(dim=-1)
    total = weight.sum(dim=-1, keepdim=True)
    weight = weight / torch.where(total > 0, total, torch.full_like(total, 1e-9))
    rows = grid.corner_indices(corner.clamp(min=0))
    feats = table[rows.reshape(-1)].reshape(n, grid.num_levels, 1 << dims, grid.features_per_level)
    out = (weight[..., None] * feats).sum(dim=2) * inside[:, None, None].to(x.dtype)
    return out.reshape(n, -1)


def awkward_points(n, dims, dtype, seed=0):
    """Random points plus box corners and faces, lattice-aligned points and points outside the box."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dims, generator=gen, dtype=dtype)
    k = n // 8
    x[:k] = torch.randint(0, 2, (k, dims), generator=gen).to(dtype)
    x[k:2 * k, 0] = torch.randint(0, 2, (k,), generator=gen).to(dtype)
    x[2 * k:3 * k] = x[2 * k:3 * k] * 1.6 - 0.3
    x[3 * k:4 * k] = torch.round(x[3 * k:4 * k] * 64) / 64
    return x


@pytest.fixture
def deterministic():
    """CPU gathers sum their gradients in a fixed order only with deterministic algorithms (as in training)."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dims,resolutions,log2", [(3, (6, 9, 40, 100), 10), (2, (7, 70, 300), 9)])
def test_reference_is_bit_identical_to_the_legacy_lookup(deterministic, dims, resolutions, log2, dtype):
    grid = BinaryHashGrid(dims, resolutions, log2, features_per_level=3).to(dtype)
    with torch.no_grad():
        grid.params.uniform_(-1.5, 1.5, generator=torch.Generator().manual_seed(1))
    x = awkward_points(3000, dims, dtype)
    grad_out = torch.randn(3000, grid.output_dim, dtype=dtype, generator=torch.Generator().manual_seed(2))
    table = grid.binary_params()
    legacy = legacy_forward(grid, x, table)
    (legacy * grad_out).sum().backward()
    legacy_grad, grid.params.grad = grid.params.grad, None
    with backend_override("reference"):
        out = grid(x)
    (out * grad_out).sum().backward()
    assert torch.equal(out, legacy)
    assert torch.equal(grid.params.grad, legacy_grad)


def test_int32_rows_equal_int64_hash_for_large_coordinates():
    """Rows from the per-axis int64 products masked to int32 equal the int64 / uint32 formula, for lattice
    coordinates up to 2^21 (c * 2654435761 far beyond 2^32) and for a dense level."""
    grid = BinaryHashGrid(3, (9, 2**21, 70000), 12, features_per_level=1)
    assert grid._dense.tolist() == [True, False, False]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4000, 3, generator=gen, dtype=torch.float64)
    x[:50] = 1 - torch.rand(50, 3, generator=gen, dtype=torch.float64) * 1e-6  # top of the lattice
    rows, weight, inside = grid.lookup(x)
    assert rows.dtype == torch.int32
    pos = x[:, None, :] * (grid._res[None, :, None].double() - 2) + 0.5
    base = torch.floor(pos).long()
    corners = torch.tensor([[(c >> i) & 1 for i in range(3)] for c in range(8)])
    corner = torch.minimum(base[:, :, None, :] + corners, (grid._res - 1)[None, :, None, None])
    assert int(corner.max()) > 2**20
    expected = grid.corner_indices(corner)
    torch.testing.assert_close(rows.long(), expected, rtol=0, atol=0)
    # and an independent uint32 transcription for a few points (Python integers)
    for i in range(0, 4000, 397):
        for level in (1, 2):
            for c in range(8):
                coords = corner[i, level, c].tolist()
                h = 0
                for v, prime in zip(coords, (1, 2654435761, 805459861)):
                    h ^= (v * prime) & 0xFFFFFFFF
                assert int(rows[i, level, c]) == int(grid._offsets[level]) + h % int(grid._sizes[level])


def test_binarise_once_api_matches_binarising_per_use():
    torch.manual_seed(0)
    enc = GridPlaneEncoding((6, 40), (7, 70), 9, 9, features_per_level=2)
    with torch.no_grad():
        for t in enc.tables():
            t.params.uniform_(-1.5, 1.5)
    x = torch.rand(200, 3)
    # twice: forward and rate term each binarise
    loss = enc(x).square().sum() + enc.binary_params().sum()
    loss.backward()
    grads = [t.params.grad.clone() for t in enc.tables()]
    enc.zero_grad()
    tables = enc.binarised()
    assert isinstance(tables, BinarisedTables) and len(tables) == 4
    assert torch.equal(tables.flat(), enc.binary_params())
    out = enc(x, tables)
    assert torch.equal(out, enc(x))
    (out.square().sum() + tables.flat().sum()).backward()
    assert all(torch.equal(t.params.grad, g) for t, g in zip(enc.tables(), grads))
    # one grid alone, with its own binarised table
    grid = enc.grid
    assert torch.equal(grid(x, grid.binarised()), grid(x)) and torch.equal(grid(x, grid.binary_params()), grid(x))
    with pytest.raises(ValueError):
        enc(x, tables[:2])


def test_hash_table_bits_accepts_binarised_tables():
    from predictgs.entropy import hash_table_bits

    torch.manual_seed(0)
    enc = GridPlaneEncoding((6, 40), (7, 70), 9, 9, features_per_level=2)
    with torch.no_grad():
        for t in enc.tables():
            t.params.uniform_(-1, 1)
    tables = enc.binarised()
    assert torch.equal(hash_table_bits(enc, tables), hash_table_bits(enc))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hash_table_bits_gives_the_concatenated_formulas_bits(dtype):
    """hash_table_bits counts the tables in place (no concatenation): its value and the gradient of every
    table entry, alone and added to the lookup's, are those of binary_bits((cat(tables) + 1) / 2)."""
    from predictgs.entropy import binary_bits, hash_table_bits

    torch.manual_seed(3)
    enc = GridPlaneEncoding((6, 40), (7, 70), 9, 9, features_per_level=2).to(dtype)
    with torch.no_grad():
        for t in enc.tables():
            t.params.uniform_(-1.5, 1.2)  # mostly -1: p away from 1/2, entries outside [-1, 1] too
    x = torch.rand(300, 3, dtype=dtype)

    def grads(bits_of):
        enc.zero_grad()
        tables = enc.binarised()
        bits = bits_of(tables)
        (enc(x, tables).square().sum() * 1e-3 + bits * 1e-2).backward()
        return bits.detach(), [t.params.grad.clone() for t in enc.tables()]

    ours, ours_grads = grads(lambda tables: hash_table_bits(enc, tables))
    formula, formula_grads = grads(lambda tables: binary_bits((tables.flat() + 1) / 2))
    assert ours.dtype == formula.dtype and torch.equal(ours, formula)
    assert all(torch.equal(a, b) for a, b in zip(ours_grads, formula_grads))
    assert any(bool((g != 0).any()) for g in ours_grads) and any(bool((g == 0).any()) for g in ours_grads)
    # the rate term's gradient alone
    enc.zero_grad()
    hash_table_bits(enc).backward()
    alone = [t.params.grad.clone() for t in enc.tables()]
    enc.zero_grad()
    binary_bits((enc.binary_params() + 1) / 2).backward()
    assert all(torch.equal(a, t.params.grad) for a, t in zip(alone, enc.tables()))


def test_binarize_passes_the_gradient_inside_the_unit_interval_only():
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, float("inf")], dtype=dtype,
                         requires_grad=True)
        out = binarize(x)
        assert out.dtype == dtype and out.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1, 1]
        grad = torch.tensor([1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0, 9.0], dtype=dtype)
        out.backward(grad)
        assert x.grad.tolist() == [0.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, 0.0, 0.0]
        assert torch.equal(torch.signbit(x.grad), torch.signbit(grad * (x.detach().abs() <= 1).to(dtype)))


def test_modules_move_every_tensor_to_the_device():
    enc = GridPlaneEncoding().to("meta")
    for module in enc.modules():
        tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
        assert all(t.device.type == "meta" for t in tensors), type(module).__name__
    # the forward creates nothing on the CPU: it runs on meta tensors end to end
    with backend_override("reference"):
        out = enc(torch.rand(5, 3, device="meta"))
    assert out.device.type == "meta" and out.shape == (5, 96)


def test_dispatch_and_override(monkeypatch):
    x = torch.rand(10, 3)
    tables = [torch.ones(8, 2)]
    monkeypatch.delenv(hashgrid.BACKEND_ENV, raising=False)
    assert hashgrid.selected_backend() == "auto"
    assert not hashgrid.use_fused(x, tables)  # auto on the CPU: the reference
    assert not hashgrid.fused_available("cpu") or hashgrid._interpreting()
    monkeypatch.setenv(hashgrid.BACKEND_ENV, "reference")
    assert hashgrid.selected_backend() == "reference" and not hashgrid.use_fused(x, tables)
    monkeypatch.setenv(hashgrid.BACKEND_ENV, "Triton")
    assert hashgrid.selected_backend() == "triton"
    with backend_override("reference"):  # the module attribute wins over the environment
        assert hashgrid.selected_backend() == "reference"
    assert hashgrid.BACKEND is None
    if not hashgrid._interpreting():
        with pytest.raises(RuntimeError, match="unavailable"):
            hashgrid.use_fused(x, tables)
        with pytest.raises(RuntimeError, match="unavailable"):
            GridPlaneEncoding((6,), (7,), 9, 9)(x)
    monkeypatch.setenv(hashgrid.BACKEND_ENV, "cuda")
    with pytest.raises(ValueError, match="backend"):
        hashgrid.selected_backend()
