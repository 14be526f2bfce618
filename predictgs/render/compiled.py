"""The compiled CPU rasterizer (``predictgs/kernels/csrc/``) behind two autograd Functions, one per stage.

``project``: the EWA projection of ``projection.py`` (same formulas, same order of operations) with an
analytic backward for means, quaternions and scales (``projection.cpp``). ``rasterize_compiled``: bin the
projected Gaussians into 16x16 tiles front to back, composite each tile, and walk the same lists back to
front for the gradients of means2d, conics, opacities and colours (``rasterize.cpp``). Same tests as the
reference (3 sigma, alpha cap 0.99, alpha >= 1/255, stop before T < 1e-4), transmittance in the input's
dtype (the reference scans log(1 - alpha) in float64), results independent of the thread count.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import kernels
from .projection import Projection


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int,
                height: int, near_plane: float, eps2d: float):
        means2d, depths, conics, radii = kernels.load().project_forward(means, quats, scales, viewmat, K, width,
                                                                        height, near_plane, eps2d)
        ctx.save_for_backward(means, quats, scales, viewmat, K)
        ctx.settings = (width, height, near_plane, eps2d)
        ctx.mark_non_differentiable(radii)
        return means2d, depths, conics, radii

    @staticmethod
    def backward(ctx, v_means2d: Tensor, v_depths: Tensor, v_conics: Tensor, _v_radii):
        means, quats, scales, viewmat, K = ctx.saved_tensors
        v_means2d = means.new_zeros(means.shape[0], 2) if v_means2d is None else v_means2d
        v_depths = means.new_zeros(means.shape[0]) if v_depths is None else v_depths
        v_conics = means.new_zeros(means.shape[0], 3) if v_conics is None else v_conics
        grads = kernels.load().project_backward(means, quats, scales, viewmat, K, *ctx.settings,
                                                v_means2d.contiguous(), v_depths.contiguous(), v_conics.contiguous())
        return (*grads, None, None, None, None, None, None)


def project(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
            near_plane: float, eps2d: float) -> Projection:
    """:func:`predictgs.render.projection.project_gaussians` through the compiled kernels (CPU tensors of
    one floating dtype; no gradient for the camera: use the reference where the camera is optimised)."""
    dtype = means.dtype
    viewmat, K = viewmat.detach().to(dtype).contiguous(), K.detach().to(dtype).contiguous()
    means2d, depths, conics, radii = _Project.apply(means.contiguous(), quats.to(dtype).contiguous(),
                                                    scales.to(dtype).contiguous(), viewmat, K, width, height,
                                                    float(near_plane), float(eps2d))
    return Projection(means2d=means2d, depths=depths, conics=conics, radii=radii)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, bins: tuple,
                width: int, height: int):
        module = kernels.load()
        tile_start, entry_gaussian, _, _, rects = bins
        rgb, final_t, last, box = module.rasterize_forward(means2d, conics, opacities, colors, tile_start,
                                                           entry_gaussian, rects, width, height)
        ctx.save_for_backward(means2d, conics, opacities, colors, final_t, last, box)
        ctx.bins, ctx.size = bins, (width, height)
        ctx.mark_non_differentiable(last)
        return rgb, final_t, last

    @staticmethod
    def backward(ctx, grad_rgb: Tensor, grad_t: Tensor, _grad_last):
        means2d, conics, opacities, colors, final_t, last, box = ctx.saved_tensors
        tile_start, entry_gaussian, entry_slot, gauss_slot_start, rects = ctx.bins
        width, height = ctx.size
        if grad_rgb is None:
            grad_rgb = colors.new_zeros(colors.shape[1], height, width)
        grad_t = torch.zeros_like(final_t) if grad_t is None else grad_t
        grads = kernels.load().rasterize_backward(means2d, conics, opacities, colors, tile_start, entry_gaussian,
                                                  entry_slot, gauss_slot_start, rects, final_t, last, box,
                                                  grad_rgb.contiguous(), grad_t.contiguous(), width, height)
        return (*grads, None, None, None)


def bin_gaussians(proj: Projection, opacities: Tensor, width: int, height: int) -> tuple:
    """The tile lists of the drawn Gaussians (radius > 0), front to back (stable in the index)."""
    with torch.no_grad():
        module = kernels.load()
        order = module.depth_order(proj.depths.detach().contiguous(), proj.radii.to(torch.int32).contiguous())
        return tuple(module.bin_gaussians(proj.means2d.detach().contiguous(), proj.conics.detach().contiguous(),
                                          opacities.detach().contiguous(), order, width, height))


def rasterize_compiled(proj: Projection, opacities: Tensor, colors: Tensor, background: Tensor, width: int,
                       height: int) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians with the compiled kernels. Returns image [3,H,W] and alpha [1,H,W], as
    :func:`predictgs.render.reference.rasterize_reference` does."""
    dtype = colors.dtype
    means2d, conics = proj.means2d.to(dtype), proj.conics.to(dtype)
    opacities = opacities.to(dtype)
    bins = bin_gaussians(proj, opacities, width, height)
    rgb, final_t, _ = _Composite.apply(means2d.contiguous(), conics.contiguous(), opacities.contiguous(),
                                       colors.contiguous(), bins, width, height)
    image = rgb + final_t[None] * background.to(dtype)[:, None, None]
    return image, (1.0 - final_t)[None]
