"""Pure-PyTorch rasterizer: the differentiable reference used on the CPU (and in tests).

Algorithm (vectorised, no Python loop over pixels or Gaussians):
1. project every Gaussian (``projection.py``);
2. list the candidate (pixel, Gaussian) fragments inside each Gaussian's 3-sigma square (Gaussians
   grouped by radius, tested by broadcasting, in bounded chunks) and keep those inside 3 sigma
   (Mahalanobis) with alpha = min(0.99, o exp(-d^T conic d / 2)) >= 1/255 — the Inria kernel skips the
   others;
3. sort the fragments by pixel, then by view-space depth;
4. early termination as in the Inria kernel: a Gaussian whose contribution would bring the
   transmittance below 1e-4, and everything behind it, is dropped (decided without gradients);
5. composite the surviving fragments front to back with a segmented scan of log(1 - alpha) over each
   pixel's fragments, in float64 so the scan over all fragments loses no precision.

Work is proportional to the number of fragments (the total footprint of the Gaussians), not to
pixels x Gaussians. Only the surviving fragments enter the autograd graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .projection import Projection

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
SIGMA_CUTOFF = 3.0
CANDIDATES_PER_CHUNK = 1 << 22  # bounds the memory of the candidate search (~4M pixel tests at a time)


def _gaussian_power(dx: Tensor, dy: Tensor, conic: Tensor) -> Tensor:
    """-d^T conic d / 2 for offsets (dx, dy) from the Gaussian's centre."""
    return -0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) - conic[:, 1] * dx * dy


@torch.no_grad()
def _find_fragments(proj: Projection, opacities: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor]:
    """(pixel index, Gaussian index, alpha) of every fragment that passes the 3-sigma and 1/255 tests,
    sorted by pixel then depth.

    Gaussians are grouped by their integer radius r; each group is tested against its (2r+1)^2 square of
    pixel centres by broadcasting, so no per-candidate gathers or integer divisions are needed."""
    device = proj.means2d.device
    visible = torch.nonzero(proj.radii > 0).squeeze(1)
    radius_of_visible = proj.radii[visible]
    pixels, gaussians, alphas = [], [], []
    for r in torch.unique(radius_of_visible).tolist():
        members = visible[radius_of_visible == r]
        # The square of side 2r+1 clipped to the image: a window of at most W x H pixels that still holds
        # every in-image pixel of the square (large Gaussians would otherwise test ~(2r)^2 candidates).
        side_x, side_y = min(2 * r + 1, width), min(2 * r + 1, height)
        per_chunk = max(1, CANDIDATES_PER_CHUNK // (side_x * side_y))
        local_x = torch.arange(side_x, device=device)
        local_y = torch.arange(side_y, device=device)
        for start in range(0, members.numel(), per_chunk):
            g = members[start:start + per_chunk]
            mean = proj.means2d[g]
            conic = proj.conics[g]
            # Pixel i has its centre at i + 0.5; the square holds the centres within about r of the mean.
            x0 = torch.ceil(mean[:, 0:1] - r - 0.5).long().clamp(0, width - side_x)
            y0 = torch.ceil(mean[:, 1:2] - r - 0.5).long().clamp(0, height - side_y)
            px = x0 + local_x  # [G, side_x]
            py = y0 + local_y  # [G, side_y]
            dx = (px + 0.5 - mean[:, 0:1])[:, None, :]  # [G, 1, side]
            dy = (py + 0.5 - mean[:, 1:2])[:, :, None]  # [G, side, 1]
            power = (-0.5 * (conic[:, 0, None, None] * dx * dx + conic[:, 2, None, None] * dy * dy)
                     - conic[:, 1, None, None] * dx * dy)
            alpha = torch.clamp(opacities[g, None, None] * torch.exp(power), max=ALPHA_MAX)
            keep = (power <= 0) & (power >= -0.5 * SIGMA_CUTOFF**2) & (alpha >= ALPHA_MIN)
            # Flat indices and 1-D index_select: several times faster on the CPU than indexing with
            # three index tensors.
            flat = torch.nonzero(keep.view(-1)).squeeze(1)
            pixel_of = (py[:, :, None] * width + px[:, None, :]).view(-1)
            pixels.append(pixel_of.index_select(0, flat))
            gaussians.append(g.index_select(0, torch.div(flat, side_x * side_y, rounding_mode="floor")))
            alphas.append(alpha.view(-1).index_select(0, flat))
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, dtype=proj.means2d.dtype, device=device)
    pixel, gaussian, alpha = torch.cat(pixels), torch.cat(gaussians), torch.cat(alphas)

    depth_rank = torch.empty(proj.depths.numel(), dtype=torch.long, device=device)
    depth_rank[torch.argsort(proj.depths, stable=True)] = torch.arange(proj.depths.numel(), device=device)
    order = torch.argsort(pixel * proj.depths.numel() + depth_rank.index_select(0, gaussian))
    return pixel.index_select(0, order), gaussian.index_select(0, order), alpha.index_select(0, order)


def rasterize_reference(
    proj: Projection,
    opacities: Tensor,
    colors: Tensor,
    background: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Composite projected Gaussians. Returns image [3,H,W] and alpha [1,H,W]."""
    device, dtype = colors.device, colors.dtype
    num_pixels = width * height
    pixel, gaussian, alpha = _find_fragments(proj, opacities.detach(), width, height)

    with torch.no_grad():
        # Early termination: stop before a Gaussian would bring T below 1e-4 (and drop all behind it).
        # Only the fragments in front of that point enter the differentiable pass.
        log_keep = torch.log1p(-alpha.double())
        inclusive = torch.cumsum(log_keep, 0)
        first = torch.searchsorted(pixel, torch.arange(num_pixels, device=device))
        before = _value_before(inclusive, log_keep, first).index_select(0, pixel)
        alive = torch.nonzero((inclusive - before) >= math.log(TRANSMITTANCE_MIN)).squeeze(1)
        pixel, gaussian = pixel.index_select(0, alive), gaussian.index_select(0, alive)

    px = (pixel % width).to(dtype) + 0.5
    py = torch.div(pixel, width, rounding_mode="floor").to(dtype) + 0.5
    # index_select (backward: index_add) rather than advanced indexing, whose backward is a
    # deterministic-mode index_put that sorts its indices.
    mean = proj.means2d.index_select(0, gaussian)
    power = _gaussian_power(px - mean[:, 0], py - mean[:, 1], proj.conics.index_select(0, gaussian))
    alpha = torch.clamp(opacities.index_select(0, gaussian) * torch.exp(power), max=ALPHA_MAX)

    # Segmented scan over each pixel's fragments (sorted front to back).
    first = torch.searchsorted(pixel, torch.arange(num_pixels, device=device))
    log_keep = torch.log1p(-alpha.double())
    inclusive = torch.cumsum(log_keep, 0)
    before = _value_before(inclusive, log_keep, first).index_select(0, pixel)
    weight = alpha * torch.exp(inclusive - log_keep - before).to(dtype)

    log_final_t = torch.zeros(num_pixels, dtype=torch.float64, device=device).index_add(0, pixel, log_keep)
    final_t = torch.exp(log_final_t).to(dtype)
    rgb = torch.zeros(num_pixels, 3, dtype=dtype, device=device).index_add(
        0, pixel, weight[:, None] * colors.index_select(0, gaussian)
    )
    rgb = rgb + final_t[:, None] * background.to(dtype)
    image = rgb.T.reshape(3, height, width)
    alpha_image = (1.0 - final_t).reshape(1, height, width)
    return image, alpha_image


def _value_before(inclusive: Tensor, values: Tensor, segment_start: Tensor) -> Tensor:
    """The global inclusive scan just before each segment starts (segments may be empty)."""
    if inclusive.numel() == 0:
        return inclusive.new_zeros(segment_start.shape)
    start = segment_start.clamp(max=inclusive.numel() - 1)
    return inclusive.index_select(0, start) - values.index_select(0, start)
