"""Fused Triton kernels for the binarised hash-grid lookup (:mod:`predictgs.nn.hashgrid`).

Importing this module imports triton. :func:`predictgs.nn.hashgrid.use_fused` decides when it is used;
call :func:`encode` directly only for tests and benchmarks.

- Forward: one program per (block of points, level, grid) computes each point's 2^d corners, their
  weights and rows in registers (same arithmetic, in the same order, as the PyTorch reference: pos =
  x (R - 2) + 0.5, weights multiplied axis by axis, border corners dropped, renormalised by the weight
  total or 1e-9) and writes the F interpolated features straight into the concatenated output. Nothing
  per corner goes to memory; border corners and points outside [0,1]^d read no table row.
- Backward: the same set-up, then ``tl.atomic_add`` of w * grad_out into the table gradient for every
  kept corner. Float atomics sum in a run-dependent order, so the table gradient is not bit-reproducible
  from run to run (it is to float32 rounding).
- Only the table gets a gradient: positions are fixed buffers in this project. :func:`encode` refuses
  positions that require grad while grad mode is on (the dispatcher sends those to the reference), and
  :class:`FusedEncode`'s backward raises rather than return a silent zero if such positions got through.
- Hash: uint32 products c_i * prime_i (wrapping mod 2^32) XORed, then the low bits (hashed levels have a
  power-of-two table size; ``BinaryHashGrid`` asserts it). Dense rows: c0 + R c1 (+ R^2 c2) in int32.
- Compiled with ``enable_fp_fusion=False`` so that x (R - 2) + 0.5 and the weighted sums are rounded as
  in the reference (no FMA contraction), and the renormalisation divides with ``tl.div_rn`` (correctly
  rounded, ``div.rn``; Triton's ``/`` compiles to the approximate ``div.full.f32`` for float32, up to 2
  ulp); the remaining difference is the order of the 2^d-term sums.
- Specialisation: Triton compiles one variant per pattern of integer arguments equal to 1 or divisible by
  16. The point count ``n`` changes every training step and the column offsets ``col0..2`` differ per
  grid, so they are declared ``do_not_specialize``: one variant per (kernel, dims, dtype) for a given
  model, compiled by the first call (or :func:`warm_up`), never in the middle of a timed run.
- Launches run under ``torch.cuda.device(x.device)``: Triton launches on the current CUDA device, which
  need not be the tensors' one (``--device cuda:1``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 128
NUM_WARPS = 4
# Integer arguments whose value changes from call to call (or grid to grid) and buys nothing when
# specialised: compiled as plain runtime integers, so no new variant is compiled mid-run.
UNSPECIALISED = ("n", "col0", "col1", "col2")


@triton.jit
def _axis_setup(x_ptr, offs, valid, col, scale, rmax):
    """One coordinate of a block of points: the low corner (int32, clamped to [-1, R - 1] so that the
    conversion is defined for any input), the fraction and whether it lies in [0, 1]."""
    x = tl.load(x_ptr + offs + col, mask=valid, other=0.0)
    pos = x * scale + 0.5
    base = tl.floor(pos)
    frac = pos - base
    base = tl.minimum(tl.maximum(base, -1.0), rmax.to(base.dtype))
    return base.to(tl.int32), frac, (x >= 0.0) & (x <= 1.0)


@triton.jit
def _axis_corner(low, frac, rmax, HIGH: tl.constexpr):
    """One axis of one corner: lattice coordinate (capped at R - 1), weight factor, on the border?"""
    if HIGH:
        c = tl.minimum(low + 1, rmax)
        w = frac
    else:
        c = low
        w = 1.0 - frac
    return c, w, (c == 0) | (c == rmax)


@triton.jit
def _corner(low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense,
            CORNER: tl.constexpr, DIMS: tl.constexpr):
    """Corner ``CORNER`` (bit i = high on axis i): weight before renormalisation (0 on the border), kept?
    and table row (level offset added, int64)."""
    c0, w, border = _axis_corner(low0, frac0, rmax, CORNER & 1)
    c1, w1, border1 = _axis_corner(low1, frac1, rmax, (CORNER >> 1) & 1)
    w = w * w1
    border = border | border1
    c0 = tl.maximum(c0, 0)
    c1 = tl.maximum(c1, 0)
    dense_row = c0 + c1 * R
    hashed = c0.to(tl.uint32) ^ (c1.to(tl.uint32) * 2654435761)
    if DIMS == 3:
        c2, w2, border2 = _axis_corner(low2, frac2, rmax, (CORNER >> 2) & 1)
        w = w * w2
        border = border | border2
        c2 = tl.maximum(c2, 0)
        dense_row = dense_row + c2 * R * R
        hashed = hashed ^ (c2.to(tl.uint32) * 805459861)
    row = tl.where(dense, dense_row.to(tl.uint32), hashed & mask)
    w = tl.where(border, 0.0, w)
    return w, border == 0, row.to(tl.int64) + offset


@triton.jit
def _divide(a, b):
    """a / b correctly rounded, as torch divides: Triton's ``/`` is the approximate ``div.full.f32`` for
    float32 (``div.rn.f64`` for float64, where ``tl.div_rn`` is not defined)."""
    if a.dtype == tl.float32:
        q = tl.div_rn(a, b)
    else:
        q = a / b
    return q


@triton.jit
def _level_setup(x_ptr, res_ptr, off_ptr, size_ptr, dense_ptr, n, stride_xn, col0, col1, col2,
                 DIMS: tl.constexpr, BLOCK_N: tl.constexpr):
    level = tl.program_id(1)
    points = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    valid = points < n
    R = tl.load(res_ptr + level).to(tl.int32)
    rmax = R - 1
    offset = tl.load(off_ptr + level).to(tl.int64)
    mask = (tl.load(size_ptr + level) - 1).to(tl.uint32)
    dense = tl.load(dense_ptr + level) != 0
    offs = points.to(tl.int64) * stride_xn
    scale = (R - 2).to(x_ptr.dtype.element_ty)
    low0, frac0, inside = _axis_setup(x_ptr, offs, valid, col0, scale, rmax)
    low1, frac1, inside1 = _axis_setup(x_ptr, offs, valid, col1, scale, rmax)
    inside = inside & inside1 & valid
    if DIMS == 3:
        low2, frac2, inside2 = _axis_setup(x_ptr, offs, valid, col2, scale, rmax)
        inside = inside & inside2
    else:
        low2, frac2 = low1, frac1  # unused
    # Renormalisation: the total weight of the kept corners, summed in corner order.
    total = tl.zeros([BLOCK_N], dtype=x_ptr.dtype.element_ty)
    for corner in tl.static_range(1 << DIMS):
        w, keep, row = _corner(low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense, corner, DIMS)
        total += w
    norm = tl.where(total > 0, total, 1e-9)
    return (level, points, valid, inside, low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense,
            norm)


@triton.jit(do_not_specialize=UNSPECIALISED)
def _encode_fwd_kernel(x_ptr, table_ptr, out_ptr, res_ptr, off_ptr, size_ptr, dense_ptr,
                       n, stride_xn, col0, col1, col2, stride_on, out_col,
                       DIMS: tl.constexpr, F: tl.constexpr, F_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    (level, points, valid, inside, low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense,
     norm) = _level_setup(x_ptr, res_ptr, off_ptr, size_ptr, dense_ptr, n, stride_xn, col0, col1, col2,
                          DIMS, BLOCK_N)
    feats = tl.arange(0, F_PAD)
    fmask = feats < F
    acc = tl.zeros([BLOCK_N, F_PAD], dtype=table_ptr.dtype.element_ty)
    for corner in tl.static_range(1 << DIMS):
        w, keep, row = _corner(low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense, corner, DIMS)
        w = _divide(w, norm)
        load_mask = (inside & keep)[:, None] & fmask[None, :]
        value = tl.load(table_ptr + row[:, None] * F + feats[None, :], mask=load_mask, other=0.0)
        acc += w[:, None] * value
    acc = tl.where(inside[:, None], acc, 0.0)
    out = out_ptr + points.to(tl.int64)[:, None] * stride_on + (out_col + level * F) + feats[None, :]
    tl.store(out, acc, mask=valid[:, None] & fmask[None, :])


@triton.jit(do_not_specialize=UNSPECIALISED)
def _encode_bwd_kernel(x_ptr, grad_out_ptr, grad_table_ptr, res_ptr, off_ptr, size_ptr, dense_ptr,
                       n, stride_xn, col0, col1, col2, stride_gn, out_col,
                       DIMS: tl.constexpr, F: tl.constexpr, F_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    (level, points, valid, inside, low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense,
     norm) = _level_setup(x_ptr, res_ptr, off_ptr, size_ptr, dense_ptr, n, stride_xn, col0, col1, col2,
                          DIMS, BLOCK_N)
    feats = tl.arange(0, F_PAD)
    fmask = feats < F
    g_ptr = grad_out_ptr + points.to(tl.int64)[:, None] * stride_gn + (out_col + level * F) + feats[None, :]
    g = tl.load(g_ptr, mask=inside[:, None] & fmask[None, :], other=0.0)
    for corner in tl.static_range(1 << DIMS):
        w, keep, row = _corner(low0, frac0, low1, frac1, low2, frac2, R, rmax, mask, offset, dense, corner, DIMS)
        w = _divide(w, norm)
        add_mask = (inside & keep)[:, None] & fmask[None, :]
        tl.atomic_add(grad_table_ptr + row[:, None] * F + feats[None, :], w[:, None] * g, mask=add_mask,
                      sem="relaxed")


def _launch_args(grid, columns: Sequence[int], x: Tensor) -> tuple:
    cols = [c * x.stride(1) for c in columns] + [0] * (3 - len(columns))
    return (grid._res, grid._offsets, grid._sizes, grid._dense, x.shape[0], x.stride(0), *cols)


def _on_device(x: Tensor):
    """Triton launches on the current CUDA device: make it x's for the launch (no-op off CUDA)."""
    return torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()


def _meta(grid) -> dict:
    f = grid.features_per_level
    return dict(DIMS=grid.dims, F=f, F_PAD=triton.next_power_of_2(f), BLOCK_N=BLOCK, num_warps=NUM_WARPS,
                enable_fp_fusion=False)


class FusedEncode(torch.autograd.Function):
    """Encode points with one or more grids into one concatenated output; gradients for the tables only.

    ``forward(ctx, x, grids, *tables)``: x [N, D]; ``grids``: (BinaryHashGrid, columns of x it reads)
    pairs; ``tables``: their binarised tables [entries, F], same dtype as x. Returns [N, sum L_i F_i]."""

    @staticmethod
    def forward(ctx, x: Tensor, grids, *tables: Tensor) -> Tensor:
        n = x.shape[0]
        width = sum(g.output_dim for g, _ in grids)
        out = torch.empty((n, width), device=x.device, dtype=x.dtype)
        col = 0
        with _on_device(x):
            for (grid, columns), table in zip(grids, tables):
                table = table.contiguous()
                if n:
                    launch = (triton.cdiv(n, BLOCK), grid.num_levels)
                    _encode_fwd_kernel[launch](x, table, out, *_launch_args(grid, columns, x), out.stride(0),
                                               col, **_meta(grid))
                col += grid.output_dim
        ctx.save_for_backward(x)
        ctx.grids = grids
        ctx.table_shapes = [t.shape for t in tables]
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        if ctx.needs_input_grad[0]:  # recorded with positions that require grad: refuse a silent zero
            raise RuntimeError("the fused hash-grid kernels give no gradient for the positions")
        if grad_out.stride(-1) != 1:
            grad_out = grad_out.contiguous()
        grads = []
        col = 0
        with _on_device(x):
            for i, ((grid, columns), shape) in enumerate(zip(ctx.grids, ctx.table_shapes)):
                if ctx.needs_input_grad[2 + i]:
                    grad_table = torch.zeros(shape, device=grad_out.device, dtype=grad_out.dtype)
                    if x.shape[0]:
                        launch = (triton.cdiv(x.shape[0], BLOCK), grid.num_levels)
                        _encode_bwd_kernel[launch](x, grad_out, grad_table, *_launch_args(grid, columns, x),
                                                   grad_out.stride(0), col, **_meta(grid))
                    grads.append(grad_table)
                else:
                    grads.append(None)
                col += grid.output_dim
        return (None, None, *grads)


def encode(x: Tensor, grids: Sequence[tuple], tables: Sequence[Tensor]) -> Tensor:
    """Fused lookup of points x [N, D] in ``grids`` ((BinaryHashGrid, columns) pairs) with their binarised
    ``tables``; features concatenated in order. No gradient for x."""
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError("the fused hash-grid kernels give no gradient for the positions; use the reference")
    return FusedEncode.apply(x, tuple(grids), *tables)
