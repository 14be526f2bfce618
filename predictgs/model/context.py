"""HAC's entropy model: a binarised hash-grid context queried at the (quantised) anchor position, decoded
by ``mlp_grid`` into a mean and a scale per coded dimension and one quantisation-step adjustment per
attribute group. Predict-GS uses the same model with its output layer sized for the residual f_r.

Coded attributes per anchor (HAC §2.2 of the reference notes):
  attributes  f (HAC, 50-d) or f_r (Predict-GS, 25-d), raw values,        Q0 = 1
  scaling     the activated (exp) 6-d scaling,                            Q0 = 0.001
  offsets     the raw K x 3 offsets (before multiplying by scaling),      Q0 = 0.2
Step per anchor and group: Q = Q0 (1 + tanh(adj)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..entropy import adaptive_step, clamp_around, gaussian_bits, quantize
from ..nn.hashgrid import GridPlaneEncoding

GROUPS = ("attributes", "scaling", "offsets")


@dataclass
class ContextConfig:
    log2_grid: int = 13
    log2_plane: int = 15
    features_per_level: int = 4
    hidden_dim: int = 100  # HAC: 2 x feat_dim (50)
    q0_attributes: float = 1.0
    q0_scaling: float = 0.001
    q0_offsets: float = 0.2


@dataclass
class AttributeDistribution:
    """Per-anchor Gaussian parameters for each group, plus the quantisation steps [N,1]."""

    mean: dict[str, Tensor]
    scale: dict[str, Tensor]
    step: dict[str, Tensor]

    def rows(self, index: Tensor) -> "AttributeDistribution":
        def pick(d):
            return {g: t[index] for g, t in d.items()}

        return AttributeDistribution(pick(self.mean), pick(self.scale), pick(self.step))


class ContextModel(nn.Module):
    def __init__(self, attr_dim: int, n_offsets: int, config: ContextConfig):
        super().__init__()
        self.config = config
        self.dims = {"attributes": attr_dim, "scaling": 6, "offsets": 3 * n_offsets}
        self.encoding = GridPlaneEncoding(log2_grid=config.log2_grid, log2_plane=config.log2_plane,
                                          features_per_level=config.features_per_level)
        out_dim = 2 * sum(self.dims.values()) + len(GROUPS)
        self.mlp_grid = nn.Sequential(nn.Linear(self.encoding.output_dim, config.hidden_dim), nn.ReLU(True),
                                      nn.Linear(config.hidden_dim, out_dim))

    def base_step(self, group: str) -> float:
        return getattr(self.config, f"q0_{group}")

    def forward(self, normalised_positions: Tensor) -> AttributeDistribution:
        out = self.mlp_grid(self.encoding(normalised_positions))
        sizes = [self.dims[g] for g in GROUPS for _ in (0, 1)] + [1] * len(GROUPS)
        parts = torch.split(out, sizes, dim=-1)
        mean, scale, step = {}, {}, {}
        for i, group in enumerate(GROUPS):
            mean[group], scale[group] = parts[2 * i], parts[2 * i + 1]
            step[group] = adaptive_step(self.base_step(group), parts[2 * len(GROUPS) + i])
        return AttributeDistribution(mean, scale, step)


def quantise_groups(values: dict[str, Tensor], steps: dict[str, Tensor], mode: str,
                    centers: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Quantise each group with its per-anchor step: "noise" in training, "round" at test time (after
    HAC's clamp to the parameter mean +- 15000 Q)."""
    out = {}
    for group, x in values.items():
        step = steps[group]
        if mode == "round":
            x = clamp_around(x, step, None if centers is None else centers[group])
        out[group] = quantize(x, step, mode)
    return out


def group_bits(values: dict[str, Tensor], dist: AttributeDistribution,
               centers: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Estimated bits per element of each group, [N, dim] each."""
    bits = {}
    for group, x in values.items():
        step = dist.step[group].expand_as(x)
        x = clamp_around(x, step, None if centers is None else centers[group])
        bits[group] = gaussian_bits(x, dist.mean[group], dist.scale[group], step)
    return bits
