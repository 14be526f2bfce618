"""Scaffold-GS (Lu et al., CVPR 2024): anchors with learnable features whose K neural Gaussians are
decoded by three MLPs. No entropy model: the size is that of the float32 parameters."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from predictgs.model.anchor_method import BITS_PER_FLOAT, AnchorConfig, AnchorMethod


@dataclass
class ScaffoldConfig(AnchorConfig):
    feat_dim: int = 32
    use_distance: bool = False


class ScaffoldGS(AnchorMethod):
    name = "scaffold"
    config_class = ScaffoldConfig

    def forward(self, view, iteration: int, total: int, training: bool):
        positions = self.anchor_positions()
        visible = self.visible_anchors(view, positions)
        a = self.anchors
        neural = self.decode(view, visible, positions[visible], a.attributes[visible], a.offsets[visible],
                             a.scaling_activated()[visible])
        return neural, {}

    @torch.no_grad()
    def estimated_bits(self) -> dict[str, float]:
        """Uncompressed float32 storage (the reference saves a PLY of these tensors)."""
        n, k = self.anchors.num_anchors, self.config.n_offsets
        return {
            "anchor": float(n * 3 * BITS_PER_FLOAT),
            "feat": float(n * self.config.feat_dim * BITS_PER_FLOAT),
            "scaling": float(n * 6 * BITS_PER_FLOAT),
            "offsets": float(n * 3 * k * BITS_PER_FLOAT),
            "hash": 0.0,
            "masks": 0.0,
            "mlps": float(self.mlp_parameter_count() * BITS_PER_FLOAT),
        }
