"""Pure-PyTorch rasterizer: the differentiable reference used on the CPU (and in tests).

Algorithm (vectorised, no Python loop over pixels or Gaussians):
1. project every Gaussian (``projection.py``);
2. list the candidate (pixel, Gaussian) fragments inside each Gaussian's 3-sigma square, in bounded
   chunks, and keep those inside 3 sigma (Mahalanobis) with alpha = min(0.99, o exp(-d^T conic d / 2))
   >= 1/255 — the Inria kernel skips the others;
3. sort the fragments by pixel, then by view-space depth;
4. composite front to back with a segmented scan of log(1 - alpha) over each pixel's fragments, in
   float64 so the scan over all fragments loses no precision;
5. early termination as in the Inria kernel: a Gaussian whose contribution would bring the transmittance
   below 1e-4, and everything behind it, is dropped.

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
def _find_fragments(proj: Projection, opacities: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """(pixel index, Gaussian index) of every fragment that contributes, sorted by pixel then depth."""
    device = proj.means2d.device
    visible = torch.nonzero(proj.radii > 0).squeeze(1)
    mean = proj.means2d[visible]
    radius = proj.radii[visible].to(mean.dtype)
    # Pixel i has its centre at i + 0.5: candidates are the centres within [u - r, u + r].
    x0 = torch.ceil(mean[:, 0] - radius - 0.5).clamp(0, width - 1).long()
    x1 = torch.floor(mean[:, 0] + radius - 0.5).clamp(0, width - 1).long()
    y0 = torch.ceil(mean[:, 1] - radius - 0.5).clamp(0, height - 1).long()
    y1 = torch.floor(mean[:, 1] + radius - 0.5).clamp(0, height - 1).long()
    span_x = (x1 - x0 + 1).clamp(min=0)
    counts = span_x * (y1 - y0 + 1).clamp(min=0)

    pixels, gaussians = [], []
    ends = torch.cumsum(counts, 0)
    chunk_start = 0
    while chunk_start < visible.numel():
        # Largest run of Gaussians whose candidates fit the chunk budget (at least one Gaussian).
        base = ends[chunk_start - 1] if chunk_start else 0
        chunk_end = int(torch.searchsorted(ends, base + CANDIDATES_PER_CHUNK, right=True))
        chunk_end = max(chunk_end, chunk_start + 1)
        idx = torch.arange(chunk_start, chunk_end, device=device)
        cand = torch.repeat_interleave(idx, counts[idx])
        # Position of each candidate inside its Gaussian's square (global candidate index - first index).
        local = torch.arange(cand.numel(), device=device) + base - (ends[cand] - counts[cand])
        px = x0[cand] + local % span_x[cand]
        py = y0[cand] + local // span_x[cand]
        g = visible[cand]
        power = _gaussian_power(px + 0.5 - mean[cand, 0], py + 0.5 - mean[cand, 1], proj.conics[g])
        alpha = torch.clamp(opacities[g] * torch.exp(power), max=ALPHA_MAX)
        keep = (power <= 0) & (power >= -0.5 * SIGMA_CUTOFF**2) & (alpha >= ALPHA_MIN)
        pixels.append(py[keep] * width + px[keep])
        gaussians.append(g[keep])
        chunk_start = chunk_end
    if not pixels:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    pixel, gaussian = torch.cat(pixels), torch.cat(gaussians)

    depth_rank = torch.empty(proj.depths.numel(), dtype=torch.long, device=device)
    depth_rank[torch.argsort(proj.depths, stable=True)] = torch.arange(proj.depths.numel(), device=device)
    order = torch.argsort(pixel * proj.depths.numel() + depth_rank[gaussian])
    return pixel[order], gaussian[order]


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
    pixel, gaussian = _find_fragments(proj, opacities.detach(), width, height)

    px = (pixel % width).to(dtype) + 0.5
    py = torch.div(pixel, width, rounding_mode="floor").to(dtype) + 0.5
    mean = proj.means2d[gaussian]
    power = _gaussian_power(px - mean[:, 0], py - mean[:, 1], proj.conics[gaussian])
    alpha = torch.clamp(opacities[gaussian] * torch.exp(power), max=ALPHA_MAX)

    # Segmented scan over each pixel's fragments (sorted front to back).
    first = torch.searchsorted(pixel, torch.arange(num_pixels, device=device))
    with torch.no_grad():
        log_keep = torch.log1p(-alpha.double())
        inclusive = torch.cumsum(log_keep, 0)
        before = _value_before(inclusive, log_keep, first)[pixel]
        # Early termination: stop before a Gaussian would bring T below 1e-4 (and drop all behind it).
        alive = (inclusive - before) >= math.log(TRANSMITTANCE_MIN)
    alpha = alpha * alive
    log_keep = torch.log1p(-alpha.double())
    inclusive = torch.cumsum(log_keep, 0)
    before = _value_before(inclusive, log_keep, first)[pixel]
    weight = alpha * torch.exp(inclusive - log_keep - before).to(dtype)

    log_final_t = torch.zeros(num_pixels, dtype=torch.float64, device=device).index_add(0, pixel, log_keep)
    final_t = torch.exp(log_final_t).to(dtype)
    rgb = torch.zeros(num_pixels, 3, dtype=dtype, device=device).index_add(
        0, pixel, weight[:, None] * colors[gaussian]
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
    return inclusive[start] - values[start]
