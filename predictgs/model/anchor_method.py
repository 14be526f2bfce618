"""What every anchor-based method shares: the anchors, Scaffold-GS's decoder, visibility prefilter,
parameter groups and learning rates. Scaffold-GS, HAC and Predict-GS are small subclasses.

A method turns a view into spawned Gaussians plus method-specific loss terms:

    neural, losses = method(view, iteration, total, training=True)

The training loop renders ``neural``, adds the Scaffold-GS loss and ``sum(losses.values())``, and runs
anchor growing through ``method.anchors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..render import visible_mask
from ..train.densify import DensifyConfig
from ..train.optim import ParamGroup
from ..train.schedule import ExponentialLR
from .anchors import AnchorSet, auto_voxel_size
from .scaffold import NeuralGaussians, ScaffoldDecoder, assemble_gaussians, view_inputs
from .view import View

BITS_PER_FLOAT = 32
BIT_CATEGORIES = ("anchor", "feat", "scaling", "offsets", "hash", "masks", "mlps")


@dataclass
class AnchorConfig:
    """Options shared by the anchor methods. Learning rates are (init, final) of a log-linear decay
    over the run; ``*_scaled`` ones are multiplied by the scene extent (Scaffold-GS's spatial_lr_scale)."""

    feat_dim: int = 32
    n_offsets: int = 10
    use_distance: bool = False
    voxel_size: float | None = None  # None: automatic (see anchors.auto_voxel_size)
    lambda_dssim: float = 0.2
    lambda_scale: float = 0.01
    lr_offset_scaled: tuple[float, float] = (0.01, 0.0001)
    lr_attributes: tuple[float, float] = (0.0075, 0.0075)
    lr_scaling: tuple[float, float] = (0.007, 0.007)
    lr_mlp_opacity: tuple[float, float] = (0.002, 0.00002)
    lr_mlp_cov: tuple[float, float] = (0.004, 0.004)
    lr_mlp_color: tuple[float, float] = (0.008, 0.00005)
    densify: DensifyConfig = field(default_factory=DensifyConfig)


def lr(pair: tuple[float, float], scale: float = 1.0) -> ExponentialLR:
    return ExponentialLR(pair[0] * scale, pair[1] * scale)


class AnchorMethod(nn.Module):
    name: ClassVar[str] = "anchor"
    config_class: ClassVar[type] = AnchorConfig
    with_masks: ClassVar[bool] = False

    def __init__(self, config: AnchorConfig, anchors: AnchorSet, extent: float, voxel_size: float):
        super().__init__()
        self.config = config
        self.anchors = anchors
        self.extent = float(extent)
        self.voxel_size = float(voxel_size)
        self.decoder = ScaffoldDecoder(config.feat_dim, config.n_offsets, config.use_distance)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def attr_dim(cls, config) -> int:
        """Dimension of the per-anchor coded vector (features; residuals in Predict-GS)."""
        return config.feat_dim

    @classmethod
    def from_points(cls, config, points: np.ndarray, extent: float, seed: int = 0) -> "AnchorMethod":
        voxel = config.voxel_size if config.voxel_size else auto_voxel_size(points)
        anchors = AnchorSet.from_points(points, voxel, cls.attr_dim(config), config.n_offsets, cls.with_masks, seed)
        with torch.random.fork_rng(devices=[]):  # the same seed gives the same initial networks
            torch.manual_seed(seed)
            return cls(config, anchors, extent, voxel)

    @classmethod
    def empty(cls, config, extent: float, voxel_size: float) -> "AnchorMethod":
        """A model to load a checkpoint into (the anchor count follows the checkpoint)."""
        anchors = AnchorSet(0, cls.attr_dim(config), config.n_offsets, cls.with_masks)
        return cls(config, anchors, extent, voxel_size)

    # -- optimisation --------------------------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        groups = [
            ParamGroup("offsets", [self.anchors.offsets], lr(c.lr_offset_scaled, self.extent)),
            ParamGroup("attributes", [self.anchors.attributes], lr(c.lr_attributes)),
            ParamGroup("scaling", [self.anchors.scaling], lr(c.lr_scaling)),
            ParamGroup("mlp_opacity", list(self.decoder.mlp_opacity.parameters()), lr(c.lr_mlp_opacity)),
            ParamGroup("mlp_cov", list(self.decoder.mlp_cov.parameters()), lr(c.lr_mlp_cov)),
            ParamGroup("mlp_color", list(self.decoder.mlp_color.parameters()), lr(c.lr_mlp_color)),
        ]
        return groups

    def densify_config(self) -> DensifyConfig:
        return self.config.densify

    def on_iteration_start(self, iteration: int, total: int) -> None:
        """Schedule hooks (e.g. HAC's bounding-box update)."""

    def training_scale(self, iteration: int, total: int) -> float:
        """Resolution factor of the training targets at this iteration (Predict-GS's progressive
        downsampling); 1.0 for the baselines."""
        return 1.0

    # -- forward -------------------------------------------------------------------------------------
    def anchor_positions(self) -> Tensor:
        return self.anchors.positions

    def visible_anchors(self, view: View, positions: Tensor) -> Tensor:
        """Scaffold-GS's prefilter: anchors drawn as Gaussians with their first three scales."""
        scales = self.anchors.scaling_activated()[:, 0:3].detach()
        return torch.nonzero(visible_mask(positions, scales, **view.render_args())).squeeze(1)

    def decode(self, view: View, visible: Tensor, positions: Tensor, features: Tensor, offsets: Tensor,
               scaling: Tensor, masks: Tensor | None = None) -> NeuralGaussians:
        """Scaffold-GS's neural Gaussians for the visible anchors (rows already restricted to them)."""
        dirs, dist = view_inputs(positions, view.center)
        opacity, cov, color = self.decoder(features, dirs, dist)
        if masks is not None:
            opacity = opacity * masks[..., 0]
        return assemble_gaussians(visible, positions, offsets, scaling, opacity, cov[..., 0:3], cov[..., 3:7],
                                  color)

    def forward(self, view: View, iteration: int, total: int, training: bool):
        raise NotImplementedError

    # -- size ----------------------------------------------------------------------------------------
    def mlp_parameter_count(self) -> int:
        return sum(p.numel() for p in self.decoder.parameters())

    def kept_anchor_count(self) -> int:
        """Anchors the bitstream stores."""
        return self.anchors.num_anchors

    def active_gaussian_count(self) -> int:
        """Neural Gaussians the stored anchors can spawn (K per anchor unless masked)."""
        return self.anchors.num_anchors * self.config.n_offsets

    def extra_metrics(self) -> dict:
        """Method-specific entries for metrics.json."""
        return {}

    @torch.no_grad()
    def estimated_bits(self) -> dict[str, float]:
        raise NotImplementedError

    def extra_state(self) -> dict:
        """Non-parameter state to checkpoint (e.g. HAC's bounding box)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
