"""The CPU rasterizers (the pure-PyTorch reference and the compiled one): closed forms, an independent dense
re-implementation of the Inria kernel's per-pixel loop, float64 gradients, and the screen-space statistics
densification uses. The compiled backend's parity with the reference on harder cases: test_render_compiled.py."""

import math

import pytest
import torch

from predictgs import kernels
from predictgs.errors import ConfigError

from predictgs.render import rasterize, visible_mask
from predictgs.render import reference as reference_module
from predictgs.render.projection import project_gaussians
from predictgs.render.sh import C0, eval_sh


CPU_BACKENDS = [
    "reference",
    pytest.param("compiled", marks=pytest.mark.skipif(not kernels.available(),
                                                      reason="the compiled CPU kernels cannot be built here")),
]


def camera(width=32, height=24, focal=30.0, dtype=torch.float64):
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=dtype)
    return dict(viewmat=torch.eye(4, dtype=dtype), K=K, width=width, height=height)


def identity_quats(n, dtype=torch.float64):
    q = torch.zeros(n, 4, dtype=dtype)
    q[:, 0] = 1
    return q


def random_scene(n, seed, dtype=torch.float64, width=24, height=20):
    gen = torch.Generator().manual_seed(seed)
    depth = 1.0 + 3.0 * torch.rand(n, generator=gen, dtype=dtype)
    xy = (torch.rand(n, 2, generator=gen, dtype=dtype) - 0.5) * 0.9 * depth[:, None]
    means = torch.cat([xy, depth[:, None]], 1)
    quats = torch.randn(n, 4, generator=gen, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=gen, dtype=dtype) * 0.4 - 2.8)
    opacities = 0.05 + 0.9 * torch.rand(n, generator=gen, dtype=dtype)
    colors = torch.rand(n, 3, generator=gen, dtype=dtype)
    return means, quats, scales, opacities, colors


def dense_inria_loop(means, quats, scales, opacities, colors, background, cam):
    """Independent transcription of the Inria per-pixel loop: every pixel x every Gaussian, depth order."""
    W, H = cam["width"], cam["height"]
    proj = project_gaussians(means, quats, scales, cam["viewmat"], cam["K"], W, H)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=means.dtype), torch.arange(W, dtype=means.dtype), indexing="ij")
    px, py = xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5
    color = torch.zeros(H * W, 3, dtype=means.dtype)
    T = torch.ones(H * W, dtype=means.dtype)
    done = torch.zeros(H * W, dtype=torch.bool)
    for g in torch.argsort(proj.depths).tolist():
        if proj.radii[g] <= 0:
            continue
        a, b, c = proj.conics[g]
        dx, dy = px - proj.means2d[g, 0], py - proj.means2d[g, 1]
        power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
        alpha = torch.clamp(opacities[g] * torch.exp(power), max=0.99)
        counts = (power <= 0) & (power >= -4.5) & (alpha >= 1 / 255) & ~done
        test_T = T * (1 - alpha)
        stop = counts & (test_T < 1e-4)
        done = done | stop
        counts = counts & ~stop
        color = color + torch.where(counts[:, None], alpha[:, None] * T[:, None] * colors[g], 0.0)
        T = torch.where(counts, test_T, T)
    image = color + T[:, None] * background
    return image.T.reshape(3, H, W), (1 - T).reshape(1, H, W)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_single_centred_gaussian_closed_form(backend):
    cam = camera(32, 32, focal=40.0)
    means = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    sigma_world = 0.1
    out = rasterize(means, identity_quats(1), torch.full((1, 3), sigma_world, dtype=torch.float64),
                    torch.tensor([0.8], dtype=torch.float64), torch.tensor([[1.0, 0.5, 0.25]], dtype=torch.float64),
                    background=torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), backend=backend, **cam)
    # Centre at pixel coordinate 16.0: the four centre pixels are 0.5 px away on both axes.
    variance_px = (40.0 * sigma_world / 2.0) ** 2 + 0.3
    peak_alpha = 0.8 * math.exp(-0.5 * (0.25 + 0.25) / variance_px)
    assert out.alpha[0, 15, 15].item() == pytest.approx(peak_alpha, rel=1e-9)
    expected = torch.tensor([1.0, 0.5, 0.25]) * peak_alpha + torch.tensor([0.0, 0.0, 1.0]) * (1 - peak_alpha)
    torch.testing.assert_close(out.image[:, 15, 15].float(), expected.float())
    # Symmetric about the centre; background far away.
    assert out.image[0, 15, 15] == pytest.approx(out.image[0, 16, 16].item(), rel=1e-12)
    torch.testing.assert_close(out.image[:, 0, 0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert out.radii.tolist() == [math.ceil(3 * math.sqrt(variance_px))]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_alpha_is_capped_at_0_99(backend):
    cam = camera(16, 16, focal=20.0)
    out = rasterize(torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64), identity_quats(1),
                    torch.full((1, 3), 0.5, dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64),
                    torch.ones(1, 3, dtype=torch.float64), backend=backend, **cam)
    assert out.alpha.max().item() == pytest.approx(0.99)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("front_first", [True, False])
def test_occlusion_follows_depth_not_input_order(front_first, backend):
    cam = camera(16, 16, focal=20.0)
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]], dtype=torch.float64)
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)  # near red, far blue
    scales = torch.tensor([[0.3, 0.3, 0.3], [0.9, 0.9, 0.9]], dtype=torch.float64)
    order = [0, 1] if front_first else [1, 0]
    out = rasterize(means[order], identity_quats(2), scales[order], torch.tensor([0.99, 0.99], dtype=torch.float64),
                    colors[order], backend=backend, **cam)
    centre = out.image[:, 8, 8]
    assert centre[0] > 0.95 and centre[2] < 0.05


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_matches_dense_per_pixel_loop(backend):
    cam = camera(24, 20, focal=22.0)
    scene = random_scene(150, seed=3)
    background = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    out = rasterize(*scene, background=background, backend=backend, **cam)
    image, alpha = dense_inria_loop(*scene, background, cam)
    torch.testing.assert_close(out.image, image, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.alpha, alpha, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_early_termination_drops_gaussians_behind_an_opaque_stack(backend):
    cam = camera(8, 8, focal=10.0)
    n = 4
    means = torch.tensor([[0.0, 0.0, 1.0 + i] for i in range(n)], dtype=torch.float64)
    scales = torch.full((n, 3), 2.0, dtype=torch.float64)  # covers the image almost uniformly
    colors = torch.eye(3, dtype=torch.float64)[[0, 0, 0, 2]]
    out = rasterize(means, identity_quats(n), scales, torch.full((n,), 0.99, dtype=torch.float64), colors,
                    backend=backend, **cam)
    # At the centre the layers have alpha 0.99: after two or three of them T would fall below 1e-4, so
    # the Inria kernel stops there and the blue fourth layer never shows (it would add ~1e-6 otherwise).
    image, _ = dense_inria_loop(means, identity_quats(n), scales, torch.full((n,), 0.99, dtype=torch.float64),
                                colors, torch.zeros(3, dtype=torch.float64), cam)
    torch.testing.assert_close(out.image, image, rtol=0, atol=1e-12)
    assert out.image[2, 3:5, 3:5].max().item() == 0.0
    assert out.image[0, 3:5, 3:5].min().item() > 0.99


def test_result_does_not_depend_on_chunking(monkeypatch):
    cam = camera(24, 20, focal=22.0)
    scene = random_scene(120, seed=5)
    full = rasterize(*scene, backend="reference", **cam).image
    monkeypatch.setattr(reference_module, "CANDIDATES_PER_CHUNK", 37)
    chunked = rasterize(*scene, backend="reference", **cam).image
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-14)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float64_gradients(backend):
    cam = camera(10, 8, focal=9.0)
    means, quats, scales, opacities, colors = random_scene(4, seed=11, width=10, height=8)
    scales = scales * 3  # footprints of a few pixels so every input matters
    background = torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64)
    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]

    def render(*args):
        return rasterize(*args, background=background, backend=backend, **cam).image

    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_screen_space_gradients_for_densification(backend):
    cam = camera(24, 20, focal=22.0, dtype=torch.float32)
    means, quats, scales, opacities, colors = (t.float() for t in random_scene(60, seed=2))
    means = torch.cat([means, torch.tensor([[0.0, 0.0, 0.1], [0.0, 0.0, -2.0]])])  # inside near plane, behind
    extra = 2
    quats = torch.cat([quats, identity_quats(extra, torch.float32)])
    scales = torch.cat([scales, torch.full((extra, 3), 0.05)])
    opacities = torch.cat([opacities, torch.full((extra,), 0.5)])
    colors = torch.cat([colors, torch.rand(extra, 3)])
    means.requires_grad_(True)
    out = rasterize(means, quats, scales, opacities, colors, backend=backend, **cam)
    out.image.sum().backward()
    norms = out.screen_grad_norm()
    assert norms.shape == (62,)
    assert not out.visible[-2:].any(), "Gaussians at z <= 0.2 are culled"
    assert (norms[-2:] == 0).all()
    assert (norms[:-2][out.visible[:-2]] > 0).any()
    # NDC scaling: the statistic is the pixel gradient times (W/2, H/2).
    pixel_grad = out.screen_means.grad.reshape(-1, 2)
    expected = (pixel_grad * torch.tensor([12.0, 10.0])).norm(dim=-1)
    torch.testing.assert_close(norms, expected)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_visible_mask_agrees_with_rasterizer_culling(backend):
    cam = camera(24, 20, focal=22.0)
    means, quats, scales, opacities, colors = random_scene(80, seed=9)
    means = means.clone()
    means[:10, 0] += 50.0  # far off screen
    means[10:15, 2] = 0.1  # in front of the near plane
    out = rasterize(means, identity_quats(80), scales, opacities, colors, backend=backend, **cam)
    mask = visible_mask(means, scales, **cam)
    assert torch.equal(mask, out.visible)
    assert not mask[:15].any() and mask[15:].any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_spherical_harmonics_colours(backend):
    gen = torch.Generator().manual_seed(0)
    coeffs = torch.randn(5, 16, 3, generator=gen, dtype=torch.float64) * 0.2
    dirs = torch.nn.functional.normalize(torch.randn(5, 3, generator=gen, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(eval_sh(0, coeffs, dirs), torch.clamp(C0 * coeffs[:, 0] + 0.5, min=0))
    # Degree 1 band: -C1 y, C1 z, -C1 x (3DGS sign convention).
    c1 = 0.4886025119029199
    x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
    expected = C0 * coeffs[:, 0] - c1 * y * coeffs[:, 1] + c1 * z * coeffs[:, 2] - c1 * x * coeffs[:, 3] + 0.5
    torch.testing.assert_close(eval_sh(1, coeffs, dirs), torch.clamp(expected, min=0))
    # Rendering with SH equals rendering with the colours evaluated from the camera centre.
    cam = camera(16, 12, focal=14.0)
    means, quats, scales, opacities, _ = random_scene(5, seed=1)
    with_sh = rasterize(means, quats, scales, opacities, coeffs, sh_degree=3, backend=backend, **cam).image
    view_dirs = torch.nn.functional.normalize(means, dim=-1)  # camera at the origin
    with_rgb = rasterize(means, quats, scales, opacities, eval_sh(3, coeffs, view_dirs), backend=backend,
                         **cam).image
    torch.testing.assert_close(with_sh, with_rgb)


def test_unknown_backend_is_rejected():
    cam = camera()
    scene = random_scene(3, seed=0)
    with pytest.raises(ConfigError, match="unknown rasterizer 'optix'"):
        rasterize(*scene, backend="optix", **cam)


def test_gsplat_is_never_a_silent_fallback():
    """On the CPU auto means the compiled rasterizer (the reference when it cannot be built); asking for
    gsplat without CUDA is a one-line error naming the cause (on CUDA, a gsplat that fails to import or
    build is the same error)."""
    from predictgs.render import resolve_backend

    assert resolve_backend("auto", "cpu") == ("compiled" if kernels.available() else "reference")
    with kernels.disabled():
        assert resolve_backend("auto", "cpu") == "reference"
    assert resolve_backend("reference", "cpu") == "reference"
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_backend("gsplat", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (gsplat backend)")
def test_gsplat_agrees_with_reference_on_gpu():
    from predictgs.render import gsplat_available

    if not gsplat_available():
        pytest.skip("gsplat is not importable on this CUDA machine")
    cam = {k: (v.float().cuda() if torch.is_tensor(v) else v) for k, v in camera(64, 48, focal=60.0).items()}
    scene = [t.float().cuda() for t in random_scene(500, seed=4, width=64, height=48)]
    ref = rasterize(*scene, backend="reference", **cam).image
    fast = rasterize(*scene, backend="gsplat", **cam).image
    assert (ref - fast).abs().mean().item() < 2e-3
