"""The project's one rasterizer entry point.

    out = rasterize(means, quats, scales, opacities, colors, viewmat=..., K=..., width=W, height=H)
    out.image   # [3,H,W]
    out.alpha   # [1,H,W]
    out.radii   # [N] int32, 0 = not drawn
    out.screen_grad_norm()  # after backward(): the densification statistic of Scaffold-GS / 3DGS

Backends: ``"gsplat"`` (CUDA kernels, used automatically for CUDA tensors when gsplat imports),
``"compiled"`` (the tile rasterizer of ``predictgs/kernels``, C++ built on first use; used automatically
for CPU tensors when it builds) and ``"reference"`` (pure PyTorch, every device; see ``reference.py``; the
oracle of the parity tests). All follow the Inria conventions that Scaffold-GS and HAC were tuned with (near
plane 0.2, +0.3 px^2 dilation, classic anti-aliasing); the small remaining differences of gsplat (alpha cap
0.999, 3.33 sigma support) are measured by ``benchmarks/compare_gsplat.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from .. import kernels
from ..errors import ConfigError
from .compiled import project as project_compiled
from .compiled import rasterize_compiled
from .projection import Projection, project_gaussians, quat_to_rotmat
from .reference import rasterize_reference
from .sh import eval_sh, num_sh_bases

__all__ = [
    "RenderOutput", "rasterize", "visible_mask", "project_gaussians", "quat_to_rotmat", "eval_sh",
    "num_sh_bases", "gsplat_available", "resolve_backend", "BACKENDS",
]

BACKENDS = ("auto", "compiled", "reference", "gsplat")
NEAR_PLANE = 0.2
EPS2D = 0.3


@dataclass
class RenderOutput:
    image: Tensor  # [3,H,W]
    alpha: Tensor  # [1,H,W]
    radii: Tensor  # [N] int32
    depths: Tensor  # [N]
    width: int
    height: int
    backend: str
    # Screen-space means in pixels. The tensor whose .grad is kept ([N,2], or gsplat's [1,N,2]).
    screen_means: Tensor

    @property
    def visible(self) -> Tensor:
        return self.radii > 0

    @property
    def means2d(self) -> Tensor:
        return self.screen_means.reshape(-1, 2)

    def screen_grad_norm(self) -> Tensor:
        """Per-Gaussian norm of dLoss/d(means2d) in NDC units, as the Inria rasterizer stores it.

        The Inria kernel differentiates with respect to NDC coordinates, i.e. the pixel gradient times
        (W/2, H/2); Scaffold-GS's growth threshold of 2e-4 is expressed in those units."""
        grad = self.screen_means.grad
        if grad is None:
            return torch.zeros(self.radii.shape[0], device=self.radii.device)
        grad = grad.reshape(-1, 2)
        scale = grad.new_tensor([self.width * 0.5, self.height * 0.5])
        return (grad * scale).norm(dim=-1)


@lru_cache(maxsize=1)
def gsplat_import_error() -> str | None:
    """None when gsplat's CUDA rasterizer can be used; otherwise why not (missing package, failed
    kernel build, no CUDA). The kernels compile on first use, which this triggers."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        from gsplat.cuda._backend import _C  # the compiled extension (built on first import)
    except Exception as err:  # gsplat missing, or its extension failed to build
        return f"{type(err).__name__}: {err}".splitlines()[0]
    if _C is None:
        return "gsplat's CUDA extension is not built and no CUDA toolkit (nvcc) was found to build it"
    return None


def gsplat_available() -> bool:
    return gsplat_import_error() is None


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The rasterizer to use: ``auto`` is gsplat on CUDA and, elsewhere, the compiled CPU rasterizer when
    it builds (else the reference, after one warning naming why). On CUDA a gsplat that cannot be loaded
    is an error naming the cause, never a silent fallback: the reference rasterizer is 10-20x slower there
    and must be asked for (``--rasterizer reference``). ``compiled`` on a device other than the CPU, or
    when the kernels cannot be built, is an error naming the cause."""
    device = torch.device(device)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown rasterizer {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "reference":
        return "reference"
    if backend == "compiled" or (backend == "auto" and device.type == "cpu"):
        if device.type != "cpu":
            raise ConfigError(f"the compiled rasterizer runs on the CPU, not on {device.type}")
        if kernels.available():
            return "compiled"
        if backend == "compiled":
            raise ConfigError(f"the compiled CPU rasterizer cannot be built ({kernels.unavailable_reason()}); "
                              "install a C++ compiler with OpenMP, or use --rasterizer reference")
        kernels.warn_unavailable("rendering")
        return "reference"
    if backend == "auto" and device.type != "cuda":  # neither CPU nor CUDA (e.g. meta): the reference
        return "reference"
    if device.type != "cuda":
        raise ConfigError(f"the gsplat rasterizer needs a CUDA device, not {device.type}")
    cause = gsplat_import_error()
    if cause is not None:
        raise ConfigError(f"gsplat cannot be used on {device} ({cause}); install it (pip install gsplat==1.5.3, "
                          "built on first use), or ask for the slower reference rasterizer with "
                          "--rasterizer reference")
    return "gsplat"


def _view_colors(colors: Tensor, sh_degree: int | None, means: Tensor, viewmat: Tensor) -> Tensor:
    if sh_degree is None:
        return colors
    camera_center = -viewmat[:3, :3].T @ viewmat[:3, 3]
    dirs = means - camera_center
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return eval_sh(sh_degree, colors, dirs)


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    *,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    background: Tensor | None = None,
    sh_degree: int | None = None,
    backend: str = "auto",
) -> RenderOutput:
    """Render N Gaussians into one camera.

    means [N,3]; quats [N,4] (w,x,y,z, normalised internally); scales [N,3] (activated, not log);
    opacities [N] in [0,1]; colors [N,3] RGB, or SH coefficients [N,(d+1)^2,3] with ``sh_degree=d``;
    viewmat [4,4] world-to-camera (OpenCV axes); K [3,3]; background [3] (default black).
    """
    device = means.device
    if background is None:
        background = torch.zeros(3, device=device, dtype=means.dtype)
    opacities = opacities.reshape(-1)
    chosen = resolve_backend(backend, device)
    if chosen == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmat, K, width, height,
                                 background, sh_degree)

    # The compiled projection gives no gradient for the camera: an optimised camera takes the reference's.
    camera_grad = viewmat.requires_grad or K.requires_grad
    project = project_compiled if chosen == "compiled" and not camera_grad else project_gaussians
    proj = project(means, quats, scales, viewmat, K, width, height, NEAR_PLANE, EPS2D)
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    view_colors = _view_colors(colors, sh_degree, means, viewmat)
    composite = rasterize_compiled if chosen == "compiled" else rasterize_reference
    image, alpha = composite(proj, opacities, view_colors, background, width, height)
    return RenderOutput(image=image, alpha=alpha, radii=proj.radii, depths=proj.depths, width=width,
                        height=height, backend=chosen, screen_means=proj.means2d)


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmat, K, width, height, background,
                      sh_degree) -> RenderOutput:
    from gsplat import rasterization

    render, alphas, meta = rasterization(
        means, quats, scales, opacities, colors,
        viewmats=viewmat[None], Ks=K[None], width=width, height=height,
        near_plane=NEAR_PLANE, eps2d=EPS2D, rasterize_mode="classic", packed=False,
        backgrounds=background[None], sh_degree=sh_degree,
    )
    screen_means = meta["means2d"]
    if screen_means.requires_grad:
        screen_means.retain_grad()
        # Training: the densification statistics count the Gaussians drawn as the reference and Inria
        # count them, whatever their opacity (see _gsplat_radii_without_opacity).
        radii = _gsplat_radii_without_opacity(means, quats, scales, viewmat, K, width, height)
    else:
        radii = meta["radii"][0]
    if radii.dim() == 2:  # gsplat >= 1.5 returns per-axis radii
        radii = radii.max(dim=-1).values
    return RenderOutput(
        image=render[0].permute(2, 0, 1), alpha=alphas[0].permute(2, 0, 1), radii=radii.to(torch.int32),
        depths=meta["depths"][0], width=width, height=height, backend="gsplat", screen_means=screen_means,
    )


@torch.no_grad()
def _gsplat_radii_without_opacity(means, quats, scales, viewmat, K, width, height) -> Tensor:
    """gsplat's radii [N, 2] of the same projection without opacities.

    ``gsplat.rasterization`` (1.5.x) passes the opacities into its projection: a Gaussian with opacity
    below 1/255 gets radius 0 and the others a box shrunk to where opacity * exp(-d^2 / 2) >= 1/255. That
    changes nothing drawn (those pixels' alpha is below 1/255, skipped anyway) but it drops such Gaussians
    from ``radii > 0``, the "drawn" count of the densification statistics, where the reference rasterizer
    and the Inria / Scaffold-GS / HAC code count every Gaussian whose footprint touches the image (with a
    zero gradient when it is faint). One more projection kernel, no synchronisation."""
    from gsplat import fully_fused_projection

    radii = fully_fused_projection(means, None, quats, scales, viewmat[None], K[None], width, height,
                                   eps2d=EPS2D, near_plane=NEAR_PLANE, packed=False)[0]
    return radii[0]


@torch.no_grad()
def visible_mask(means: Tensor, scales: Tensor, *, viewmat: Tensor, K: Tensor, width: int, height: int,
                 quats: Tensor | None = None) -> Tensor:
    """Which Gaussians (e.g. Scaffold-GS anchors with their first three scales) the camera would draw.

    Same projection and culling as :func:`rasterize` (near plane, footprint touching the image), so the
    anchor prefilter agrees with what the rasterizer draws on every device."""
    if quats is None:
        quats = torch.zeros(means.shape[0], 4, device=means.device, dtype=means.dtype)
        quats[:, 0] = 1.0
    if means.device.type == "cpu" and kernels.available():  # the projection rasterize(backend="auto") uses
        return project_compiled(means, quats, scales, viewmat, K, width, height, NEAR_PLANE, EPS2D).radii > 0
    return project_gaussians(means, quats, scales, viewmat, K, width, height, NEAR_PLANE, EPS2D).radii > 0
