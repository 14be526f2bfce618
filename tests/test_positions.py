"""Anchor positions: the octree coder and the Morton fallback, exact round trips, the mode choice, and
corrupt sections (only BitstreamError, never a crash or a tree larger than the declared count)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from predictgs import kernels
from predictgs.codec.container import ByteReader
from predictgs.codec.octree import decode_octree, encode_octree
from predictgs.codec.positions import (
    MORTON_MODE,
    OCTREE_MODE,
    decode_lattice,
    decode_positions,
    encode_lattice,
    encode_positions,
    lattice_layout,
    morton_order,
    morton_section,
)
from predictgs.errors import BitstreamError

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenes" / "fern"


def clustered(n: int, bits: int, seed: int) -> torch.Tensor:
    """Distinct points near a few surfaces of a 2^bits lattice, in Morton order."""
    rng = np.random.default_rng(seed)
    size = 1 << bits
    centres = rng.integers(0, size, size=(4, 3))
    points = centres[rng.integers(0, 4, n)] + rng.normal(0, max(1.0, size / 20), size=(n, 3)) * [1, 1, 0.1]
    codes = torch.unique(torch.from_numpy(np.clip(np.round(points), 0, size - 1).astype(np.int64)), dim=0)
    return codes[morton_order(codes, bits)]


@pytest.mark.parametrize("bits,n,seed", [(1, 8, 0), (2, 20, 1), (5, 300, 2), (11, 3000, 3), (16, 2000, 4),
                                         (21, 500, 5)])
def test_octree_round_trip(bits, n, seed):
    codes = clustered(n, bits, seed)
    data = encode_octree(codes.numpy(), bits)
    reader = ByteReader(data, "section 'anchor'")
    assert torch.equal(torch.from_numpy(decode_octree(reader, codes.shape[0], bits)), codes)
    reader.expect_end()


def scattered(n: int, bits: int, seed: int) -> torch.Tensor:
    """Distinct points uniform in the lattice, in Morton order: mostly isolated, so the direct mode codes them."""
    codes = torch.unique(torch.randint(0, 1 << bits, (n, 3), generator=torch.Generator().manual_seed(seed)), dim=0)
    return codes[morton_order(codes, bits)]


@pytest.mark.skipif(not kernels.available(), reason="the compiled CPU kernels cannot be built here")
@pytest.mark.parametrize("points,bits,n,seed", [("clustered", 1, 8, 0), ("clustered", 2, 20, 1), ("clustered", 5, 300, 2),
                                                ("clustered", 11, 3000, 3), ("clustered", 16, 20000, 4),
                                                ("clustered", 21, 500, 5), ("scattered", 10, 2000, 6),
                                                ("scattered", 21, 3000, 7), ("single", 3, 1, 0), ("cube", 2, 64, 0),
                                                ("mixed", 14, 4000, 8)])
def test_compiled_octree_encoder_writes_the_references_bytes(points, bits, n, seed):
    """kernels/csrc/octree_coder.cpp against the numpy encoder: the same sections, every level's flags, direct
    points and occupancy contexts included (scattered points are coded directly, clustered ones by occupancy)."""
    if points == "clustered":
        codes = clustered(n, bits, seed)
    elif points == "scattered":
        codes = scattered(n, bits, seed)
    elif points == "single":
        codes = torch.tensor([[3, 0, 7]])
    elif points == "cube":
        codes = torch.cartesian_prod(*[torch.arange(4)] * 3)[:, [2, 1, 0]]
    else:
        both = torch.unique(torch.cat([clustered(n, bits, seed), scattered(n // 4, bits, seed)]), dim=0)
        codes = both[morton_order(both, bits)]
    data = encode_octree(codes.numpy(), bits)
    with kernels.disabled():
        reference = encode_octree(codes.numpy(), bits)
    assert data == reference
    assert torch.equal(torch.from_numpy(decode_octree(ByteReader(data, "x"), codes.shape[0], bits)), codes[morton_order(codes, bits)])


def test_single_point_and_full_cube():
    for codes, bits in ((torch.tensor([[3, 0, 7]]), 3), (torch.cartesian_prod(*[torch.arange(4)] * 3)[:, [2, 1, 0]], 2)):
        codes = codes[morton_order(codes, bits)]
        data = encode_octree(codes.numpy(), bits)
        assert torch.equal(torch.from_numpy(decode_octree(ByteReader(data, "x"), codes.shape[0], bits)), codes)


def test_positions_pick_the_smaller_mode_and_round_trip():
    codes = clustered(3000, 16, 7)
    data = encode_positions(codes)
    assert data[0] == OCTREE_MODE
    assert torch.equal(decode_positions(ByteReader(data, "x"), codes.shape[0]), codes)
    # Duplicated codes (two anchors in one 16-bit cell): only the Morton differences can hold them.
    duplicated = torch.cat([codes[:1], codes])
    data = encode_positions(duplicated)
    assert data[0] == MORTON_MODE
    assert torch.equal(decode_positions(ByteReader(data, "x"), duplicated.shape[0]), duplicated)
    # The lattice section (HAC++): origin and bits, then the same choice.
    lattice = clustered(2000, 12, 8) - 1000
    origin, bits = lattice_layout(lattice)
    lattice = lattice[morton_order(lattice - origin, bits)]
    assert torch.equal(decode_lattice(ByteReader(encode_lattice(lattice), "x"), lattice.shape[0]), lattice)


def test_corrupt_octree_sections_raise_bitstream_errors_only():
    codes = clustered(800, 12, 9)
    data = bytes([OCTREE_MODE]) + encode_octree(codes.numpy(), 12)
    rng = random.Random(0)
    outcomes = {"error": 0, "decoded": 0}
    for case in range(300):
        corrupt = bytearray(data)
        kind = case % 3
        if kind == 0:
            corrupt = corrupt[:rng.randrange(len(corrupt))]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        else:
            at = rng.randrange(1, len(corrupt))
            corrupt = corrupt[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + corrupt[at:]
        try:
            decoded = decode_positions(ByteReader(bytes(corrupt), "section 'anchor'"), codes.shape[0], 12)
        except BitstreamError:
            outcomes["error"] += 1
        else:
            assert decoded.shape == codes.shape and int(decoded.min()) >= 0 and int(decoded.max()) < 1 << 12
            outcomes["decoded"] += 1
    assert outcomes["error"] > 100
    with pytest.raises(BitstreamError, match="mode"):
        decode_positions(ByteReader(bytes([7]) + data[1:], "x"), codes.shape[0], 12)
    with pytest.raises(BitstreamError, match="expected|more than"):
        decode_positions(ByteReader(data, "x"), codes.shape[0] - 1, 12)


@pytest.mark.skipif(not FERN.is_dir(), reason="needs ../shared/data/scenes/fern (the shared LLFF scene)")
def test_octree_beats_morton_on_fern_initial_anchors():
    """HAC++'s initial anchors of fern at the reference's voxel size 0.001 (9,720 anchors)."""
    from predictgs.data import load_scene
    from predictgs.model.anchors import voxelize

    scene = load_scene(FERN, {})
    lattice = torch.round(torch.from_numpy(voxelize(np.asarray(scene.points, dtype=np.float32), 0.001, 0)) / 0.001)
    lattice = torch.unique(lattice.long(), dim=0)
    origin, bits = lattice_layout(lattice)
    lattice = lattice[morton_order(lattice - origin, bits)]
    section = encode_positions(lattice - origin, bits)
    morton = morton_section(lattice - origin, bits)
    assert section[0] == OCTREE_MODE and len(section) < 0.95 * len(morton)
