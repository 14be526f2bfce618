"""The binarised hash-grid lookup through the compiled CPU kernels (``predictgs/kernels/csrc/hashgrid.cpp``).

Same interface as :mod:`predictgs.nn.hashgrid_triton`: ``encode(x, grids, tables)`` looks points x [N, D]
up in several grids ((BinaryHashGrid, columns of x) pairs) with their binarised tables and concatenates the
features; gradients for the tables only (anchor positions are fixed buffers). The table gradient sums each
row's contributions in the reference's order (points in index order, corners in order), one level per
thread, so it is the same bits whatever the number of threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import kernels


def _level_args(grid) -> tuple[Tensor, ...]:
    """The level description the kernels read, from the grid's buffers (on the CPU, where this runs)."""
    return (grid._res.contiguous(), grid._offsets.long(), grid._axis_mult.contiguous(),
            grid._hash_mask.contiguous(), grid._dense.contiguous())


class CompiledEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, grids, *tables: Tensor) -> Tensor:
        module = kernels.load()
        x = x.contiguous()
        width = sum(g.output_dim for g, _ in grids)
        out = x.new_empty((x.shape[0], width))
        col = 0
        for (grid, columns), table in zip(grids, tables):
            module.hashgrid_forward(x, torch.tensor(columns, dtype=torch.long, device=x.device), table.contiguous(),
                                    *_level_args(grid), out, col)
            col += grid.output_dim
        ctx.save_for_backward(x)
        ctx.grids = grids
        ctx.table_shapes = [t.shape for t in tables]
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        if ctx.needs_input_grad[0]:  # recorded with positions that require grad: refuse a silent zero
            raise RuntimeError("the compiled hash-grid kernels give no gradient for the positions")
        module = kernels.load()
        grad_out = grad_out.contiguous()
        grads, col = [], 0
        for i, ((grid, columns), shape) in enumerate(zip(ctx.grids, ctx.table_shapes)):
            if ctx.needs_input_grad[2 + i]:
                grad_table = grad_out.new_zeros(shape)
                module.hashgrid_backward(x, torch.tensor(columns, dtype=torch.long, device=x.device), grad_out, col,
                                         *_level_args(grid), grad_table)
                grads.append(grad_table)
            else:
                grads.append(None)
            col += grid.output_dim
        return (None, None, *grads)


def encode(x: Tensor, grids: Sequence[tuple], tables: Sequence[Tensor]) -> Tensor:
    """Lookup of CPU points x [N, D] in ``grids`` ((BinaryHashGrid, columns) pairs) with their binarised
    ``tables`` (same dtype as x); features concatenated in order. No gradient for x."""
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError("the compiled hash-grid kernels give no gradient for the positions; use the reference")
    return CompiledEncode.apply(x, tuple(grids), *tables)
