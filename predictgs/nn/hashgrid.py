"""Binarised multi-resolution hash grids and planes, pure PyTorch (identical on every device).

Lookup semantics follow HAC's ``GridEncoder`` CUDA kernel, which HAC's context model and Predict-GS's
Spatial Feature Pool both build on:

- positions are normalised to [0,1] with the anchor bounding box; a point outside [0,1] in any coordinate
  gets zeros from every level;
- level with resolution R: pos = x (R - 2) + 0.5, multilinear interpolation over the 2^d corners
  floor(pos) + {0,1} (corner index capped at R - 1);
- corners on the lattice border (index 0 or R - 1 on any axis) are excluded and the remaining weights are
  renormalised by their sum;
- a level whose R^d lattice fits its table is indexed densely (row-major, x fastest); otherwise by the
  spatial hash XOR_i(c_i * prime_i) in uint32 arithmetic, modulo the table size;
- table size per level = min(2^log2_size, R^d) rounded up to a multiple of 8; features are stored
  level-major in one [entries, features] table;
- parameters are binarised by a straight-through sign (+1 if >= 0 else -1; gradient passed where the
  raw value lies in [-1, 1]), initialised U(-1e-4, 1e-4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

PRIMES = (1, 2654435761, 805459861)
UINT32_MASK = 0xFFFFFFFF

HAC_GRID_RESOLUTIONS = (18, 24, 33, 44, 59, 80, 108, 148, 201, 275, 376, 514)
HAC_PLANE_RESOLUTIONS = (130, 258, 514, 1026)


class BinarizeSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} forward; identity gradient inside [-1, 1], zero outside."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def binarize(x: Tensor) -> Tensor:
    return BinarizeSTE.apply(x)


def level_table_sizes(resolutions: Sequence[int], dims: int, log2_table_size: int) -> list[int]:
    """Entries per level: min(2^log2, R^d) rounded up to a multiple of 8."""
    sizes = []
    for r in resolutions:
        n = min(1 << log2_table_size, r**dims)
        sizes.append(int(math.ceil(n / 8) * 8))
    return sizes


class BinaryHashGrid(nn.Module):
    """A d-dimensional (2 or 3) multi-resolution grid of binarised features."""

    def __init__(self, dims: int, resolutions: Sequence[int], log2_table_size: int, features_per_level: int = 4):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"hash grids are 2D or 3D, got {dims}")
        self.dims = dims
        self.resolutions = tuple(int(r) for r in resolutions)
        self.log2_table_size = log2_table_size
        self.features_per_level = features_per_level
        sizes = level_table_sizes(self.resolutions, dims, log2_table_size)
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.register_buffer("_sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets[:-1], dtype=torch.long), persistent=False)
        self.register_buffer("_res", torch.tensor(self.resolutions, dtype=torch.long), persistent=False)
        self.register_buffer("_dense", torch.tensor([r**dims <= s for r, s in zip(self.resolutions, sizes)]),
                             persistent=False)
        self.params = nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-1e-4, 1e-4))
        corners = torch.tensor([[(c >> i) & 1 for i in range(dims)] for c in range(1 << dims)], dtype=torch.long)
        self.register_buffer("_corners", corners, persistent=False)  # [2^d, d]

    @property
    def num_levels(self) -> int:
        return len(self.resolutions)

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    @property
    def num_entries(self) -> int:
        return self.params.shape[0]

    def binary_params(self) -> Tensor:
        return binarize(self.params)

    def corner_indices(self, corner_coords: Tensor) -> Tensor:
        """Integer lattice coordinates [N, L, C, d] -> flat table rows [N, L, C] (level offsets added)."""
        def per_level(t: Tensor) -> Tensor:
            return t.view(1, -1, 1)

        res = per_level(self._res)
        dense = torch.zeros(corner_coords.shape[:-1], dtype=torch.long, device=corner_coords.device)
        hashed = torch.zeros_like(dense)
        stride = torch.ones_like(res)
        for axis in range(self.dims):
            c = corner_coords[..., axis]
            dense = dense + c * stride
            stride = stride * res
            hashed = hashed ^ ((c * PRIMES[axis]) & UINT32_MASK)
        index = torch.where(per_level(self._dense), dense, hashed) % per_level(self._sizes)
        return index + per_level(self._offsets)

    def forward(self, x_normalised: Tensor) -> Tensor:
        """Points in [0,1]^d, [N,d] -> features [N, L * features_per_level]."""
        n = x_normalised.shape[0]
        table = self.binary_params()
        res = self._res.to(x_normalised.dtype)
        inside = ((x_normalised >= 0) & (x_normalised <= 1)).all(dim=-1)  # [N]
        pos = x_normalised[:, None, :] * (res[None, :, None] - 2) + 0.5  # [N,L,d]
        base = torch.floor(pos)
        frac = pos - base
        base = base.long()
        corner = base[:, :, None, :] + self._corners[None, None]  # [N,L,2^d,d]
        r_max = (self._res - 1)[None, :, None, None]
        corner = torch.minimum(corner, r_max)
        weight = torch.where(self._corners[None, None].bool(), frac[:, :, None, :], 1 - frac[:, :, None, :]).prod(-1)
        on_border = ((corner == 0) | (corner == r_max)).any(dim=-1)  # [N,L,2^d]
        weight = weight * (~on_border)
        total = weight.sum(dim=-1, keepdim=True)
        weight = weight / torch.where(total > 0, total, torch.full_like(total, 1e-9))
        rows = self.corner_indices(corner.clamp(min=0))  # [N,L,2^d]
        feats = table[rows.reshape(-1)].reshape(n, self.num_levels, 1 << self.dims, self.features_per_level)
        out = (weight[..., None] * feats).sum(dim=2)  # [N,L,F]
        out = out * inside[:, None, None].to(out.dtype)
        return out.reshape(n, -1)


class GridPlaneEncoding(nn.Module):
    """HAC's ``mix_3D2D_encoding``: a 3D grid plus xy, xz, yz planes, concatenated.

    Defaults give HAC's context and Predict-GS's SFP: 12 levels at 2^13 for the grid, 4 levels at 2^15
    for each plane, 4 features per entry, so 12*4 + 3*4*4 = 96 output features."""

    PLANE_AXES = ((0, 1), (0, 2), (1, 2))

    def __init__(
        self,
        grid_resolutions: Sequence[int] = HAC_GRID_RESOLUTIONS,
        plane_resolutions: Sequence[int] = HAC_PLANE_RESOLUTIONS,
        log2_grid: int = 13,
        log2_plane: int = 15,
        features_per_level: int = 4,
    ):
        super().__init__()
        self.grid = BinaryHashGrid(3, grid_resolutions, log2_grid, features_per_level)
        self.planes = nn.ModuleList(
            BinaryHashGrid(2, plane_resolutions, log2_plane, features_per_level) for _ in self.PLANE_AXES
        )

    @property
    def output_dim(self) -> int:
        return self.grid.output_dim + sum(p.output_dim for p in self.planes)

    def tables(self) -> list[BinaryHashGrid]:
        return [self.grid, *self.planes]

    def num_binary_params(self) -> int:
        return sum(t.params.numel() for t in self.tables())

    def binary_params(self) -> Tensor:
        """All binarised entries, flattened (for bit costs and coding)."""
        return torch.cat([t.binary_params().reshape(-1) for t in self.tables()])

    def forward(self, x_normalised: Tensor) -> Tensor:
        parts = [self.grid(x_normalised)]
        for axes, plane in zip(self.PLANE_AXES, self.planes):
            parts.append(plane(x_normalised[:, list(axes)]))
        return torch.cat(parts, dim=-1)
