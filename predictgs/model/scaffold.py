"""Scaffold-GS's neural Gaussians: K Gaussians per visible anchor, their attributes decoded by MLPs from
the anchor feature, the viewing direction and (HAC, Predict-GS) the viewing distance.

Per anchor i and offset k (Scaffold-GS ``generate_neural_gaussians``):
    centre    = x_i + o_ik * l_i[0:3]
    scale     = l_i[3:6] * sigmoid(cov_ik[0:3])
    rotation  = normalise(cov_ik[3:7])            (quaternion, w first)
    opacity   = tanh output; Gaussians with opacity <= 0 are not spawned
    colour    = sigmoid output
where l_i is the activated (exp) 6-d anchor scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .gaussians import Gaussians


def view_inputs(anchor_positions: Tensor, camera_center: Tensor) -> tuple[Tensor, Tensor]:
    """Unit direction camera -> anchor [N,3] and distance [N,1]."""
    ob_view = anchor_positions - camera_center
    dist = ob_view.norm(dim=1, keepdim=True)
    return ob_view / dist.clamp_min(1e-12), dist


class ScaffoldDecoder(nn.Module):
    """mlp_opacity (tanh), mlp_cov (7 per Gaussian, no activation), mlp_color (sigmoid); one hidden layer
    of width ``feat_dim`` each, as in Scaffold-GS."""

    def __init__(self, feat_dim: int, n_offsets: int, use_distance: bool):
        super().__init__()
        self.n_offsets = n_offsets
        self.use_distance = use_distance
        in_dim = feat_dim + 3 + int(use_distance)
        # Output activations (tanh, sigmoid) are applied in forward() so that Predict-GS can add its
        # residual corrections to the pre-activation values (see logits()).
        self.mlp_opacity = nn.Sequential(nn.Linear(in_dim, feat_dim), nn.ReLU(True), nn.Linear(feat_dim, n_offsets))
        self.mlp_cov = nn.Sequential(nn.Linear(in_dim, feat_dim), nn.ReLU(True), nn.Linear(feat_dim, 7 * n_offsets))
        self.mlp_color = nn.Sequential(nn.Linear(in_dim, feat_dim), nn.ReLU(True), nn.Linear(feat_dim, 3 * n_offsets))

    def inputs(self, features: Tensor, dirs: Tensor, dist: Tensor) -> Tensor:
        parts = [features, dirs] + ([dist] if self.use_distance else [])
        return torch.cat(parts, dim=1)

    def logits(self, features: Tensor, dirs: Tensor, dist: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pre-activation outputs: opacity [N,K] (before tanh), cov [N,K,7], colour [N,K,3] (before
        sigmoid)."""
        x = self.inputs(features, dirs, dist)
        n, k = x.shape[0], self.n_offsets
        return self.mlp_opacity(x), self.mlp_cov(x).reshape(n, k, 7), self.mlp_color(x).reshape(n, k, 3)

    def forward(self, features: Tensor, dirs: Tensor, dist: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> opacity [N,K] (tanh), cov [N,K,7], colour [N,K,3] (sigmoid), as in Scaffold-GS."""
        opacity, cov, color = self.logits(features, dirs, dist)
        return torch.tanh(opacity), cov, torch.sigmoid(color)


@dataclass(kw_only=True)
class NeuralGaussians(Gaussians):
    """Spawned Gaussians of the visible anchors, ready for the rasterizer, and what anchor growing
    needs to know about them."""

    visible_anchors: Tensor  # [V] indices into the anchor set
    spawned: Tensor  # [V*K] bool: which of the visible anchors' Gaussians were spawned
    spawned_index: Tensor  # [M] their positions in the V*K flattened Gaussians of the visible anchors
    neural_opacity: Tensor  # [V,K] (after masks), for the densification statistics


def assemble_gaussians(
    visible_anchors: Tensor,
    anchor_positions: Tensor,
    offsets: Tensor,
    scaling: Tensor,
    opacity: Tensor,
    scale_logits: Tensor,
    rotations: Tensor,
    colors: Tensor,
    gaussian_masks: Tensor | None = None,
    drop_masked: bool = False,
) -> NeuralGaussians:
    """Spawn Gaussians with opacity > 0. Inputs are per visible anchor: positions [V,3], raw offsets
    [V,K,3], activated scaling [V,6], opacity [V,K], scale logits [V,K,3], quaternions [V,K,4], colours
    [V,K,3].

    ``gaussian_masks`` [V,K,1] (HAC++'s way; HAC gates the opacity before spawning instead): in training
    the spawned Gaussians' opacity and scale are multiplied by their mask; with ``drop_masked`` (test
    time) masked Gaussians are not spawned."""
    spawned = (opacity > 0).reshape(-1)
    if gaussian_masks is not None and drop_masked:
        spawned = spawned & (gaussian_masks.reshape(-1) > 0)
    # One nonzero (a host synchronisation: the count decides the shapes) and gathers, instead of one
    # boolean-mask index (and synchronisation) per attribute.
    index = torch.nonzero(spawned).squeeze(1)
    means = (anchor_positions[:, None, :] + offsets * scaling[:, None, 0:3]).reshape(-1, 3)
    scales = (scaling[:, None, 3:6] * torch.sigmoid(scale_logits)).reshape(-1, 3)
    quats = nn.functional.normalize(rotations.reshape(-1, 4), dim=-1)
    opacities = opacity.reshape(-1).index_select(0, index)
    scales = scales.index_select(0, index)
    if gaussian_masks is not None and not drop_masked:
        mask = gaussian_masks.reshape(-1).index_select(0, index)
        opacities, scales = opacities * mask, scales * mask[:, None]
    return NeuralGaussians(
        means=means.index_select(0, index), quats=quats.index_select(0, index),
        scales=scales, opacities=opacities,
        colors=colors.reshape(-1, 3).index_select(0, index), visible_anchors=visible_anchors, spawned=spawned,
        spawned_index=index, neural_opacity=opacity,
    )
