"""Hash-grid lookup against a brute-force, scalar transcription of HAC's GridEncoder kernel."""

import itertools

import pytest
import torch

from predictgs.nn.hashgrid import BinaryHashGrid, GridPlaneEncoding, binarize, level_table_sizes


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
