"""The gsplat backend's radii, which decide what the densification statistics count as drawn, checked on
the CPU against a stand-in for gsplat 1.5.3 whose projection follows its CUDA kernel's rule
(ProjectionEWA3DGSFused.cu): given opacities, a Gaussian below 1/255 gets radius 0 and the others a box
shrunk to where opacity * exp(-d^2 / 2) >= 1/255. The reference rasterizer and the Inria / Scaffold-GS /
HAC code count every Gaussian whose footprint touches the image, however faint."""

from __future__ import annotations

import sys
import types

import torch

from predictgs import render
from predictgs.render.projection import project_gaussians

ALPHA_THRESHOLD = 1.0 / 255.0


def gsplat_radii(proj, opacities, width, height, near_plane):
    """gsplat 1.5.3's per-axis radii [N, 2] from a projection (transcribed from its CUDA kernel)."""
    a, b, c = proj.conics.detach().unbind(-1)
    det = a * c - b * b
    var_x, var_y = c / det, a / det
    extend = torch.full_like(var_x, 3.33)
    culled = proj.depths.detach() <= near_plane
    if opacities is not None:
        opacities = opacities.detach()
        culled = culled | (opacities < ALPHA_THRESHOLD)
        extend = torch.minimum(extend, torch.sqrt(2 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD)
                                                                / ALPHA_THRESHOLD)))
    radius = torch.stack([torch.ceil(extend * var_x.sqrt()), torch.ceil(extend * var_y.sqrt())], -1)
    mean = proj.means2d.detach()
    outside = ((mean[:, 0] + radius[:, 0] <= 0) | (mean[:, 0] - radius[:, 0] >= width)
               | (mean[:, 1] + radius[:, 1] <= 0) | (mean[:, 1] - radius[:, 1] >= height))
    return torch.where((culled | outside)[:, None], 0.0, radius).to(torch.int32)


def fake_gsplat() -> types.ModuleType:
    module = types.ModuleType("gsplat")
    module.calls = []

    def fully_fused_projection(means, covars, quats, scales, viewmats, Ks, width, height, eps2d=0.3,
                               near_plane=0.01, far_plane=1e10, radius_clip=0.0, packed=False, sparse_grad=False,
                               calc_compensations=False, camera_model="pinhole", opacities=None):
        module.calls.append(("fully_fused_projection", opacities is not None))
        assert covars is None and not packed and not calc_compensations
        proj = project_gaussians(means, quats, scales, viewmats[0], Ks[0], width, height, near_plane, eps2d)
        radii = gsplat_radii(proj, opacities, width, height, near_plane)
        return radii[None], proj.means2d[None], proj.depths[None], proj.conics[None], None

    def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=0.01,
                      eps2d=0.3, **kwargs):
        module.calls.append(("rasterization", True))
        proj = project_gaussians(means, quats, scales, viewmats[0], Ks[0], width, height, near_plane, eps2d)
        # as gsplat.rasterization does: "use opacities to compute a tighter bound for radii"
        radii = gsplat_radii(proj, opacities, width, height, near_plane)
        image = torch.zeros(1, height, width, 3, dtype=means.dtype)
        alpha = torch.zeros(1, height, width, 1, dtype=means.dtype)
        return image, alpha, {"means2d": proj.means2d[None], "radii": radii[None], "depths": proj.depths[None]}

    module.fully_fused_projection = fully_fused_projection
    module.rasterization = rasterization
    return module


def scene(n=40, width=64, height=48):
    gen = torch.Generator().manual_seed(3)
    depth = 2.0 + torch.rand(n, generator=gen)
    xy = (torch.rand(n, 2, generator=gen) - 0.5) * 0.5 * depth[:, None]  # well inside the image
    means = torch.cat([xy, depth[:, None]], 1)
    quats = torch.randn(n, 4, generator=gen)
    scales = torch.exp(torch.randn(n, 3, generator=gen) * 0.3 - 3.0)
    opacities = torch.where(torch.arange(n) % 2 == 0, 0.6, 0.002)  # every other one below 1/255
    colors = torch.rand(n, 3, generator=gen)
    K = torch.tensor([[50.0, 0, width / 2], [0, 50.0, height / 2], [0, 0, 1]])
    return means, quats, scales, opacities, colors, dict(viewmat=torch.eye(4), K=K, width=width, height=height)


def render_gsplat(means, quats, scales, opacities, colors, cam):
    return render._rasterize_gsplat(means, quats, scales, opacities, colors, cam["viewmat"], cam["K"],
                                    cam["width"], cam["height"], torch.zeros(3), None)


def test_training_radii_count_faint_gaussians_as_the_reference_does(monkeypatch):
    fake = fake_gsplat()
    monkeypatch.setitem(sys.modules, "gsplat", fake)
    means, quats, scales, opacities, colors, cam = scene()
    faint = opacities < ALPHA_THRESHOLD
    reference = render.rasterize(means, quats, scales, opacities, colors, backend="reference", **cam)
    assert bool((reference.radii > 0).all())  # all inside the image, faint or not

    out = render_gsplat(means.clone().requires_grad_(), quats, scales, opacities, colors, cam)
    assert out.screen_means.requires_grad
    assert torch.equal(out.radii > 0, reference.radii > 0)
    # the stand-in does drop the faint ones when given opacities, as gsplat 1.5.3 does
    proj = project_gaussians(means, quats, scales, cam["viewmat"], cam["K"], cam["width"], cam["height"])
    assert torch.equal(gsplat_radii(proj, opacities, cam["width"], cam["height"], 0.2).amax(-1) > 0, ~faint)
    assert ("fully_fused_projection", False) in fake.calls  # projected without opacities


def test_densification_counts_faint_gaussians_on_the_gsplat_path(monkeypatch):
    """What densify.py adds per Gaussian: 1 for each drawn one, faint ones included (with zero gradient)."""
    monkeypatch.setitem(sys.modules, "gsplat", fake_gsplat())
    means, quats, scales, opacities, colors, cam = scene()
    out = render_gsplat(means.clone().requires_grad_(), quats, scales, opacities, colors, cam)
    drawn = (out.radii > 0).float()
    assert drawn.sum() == len(means)


def test_renders_without_gradient_keep_gsplats_radii(monkeypatch):
    """Evaluation and FPS frames record no gradient, collect no statistics, and pay for no second
    projection."""
    fake = fake_gsplat()
    monkeypatch.setitem(sys.modules, "gsplat", fake)
    means, quats, scales, opacities, colors, cam = scene()
    with torch.no_grad():
        out = render_gsplat(means, quats, scales, opacities, colors, cam)
    assert fake.calls == [("rasterization", True)]
    assert torch.equal(out.radii > 0, opacities >= ALPHA_THRESHOLD)
