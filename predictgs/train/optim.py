"""Adam with one named parameter per group, learning-rate schedules, and row surgery for growing and
pruning anchors (the Adam moments of kept rows are kept; new rows start with zero moments, as in
Scaffold-GS's ``cat_tensors_to_optimizer`` / ``_prune_anchor_optimizer``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .schedule import ExponentialLR


@dataclass
class ParamGroup:
    name: str
    params: list[nn.Parameter]
    lr: ExponentialLR


def make_adam(groups: Iterable[ParamGroup], fused: bool = True) -> torch.optim.Adam:
    """Adam with eps 1e-15 (3DGS / Scaffold-GS), one group per name, lr set by :func:`apply_lr`.
    ``fused``: torch's fused implementation, one kernel for every parameter, on CUDA and on the CPU (on
    the CPU about 3x faster than the per-tensor loop for HAC's 2M hash-table entries; deterministic, so
    resumed runs stay bit-exact)."""
    return torch.optim.Adam(
        [{"params": g.params, "name": g.name, "lr": g.lr.init} for g in groups if g.params],
        lr=0.0, eps=1e-15, **({"fused": True} if fused else {}),
    )


def apply_lr(optimizer: torch.optim.Optimizer, schedules: dict[str, ExponentialLR], iteration: int,
             total: int) -> None:
    for group in optimizer.param_groups:
        group["lr"] = schedules[group["name"]](iteration, total)


def _group_of(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> dict:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    raise KeyError("parameter is not in the optimiser")


def _swap(optimizer: torch.optim.Optimizer, old: nn.Parameter, new: nn.Parameter, moments) -> None:
    group = _group_of(optimizer, old)
    group["params"] = [new if p is old else p for p in group["params"]]
    state = optimizer.state.pop(old, None)
    if state:
        state["exp_avg"] = moments(state["exp_avg"])
        state["exp_avg_sq"] = moments(state["exp_avg_sq"])
        optimizer.state[new] = state


def keep_rows(optimizer: torch.optim.Optimizer, module: nn.Module, names: Iterable[str], keep: Tensor) -> None:
    """Replace each named parameter by its rows where ``keep`` is True, and its Adam moments likewise."""
    for name in names:
        old = getattr(module, name)
        new = nn.Parameter(old.detach()[keep].clone())
        _swap(optimizer, old, new, lambda m: m[keep].clone())
        setattr(module, name, new)


def append_rows(optimizer: torch.optim.Optimizer, module: nn.Module, rows: dict[str, Tensor]) -> None:
    """Append rows to each named parameter; their Adam moments start at zero."""
    for name, extra in rows.items():
        old = getattr(module, name)
        new = nn.Parameter(torch.cat([old.detach(), extra.to(old.dtype)], dim=0))
        _swap(optimizer, old, new, lambda m: torch.cat([m, torch.zeros_like(extra, dtype=m.dtype)], dim=0))
        setattr(module, name, new)
