"""Scaffold-GS anchors: positions on a voxel lattice, each with K offsets, a 6-d log scaling, a per-anchor
attribute vector (the feature f in Scaffold-GS/HAC, the residual f_r in Predict-GS) and optional offset
masks (HAC, Predict-GS).

Anchors never move (Scaffold-GS trains them with learning rate 0), so positions are a buffer. Rows are
added (anchor growing) and removed (pruning) together with the optimiser state: see
``predictgs.train.optim``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor, nn

AUTO_VOXEL_DIVISOR = 16.0


def mean_sq_knn_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean squared distance to the k nearest other points (simple-knn's distCUDA2), clamped >= 1e-7."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        return np.full(len(points), 1e-7)
    k_eff = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k_eff + 1)
    return np.maximum((dist[:, 1:] ** 2).mean(axis=1), 1e-7)


def auto_voxel_size(points: np.ndarray) -> float:
    """Voxel size for scenes without a reference value: the median nearest-neighbour spacing / 16.

    With the reference values (e.g. 0.001 on Mip-NeRF360, whose SfM points are ~1-2 cm apart) the initial
    voxelisation only merges near-duplicate points and the coarsest growth lattice (16 voxels) is about
    the point spacing; this rule reproduces that relation on any scale. (Scaffold-GS's own automatic
    choice, the median of *squared* 3-NN distances, is unit-dependent and is used only for BungeeNeRF.)"""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        return 0.01
    dist, _ = cKDTree(points).query(points, k=2)
    spacing = float(np.median(dist[:, 1]))
    return max(spacing / AUTO_VOXEL_DIVISOR, 1e-6)


VOXEL_FROM_CONFIG = "config"
VOXEL_FROM_PRESET = "preset"
VOXEL_AUTOMATIC = (f"automatic: median nearest-neighbour spacing / {AUTO_VOXEL_DIVISOR:g} "
                   "(no voxel size given)")


def choose_voxel_size(configured: float | None, points: np.ndarray) -> tuple[float, str]:
    """(voxel size, where it comes from): the configured value (``model.voxel_size``) when there is one,
    else :func:`auto_voxel_size` of the points. The source goes to train.log and metrics.json
    (``voxel_size_source``); a run whose value came from a dataset preset reports ``VOXEL_FROM_PRESET``."""
    if configured:
        return float(configured), VOXEL_FROM_CONFIG
    return auto_voxel_size(points), VOXEL_AUTOMATIC


def voxelize(points: np.ndarray, voxel_size: float, seed: int = 0) -> np.ndarray:
    """Unique lattice cells of the points (Scaffold-GS's voxelize_sample), returned as cell centres."""
    points = np.asarray(points, dtype=np.float64)
    shuffled = points[np.random.default_rng(seed).permutation(len(points))]
    cells = np.unique(np.round(shuffled / voxel_size), axis=0)
    return (cells * voxel_size).astype(np.float32)


class AnchorSet(nn.Module):
    """All per-anchor state. ``attributes`` is f (features) or f_r (residuals), dimension ``attr_dim``."""

    PER_ANCHOR = ("attributes", "offsets", "scaling", "masks")

    def __init__(self, num_anchors: int, attr_dim: int, n_offsets: int, with_masks: bool):
        super().__init__()
        self.n_offsets = n_offsets
        self.register_buffer("positions", torch.zeros(num_anchors, 3))
        self.attributes = nn.Parameter(torch.zeros(num_anchors, attr_dim))
        self.offsets = nn.Parameter(torch.zeros(num_anchors, n_offsets, 3))
        self.scaling = nn.Parameter(torch.zeros(num_anchors, 6))  # log scale
        self.masks = nn.Parameter(torch.ones(num_anchors, n_offsets, 1)) if with_masks else None

    @classmethod
    def from_points(cls, points: np.ndarray, voxel_size: float, attr_dim: int, n_offsets: int,
                    with_masks: bool, seed: int = 0) -> "AnchorSet":
        anchors = voxelize(points, voxel_size, seed)
        model = cls(len(anchors), attr_dim, n_offsets, with_masks)
        with torch.no_grad():
            model.positions.copy_(torch.from_numpy(anchors))
            log_scale = np.log(np.sqrt(mean_sq_knn_distance(anchors)))
            model.scaling.copy_(torch.from_numpy(log_scale).float()[:, None].expand(-1, 6))
        return model

    @property
    def num_anchors(self) -> int:
        return self.positions.shape[0]

    def parameter_rows(self) -> dict[str, nn.Parameter]:
        """The per-anchor parameters by name (their first dimension is the anchor index)."""
        return {name: getattr(self, name) for name in self.PER_ANCHOR if getattr(self, name) is not None}

    def scaling_activated(self) -> Tensor:
        return torch.exp(self.scaling)

    def mask_hard(self, threshold: float = 0.01) -> Tensor:
        """Binary offset masks, straight-through: forward (sigmoid(m) > t), gradient of sigmoid(m)."""
        soft = torch.sigmoid(self.masks)
        hard = (soft > threshold).to(soft.dtype)
        return hard + soft - soft.detach()

    def resize(self, num: int) -> None:
        """Give every per-anchor tensor ``num`` rows (zeros), e.g. before loading a checkpoint whose
        anchor count differs after growing and pruning."""
        if num == self.num_anchors:
            return
        self.positions = torch.zeros(num, 3, device=self.positions.device)
        for name, param in self.parameter_rows().items():
            setattr(self, name, nn.Parameter(param.new_zeros((num,) + tuple(param.shape[1:]))))


class AnchorBounds(nn.Module):
    """HAC's anchor bounding box and 16-bit position quantisation.

    The box per axis is the anchors' min/max widened by 20% away from the origin (min * 1.2 if negative
    else * 0.8; max * 1.2 if positive else * 0.8). Positions are stored as q = floor((x - min) / step),
    step = (max - min) / (2^16 - 1) + 1e-6, and used as q * step + min throughout training (straight-through).

    The box is a pair of buffers, so it follows the model's device and is saved with its state."""

    LEVELS = 1 << 16

    def __init__(self, lower: Tensor | None = None, upper: Tensor | None = None):
        super().__init__()
        self.register_buffer("lower", torch.zeros(3) if lower is None else lower.detach().clone().float())
        self.register_buffer("upper", torch.ones(3) if upper is None else upper.detach().clone().float())

    @classmethod
    def around(cls, positions: Tensor) -> "AnchorBounds":
        box = cls()
        box.fit(positions)
        return box.to(positions.device)

    @torch.no_grad()
    def fit(self, positions: Tensor) -> None:
        """Set the box around ``positions`` (HAC's ``update_anchor_bound``), in place."""
        if positions.shape[0] == 0:
            return
        lo, hi = positions.min(dim=0).values, positions.max(dim=0).values
        self.lower.copy_(torch.where(lo < 0, lo * 1.2, lo * 0.8))
        self.upper.copy_(torch.where(hi > 0, hi * 1.2, hi * 0.8))

    @torch.no_grad()
    def assign(self, lower: Tensor, upper: Tensor) -> None:
        self.lower.copy_(lower)
        self.upper.copy_(upper)

    @property
    def step(self) -> Tensor:
        return (self.upper - self.lower) / (self.LEVELS - 1) + 1e-6

    def to_codes(self, positions: Tensor) -> Tensor:
        return torch.clamp(torch.floor((positions - self.lower) / self.step), 0, self.LEVELS - 1).long()

    def from_codes(self, codes: Tensor) -> Tensor:
        return codes.to(self.lower.dtype) * self.step + self.lower

    def quantize(self, positions: Tensor) -> Tensor:
        return self.from_codes(self.to_codes(positions))

    def normalise(self, positions: Tensor) -> Tensor:
        """Positions mapped to [0,1]^3 by the box (the hash grids' input)."""
        return (positions - self.lower) / (self.upper - self.lower)

    def as_json(self) -> dict:
        """The box as JSON numbers: each float32 is a double exactly, and JSON keeps doubles exact."""
        return {"lower": [float(v) for v in self.lower.cpu()], "upper": [float(v) for v in self.upper.cpu()]}
