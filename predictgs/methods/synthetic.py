"""HAC models with random parameters of any anchor count, for codec benchmarks and tests: no training,
but values distributed as the model's own entropy model predicts, so that streams have realistic
alphabets and rates.

The context's output layer is set so that, per element, sigma = SIGMA_STEPS[group] x Q0 (about 3 bits
per attribute and offset value, ~5 per scaling value), every step is Q0, and the predicted means vary
from anchor to anchor; the values are then drawn from those Gaussians (activated scaling kept
positive). About 70% of the offsets are masked on.

``outliers`` (a share of the coded values) and ``outlier_steps`` make the model's predictions wrong
for some values, as trained models' are: each value is moved, with probability ``outliers``, by
+-``outlier_steps`` quantisation steps Q0 of its group (the sign at random; scaling stays positive).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .base import cpu_seeded

SIGMA_STEPS = {"attributes": 2.0, "scaling": 8.0, "offsets": 2.0}  # the attribute group is "feat"/"residual"
MEAN_SCALING = 0.05


def random_hac(num_anchors: int, seed: int = 0, config=None, method_class=None, outliers: float = 0.0,
               outlier_steps: float = 300.0):
    """A HAC-family model (``method_class``, default HAC) with about ``num_anchors`` anchors on a
    lattice inside [-1, 1]^3; ``outliers``: see the module's docstring."""
    from baselines.hac import HAC, HACConfig

    cls = method_class or HAC
    voxel = 2.0 / 256
    config = dataclasses.replace(config or HACConfig(), voxel_size=voxel)
    rng = np.random.default_rng(seed)
    cells = np.unique(rng.integers(0, 256**3, size=int(num_anchors * 1.1) + 16))
    cells = rng.permutation(cells)[:num_anchors]
    points = np.stack(np.unravel_index(cells, (256,) * 3), axis=1) * voxel - 1.0 + voxel / 2
    with cpu_seeded(seed):
        model = cls.from_points(config, points.astype(np.float32), extent=2.0, seed=seed)
        _shape_context(model)
        _draw_values(model)
        if outliers > 0:
            _add_outliers(model, outliers, outlier_steps)
    return model.eval()


@torch.no_grad()
def _shape_context(model) -> None:
    ctx = model.context
    last = ctx.mlp_grid[-1]
    last.weight.mul_(0.1)
    last.bias.zero_()
    start = 0
    for group, dim in ctx.groups.items():  # [mean, scale] per group, then one step adjustment per group (left at 0)
        role = group if group in SIGMA_STEPS else "attributes"
        if group == "scaling":
            last.bias[start:start + dim] = MEAN_SCALING
        last.bias[start + dim:start + 2 * dim] = SIGMA_STEPS[role] * ctx.base_steps[group]
        last.weight[start + dim:start + 2 * dim].mul_(ctx.base_steps[group])  # sigma stays positive
        start += 2 * dim


@torch.no_grad()
def _draw_values(model) -> None:
    a = model.anchors
    positions = model.anchor_positions()
    for start in range(0, a.num_anchors, 4096):
        rows = slice(start, start + 4096)
        dist = model.context.distributions(model.bounds.normalise(positions[rows]))
        draw = {g: dist.mean[g] + dist.scale[g].abs() * torch.randn_like(dist.mean[g]) for g in model.context.groups}
        a.attributes[rows] = draw[model.attribute_group]
        a.scaling[rows] = torch.log(draw["scaling"].clamp_min(1e-3))
        a.offsets[rows] = draw["offsets"].reshape(-1, a.n_offsets, 3)
    a.masks.copy_(torch.where(torch.rand_like(a.masks) < 0.7, 4.0, -8.0))


@torch.no_grad()
def _add_outliers(model, share: float, steps: float) -> None:
    a, ctx = model.anchors, model.context
    values = {model.attribute_group: a.attributes, "scaling": a.scaling, "offsets": a.offsets}
    for group, tensor in values.items():
        hit = torch.rand(tensor.shape) < share
        sign = torch.where(torch.rand(tensor.shape) < 0.5, -1.0, 1.0)
        shift = hit * sign * (steps * ctx.base_steps[group])
        if group == "scaling":  # stored as log; the coded value is the activated scaling
            tensor.copy_(torch.log((torch.exp(tensor) + shift).clamp_min(1e-3)))
        else:
            tensor.add_(shift)
