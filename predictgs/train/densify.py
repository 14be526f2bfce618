"""Scaffold-GS anchor growing and pruning as a strategy object with explicit state.

Statistics (every iteration inside the statistics window):
- per visible anchor: accumulated max(neural opacity, 0) over its K Gaussians and a visit count;
- per spawned, drawn Gaussian: accumulated screen-space gradient norm (NDC units) and a count.
Every ``update_interval`` inside the update window (``adjust``):
- growing, levels i = 0..update_depth-1: offsets whose mean gradient >= threshold * 2^i (and seen often
  enough) are kept with probability 1 - 0.5^(i+1); their Gaussian centres snapped to a lattice of
  voxel_size * 16 / 4^i give new anchors in cells not yet occupied (feature = element-wise max of the
  parents', offsets 0, log scaling log(cell size), masks on). If level 0 adds nothing the deeper levels
  are skipped, as in the reference;
- pruning: anchors seen more than interval * 0.8 times whose accumulated opacity is below
  min_opacity * visits are removed;
- Scaffold-GS's quirk is kept: every adjustment clamps the log base scale (scaling[:, 3:]) at 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..model.anchors import AnchorSet
from ..model.scaffold import NeuralGaussians
from .optim import append_rows, keep_rows
from ..config import bounded
from .schedule import at_fraction, interval, paper_fraction


def _fraction(default, optional=False):
    return field(default=default, metadata=bounded(0.0, 1.0, optional=optional))


@dataclass
class DensifyConfig:
    start_stat: float = _fraction(paper_fraction(500))
    update_from: float = _fraction(paper_fraction(1500))
    update_interval: float = _fraction(paper_fraction(100))
    update_until: float = _fraction(paper_fraction(15000))
    grad_threshold: float = field(default=0.0002, metadata=bounded(0.0, None))
    success_threshold: float = field(default=0.8, metadata=bounded(0.0, None))
    min_opacity: float = field(default=0.005, metadata=bounded(0.0, 1.0))
    update_depth: int = field(default=3, metadata=bounded(1, 16))
    hierarchy_factor: int = field(default=4, metadata=bounded(1, 64))
    init_factor: int = field(default=16, metadata=bounded(1, 4096))
    # HAC pauses anchor adjustment while the model adapts to quantisation noise (3000 <= it < 4000).
    pause_from: float | None = _fraction(None, optional=True)
    pause_until: float | None = _fraction(None, optional=True)


class AnchorGrowth:
    """The densification strategy of the anchor methods. Hooks called by the trainer:
    ``step_post_backward(model, gaussians, render_output, optimizer, step)`` after each backward pass
    (statistics, and growing/pruning on the update iterations); ``state_dict``/``load_state_dict``."""

    def __init__(self, config: DensifyConfig, voxel_size: float, total_iterations: int, seed: int = 0,
                 device: torch.device | str = "cpu"):
        self.config = config
        self.voxel_size = voxel_size
        self.total = total_iterations
        # On the model's device: the random keep-rates of anchor growing are drawn where they are used.
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.check_interval = interval(config.update_interval, total_iterations)
        self.offset_grad = self.offset_count = self.opacity_accum = self.anchor_count = None

    # -- windows -------------------------------------------------------------------------------------
    def collecting(self, iteration: int) -> bool:
        c = self.config
        return at_fraction(c.start_stat, self.total) < iteration < at_fraction(c.update_until, self.total)

    def adjusting(self, iteration: int) -> bool:
        c = self.config
        if not self.collecting(iteration) or iteration <= at_fraction(c.update_from, self.total):
            return False
        if c.pause_from is not None and at_fraction(c.pause_from, self.total) <= iteration < at_fraction(
                c.pause_until, self.total):
            return False
        return iteration % self.check_interval == 0

    @torch.no_grad()
    def step_post_backward(self, model, neural: NeuralGaussians, render, optimizer, step) -> dict:
        """Statistics of this iteration, then growing and pruning on an update iteration. -> counts."""
        if not self.collecting(step.iteration):
            return {}
        self.accumulate(model.anchors, neural, render.radii, render.screen_grad_norm())
        if self.adjusting(step.iteration):
            return self.adjust(model.anchors, optimizer)
        return {}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "offset_grad": self.offset_grad,
                "offset_count": self.offset_count, "opacity_accum": self.opacity_accum,
                "anchor_count": self.anchor_count}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.offset_grad, self.offset_count = state["offset_grad"], state["offset_count"]
        self.opacity_accum, self.anchor_count = state["opacity_accum"], state["anchor_count"]

    # -- statistics ----------------------------------------------------------------------------------
    def _ensure(self, anchors: AnchorSet) -> None:
        n, k = anchors.num_anchors, anchors.n_offsets
        device = anchors.positions.device
        if self.offset_grad is None or self.opacity_accum.shape[0] != n:
            self.offset_grad = torch.zeros(n * k, device=device)
            self.offset_count = torch.zeros(n * k, device=device)
            self.opacity_accum = torch.zeros(n, device=device)
            self.anchor_count = torch.zeros(n, device=device)

    @torch.no_grad()
    def accumulate(self, anchors: AnchorSet, neural: NeuralGaussians, radii: Tensor, grad_norm: Tensor) -> None:
        """Add one iteration's statistics; ``radii`` and ``grad_norm`` are per spawned Gaussian."""
        self._ensure(anchors)
        k = anchors.n_offsets
        visible = neural.visible_anchors
        self.opacity_accum.index_add_(0, visible, neural.neural_opacity.clamp(min=0).sum(dim=1))
        self.anchor_count.index_add_(0, visible, torch.ones_like(visible, dtype=self.anchor_count.dtype))
        gauss_index = (visible[:, None] * k + torch.arange(k, device=visible.device)).reshape(-1)
        gauss_index = gauss_index.index_select(0, neural.spawned_index)
        # Gaussians that were not drawn add exact zeros (a weight, not a boolean index: no synchronisation).
        drawn = (radii > 0).to(grad_norm.dtype)
        self.offset_grad.index_add_(0, gauss_index, grad_norm * drawn)
        self.offset_count.index_add_(0, gauss_index, drawn)

    # -- adjustment ----------------------------------------------------------------------------------
    @torch.no_grad()
    def adjust(self, anchors: AnchorSet, optimizer: torch.optim.Optimizer) -> dict:
        """Grow then prune. Returns counts for the log."""
        self._ensure(anchors)
        c = self.config
        k = anchors.n_offsets
        mean_grad = torch.nan_to_num(self.offset_grad / self.offset_count, nan=0.0)
        eligible = self.offset_count > self.check_interval * c.success_threshold * 0.5
        grown = self._grow(anchors, optimizer, mean_grad, eligible)

        # Reset the statistics of the offsets that were judged; new anchors start from zero.
        self.offset_grad[eligible] = 0
        self.offset_count[eligible] = 0
        pad = torch.zeros(grown * k, device=self.offset_grad.device)
        self.offset_grad = torch.cat([self.offset_grad, pad])
        self.offset_count = torch.cat([self.offset_count, pad])
        zeros = torch.zeros(grown, device=self.opacity_accum.device)
        self.opacity_accum = torch.cat([self.opacity_accum, zeros])
        self.anchor_count = torch.cat([self.anchor_count, zeros])

        judged = self.anchor_count > self.check_interval * c.success_threshold
        prune = (self.opacity_accum < c.min_opacity * self.anchor_count) & judged
        self.opacity_accum[judged] = 0
        self.anchor_count[judged] = 0
        keep = ~prune
        if prune.any():
            keep_offsets = keep[:, None].expand(-1, k).reshape(-1)
            self.offset_grad = self.offset_grad[keep_offsets]
            self.offset_count = self.offset_count[keep_offsets]
            self.opacity_accum = self.opacity_accum[keep]
            self.anchor_count = self.anchor_count[keep]
            anchors.positions = anchors.positions[keep]
            keep_rows(optimizer, anchors, list(anchors.parameter_rows()), keep)
        anchors.scaling.data[:, 3:].clamp_(max=0.05)
        return {"grown": grown, "pruned": int(prune.sum()), "anchors": anchors.num_anchors}

    def _grow(self, anchors: AnchorSet, optimizer, mean_grad: Tensor, eligible: Tensor) -> int:
        c = self.config
        k = anchors.n_offsets
        n_before = anchors.num_anchors
        candidate_base = eligible.clone()
        for level in range(c.update_depth):
            threshold = c.grad_threshold * (c.hierarchy_factor // 2) ** level
            keep_rate = torch.rand(candidate_base.shape[0], generator=self.generator, device=self.generator.device)
            candidates = (mean_grad >= threshold) & candidate_base & (keep_rate > 0.5 ** (level + 1))
            # Rows of anchors added at earlier levels are never candidates.
            candidates = torch.cat([candidates, candidates.new_zeros(anchors.num_anchors * k - candidates.shape[0])])
            size = self.voxel_size * (c.init_factor // (c.hierarchy_factor ** level))
            centres = anchors.positions[:, None, :] + anchors.offsets * torch.exp(anchors.scaling[:, None, 0:3])
            cells = torch.round(centres.reshape(-1, 3)[candidates] / size)
            if cells.shape[0] == 0:
                if level == 0:
                    break
                continue
            cells, inverse = _unique_rows(cells)
            occupied = _rows_in(cells, torch.round(anchors.positions / size))
            new_cells = ~occupied
            if not new_cells.any():
                if level == 0:
                    break
                continue
            attr_dim = anchors.attributes.shape[1]
            parent_attr = anchors.attributes.detach()[:, None, :].expand(-1, k, -1).reshape(anchors.num_anchors * k, attr_dim)
            pooled = torch.full((cells.shape[0], parent_attr.shape[1]), -math.inf, device=parent_attr.device)
            pooled = pooled.scatter_reduce(0, inverse[:, None].expand(-1, parent_attr.shape[1]),
                                           parent_attr[candidates], reduce="amax", include_self=True)
            m = int(new_cells.sum())
            rows = {
                "attributes": pooled[new_cells],
                "offsets": torch.zeros(m, k, 3, device=pooled.device),
                "scaling": torch.full((m, 6), math.log(size), device=pooled.device),
            }
            if anchors.masks is not None:
                rows["masks"] = torch.ones(m, k, 1, device=pooled.device)
            anchors.positions = torch.cat([anchors.positions, (cells[new_cells] * size).to(anchors.positions.dtype)])
            append_rows(optimizer, anchors, rows)
        return anchors.num_anchors - n_before


def _cell_keys(*cell_sets: Tensor) -> list[Tensor] | None:
    """One int64 key per integer-valued row (x, y, z), ordered like the rows lexicographically, with a
    common origin for all sets; None if the cells span too many values for 63 bits."""
    stacked = torch.cat(cell_sets)
    low = stacked.min(0).values
    span = (stacked.max(0).values - low + 1).to(torch.float64)
    if float(span.prod()) >= 2.0**62:
        return None
    span = span.long()
    keys = []
    for cells in cell_sets:
        c = (cells - low).long()
        keys.append((c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2])
    return keys


def _unique_rows(cells: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.unique(cells, dim=0, return_inverse=True)`` for integer-valued [N, 3] rows, through 1-D
    keys (the same result: unique sorts rows lexicographically, and so do the keys); unique with dim=0
    compares rows one by one on the CPU, which made anchor growing ~10% of a training step."""
    keys = _cell_keys(cells)
    if keys is None:
        return torch.unique(cells, dim=0, return_inverse=True)
    unique_keys, inverse = torch.unique(keys[0], return_inverse=True)
    first = torch.full((unique_keys.shape[0],), cells.shape[0], dtype=torch.long, device=cells.device)
    first = first.scatter_reduce(0, inverse, torch.arange(cells.shape[0], device=cells.device), reduce="amin")
    return cells.index_select(0, first), inverse


def _rows_in(queries: Tensor, table: Tensor) -> Tensor:
    """For each integer-valued query row, whether it equals some row of ``table``."""
    if table.shape[0] == 0 or queries.shape[0] == 0:
        return torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    keys = _cell_keys(table, queries)
    if keys is not None:
        return torch.isin(keys[1], keys[0])
    _, ids = torch.unique(torch.cat([table, queries]), dim=0, return_inverse=True)
    in_table = torch.zeros(int(ids.max()) + 1, dtype=torch.bool, device=queries.device)
    in_table[ids[: table.shape[0]]] = True
    return in_table[ids[table.shape[0]:]]
