"""3DGS's adaptive density control (clone, split, prune, opacity reset) as a strategy object with explicit
state, after gsplat's ``DefaultStrategy`` (gsplat/strategy/default.py and ops.py) and the original
``densify_and_prune`` of 3DGS. Milestones are fractions of the run (``paper_fraction(i)`` = i / 30,000).

Statistics, every iteration before ``refine_stop`` (no host synchronisation: Gaussians the rasterizer
did not draw add exact zeros, a weight rather than a boolean index):
- per Gaussian, the accumulated norm of the screen-space gradient of its mean (NDC units, as the Inria
  rasterizer stores it: ``RenderOutput.screen_grad_norm()``) and the number of iterations it was drawn.
Every ``refine_every`` after ``refine_start`` and before ``refine_stop`` (iterations are 1-based, as in
3DGS's loop: a refinement at i > start with i % every == 0):
- grow: Gaussians whose mean gradient exceeds ``grow_grad2d`` are cloned when their largest scale is
  <= ``grow_scale3d`` x extent (an exact copy appended) and split otherwise (replaced by two Gaussians
  at positions drawn from the Gaussian itself, scales / 1.6, the other parameters copied); clones are
  never split in the same refinement. New rows start with zero Adam moments;
- prune: opacity < ``prune_opacity``, and after the first opacity reset also largest scale >
  ``prune_scale3d`` x extent (3DGS's world-space test; its screen-size test is off, as in gsplat's
  defaults, since a bug kept it from acting in the original code);
- the statistics restart from zero.
Every ``reset_every`` before ``refine_stop``: opacities reset to min(opacity, ``reset_opacity``), their
Adam moments zeroed (after the refinement of that iteration, if any).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..config import bounded, positive
from ..model.splats import GaussianCloud
from ..render import quat_to_rotmat
from .optim import append_rows, keep_rows
from .schedule import at_fraction, interval, paper_fraction

SPLIT_COPIES = 2  # 3DGS's N
SPLIT_SCALE_DIVISOR = 1.6  # 0.8 N


def _fraction(default, optional=False):
    return field(default=default, metadata=bounded(0.0, 1.0, optional=optional))


@dataclass
class GaussianDensifyConfig:
    """gsplat DefaultStrategy's defaults; scales are multiples of the scene extent."""

    refine_start: float = _fraction(paper_fraction(500))
    refine_stop: float = _fraction(paper_fraction(15_000))
    refine_every: float = _fraction(paper_fraction(100))
    reset_every: float | None = _fraction(paper_fraction(3_000), optional=True)  # None: never
    # In the Inria rasterizer's NDC units; low-resolution runs need a larger value (docs/methods.md).
    grow_grad2d: float = field(default=0.0002, metadata=bounded(0.0, None))
    grow_scale3d: float = field(default=0.01, metadata=positive())
    prune_opacity: float = field(default=0.005, metadata=bounded(0.0, 1.0, high_open=True))
    prune_scale3d: float = field(default=0.1, metadata=positive())
    reset_opacity: float = field(default=0.01, metadata=bounded(0.0, 1.0, low_open=True, high_open=True))


class GaussianDensification:
    """The densification strategy of 3DGS. Hooks called by the trainer:
    ``adjusting(iteration)`` (whether this iteration changes the number of Gaussians),
    ``step_post_backward(model, gaussians, render_output, optimizer, step)`` after each backward pass
    (``model.cloud`` is the :class:`GaussianCloud`), ``state_dict`` / ``load_state_dict``."""

    def __init__(self, config: GaussianDensifyConfig, extent: float, total_iterations: int, seed: int = 0,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.extent = float(extent)
        self.total = total_iterations
        # On the model's device: the positions of split Gaussians are drawn where they are used.
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.start = at_fraction(config.refine_start, total_iterations)
        self.stop = at_fraction(config.refine_stop, total_iterations)
        self.every = interval(config.refine_every, total_iterations)
        self.reset_every = None if config.reset_every is None else interval(config.reset_every, total_iterations)
        self.grad2d: Tensor | None = None
        self.count: Tensor | None = None

    # -- windows -------------------------------------------------------------------------------------
    def collecting(self, iteration: int) -> bool:
        return iteration < self.stop

    def refining(self, iteration: int) -> bool:
        return self.collecting(iteration) and iteration > self.start and iteration % self.every == 0

    def resetting(self, iteration: int) -> bool:
        return self.collecting(iteration) and self.reset_every is not None and iteration % self.reset_every == 0

    def adjusting(self, iteration: int) -> bool:
        """Iterations that add or remove Gaussians (the trainer synchronises on them)."""
        return self.refining(iteration)

    @torch.no_grad()
    def step_post_backward(self, model, gaussians, render, optimizer, step) -> dict:
        """Statistics of this iteration, then refinement and opacity reset when due. -> counts for the log."""
        iteration = step.iteration
        if not self.collecting(iteration):
            return {}
        cloud = model.cloud
        self.accumulate(cloud, render.radii, render.screen_grad_norm())
        events = {}
        if self.refining(iteration):
            events.update(self.refine(cloud, optimizer, iteration))
        if self.resetting(iteration):
            self.reset_opacities(cloud, optimizer)
            events["opacity_reset"] = cloud.num
        return events

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "grad2d": self.grad2d, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.grad2d, self.count = state["grad2d"], state["count"]

    # -- statistics ----------------------------------------------------------------------------------
    def _ensure(self, cloud: GaussianCloud) -> None:
        n = cloud.num
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self.grad2d = torch.zeros(n, device=cloud.means.device)
            self.count = torch.zeros(n, device=cloud.means.device)

    @torch.no_grad()
    def accumulate(self, cloud: GaussianCloud, radii: Tensor, grad_norm: Tensor) -> None:
        """Add one iteration's statistics; ``radii`` and ``grad_norm`` are per Gaussian of the cloud."""
        self._ensure(cloud)
        drawn = (radii > 0).to(self.grad2d.dtype)
        self.grad2d += grad_norm.to(self.grad2d.dtype) * drawn
        self.count += drawn

    # -- refinement ----------------------------------------------------------------------------------
    @torch.no_grad()
    def refine(self, cloud: GaussianCloud, optimizer: torch.optim.Optimizer, iteration: int) -> dict:
        """Clone, split, prune, restart the statistics. -> counts for the log."""
        self._ensure(cloud)
        c = self.config
        mean_grad = self.grad2d / self.count.clamp_min(1)
        high = mean_grad > c.grow_grad2d
        small = cloud.scales_activated().amax(dim=1) <= c.grow_scale3d * self.extent
        cloned = self.clone(cloud, optimizer, high & small)
        split_mask = torch.cat([high & ~small, torch.zeros(cloned, dtype=torch.bool, device=high.device)])
        split = self.split(cloud, optimizer, split_mask)
        pruned = self.prune(cloud, optimizer, iteration)
        self.grad2d = torch.zeros(cloud.num, device=cloud.means.device)
        self.count = torch.zeros(cloud.num, device=cloud.means.device)
        return {"cloned": cloned, "split": split, "pruned": pruned, "gaussians": cloud.num}

    def clone(self, cloud: GaussianCloud, optimizer, mask: Tensor) -> int:
        """Append an exact copy of each masked Gaussian. -> the number cloned."""
        selected = torch.nonzero(mask).squeeze(1)
        if selected.numel() == 0:
            return 0
        append_rows(optimizer, cloud, {name: p.detach().index_select(0, selected)
                                       for name, p in cloud.parameter_rows().items()})
        return int(selected.numel())

    def split(self, cloud: GaussianCloud, optimizer, mask: Tensor) -> int:
        """Replace each masked Gaussian by two drawn from it (positions mean + R S z, z ~ N(0, I); scales
        divided by 1.6; the other parameters copied). -> the number split."""
        selected = torch.nonzero(mask).squeeze(1)
        n = int(selected.numel())
        if n == 0:
            return 0
        rows = {name: p.detach().index_select(0, selected) for name, p in cloud.parameter_rows().items()}
        scales = torch.exp(rows["scales"])
        rotations = quat_to_rotmat(rows["quats"])
        noise = torch.randn(SPLIT_COPIES, n, 3, generator=self.generator, device=self.generator.device)
        samples = torch.einsum("nij,nj,bnj->bni", rotations, scales, noise.to(scales.dtype))
        new = {name: value.repeat(SPLIT_COPIES, *([1] * (value.dim() - 1))) for name, value in rows.items()}
        new["means"] = (rows["means"][None] + samples).reshape(-1, 3)
        new["scales"] = torch.log(scales / SPLIT_SCALE_DIVISOR).repeat(SPLIT_COPIES, 1)
        keep_rows(optimizer, cloud, list(cloud.parameter_rows()), ~mask)
        append_rows(optimizer, cloud, new)
        return n

    def prune(self, cloud: GaussianCloud, optimizer, iteration: int) -> int:
        """Remove transparent Gaussians, and after the first opacity reset too large ones. -> the number pruned."""
        c = self.config
        prune = cloud.opacities_activated() < c.prune_opacity
        if self.reset_every is not None and iteration > self.reset_every:
            prune |= cloud.scales_activated().amax(dim=1) > c.prune_scale3d * self.extent
        count = int(prune.sum())
        if count:
            keep_rows(optimizer, cloud, list(cloud.parameter_rows()), ~prune)
        return count

    @torch.no_grad()
    def reset_opacities(self, cloud: GaussianCloud, optimizer) -> None:
        """Opacities to min(opacity, reset_opacity); their Adam moments restart from zero."""
        value = self.config.reset_opacity
        cloud.opacities.clamp_(max=math.log(value / (1.0 - value)))
        state = optimizer.state.get(cloud.opacities)
        if state:
            state["exp_avg"].zero_()
            state["exp_avg_sq"].zero_()
