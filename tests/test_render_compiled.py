"""The compiled CPU rasterizer against the pure-PyTorch reference (the oracle): images, the gradient of every
input, on the cases where a tile rasterizer can go wrong — Gaussians across tile and image borders, behind
the near plane, huge and tiny ones, heavy overlap where early termination decides, an empty view — and the
same bits whatever the number of threads. Figures of the agreement: docs/rasterizer.md."""

from __future__ import annotations

import pytest
import torch

from predictgs import kernels
from predictgs.render import rasterize, resolve_backend
from predictgs.render.compiled import bin_gaussians, project, rasterize_compiled
from predictgs.render.projection import project_gaussians

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the compiled CPU kernels cannot be built here")


def camera(width, height, focal, dtype=torch.float32):
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=dtype)
    return dict(viewmat=torch.eye(4, dtype=dtype), K=K, width=width, height=height)


def cloud(n, seed, dtype=torch.float32, spread=1.0, log_scale=-3.2, opacity=(0.05, 0.95)):
    gen = torch.Generator().manual_seed(seed)
    depth = 1.0 + 4.0 * torch.rand(n, generator=gen, dtype=dtype)
    xy = (torch.rand(n, 2, generator=gen, dtype=dtype) - 0.5) * spread * depth[:, None]
    means = torch.cat([xy, depth[:, None]], 1)
    quats = torch.randn(n, 4, generator=gen, dtype=dtype)
    scales = torch.exp(torch.randn(n, 3, generator=gen, dtype=dtype) * 0.5 + log_scale)
    low, high = opacity
    opacities = low + (high - low) * torch.rand(n, generator=gen, dtype=dtype)
    colors = torch.rand(n, 3, generator=gen, dtype=dtype)
    return [means, quats, scales, opacities, colors]


def render_with_grads(params, cam, backend, background=None):
    inputs = [p.detach().clone().requires_grad_(True) for p in params]
    out = rasterize(*inputs, background=background, backend=backend, **cam)
    # A loss that weighs pixels and channels differently, and uses alpha (the transmittance's gradient).
    gen = torch.Generator().manual_seed(7)
    weights = torch.rand(out.image.shape, generator=gen, dtype=out.image.dtype)
    loss = (out.image * weights).sum() + 0.3 * out.alpha.square().sum()
    loss.backward()
    return out, [p.grad for p in inputs] + [out.screen_means.grad]


def assert_agree(params, cam, background=None, image_atol=2e-6, grad_rtol=2e-4):
    ref, ref_grads = render_with_grads(params, cam, "reference", background)
    fast, fast_grads = render_with_grads(params, cam, "compiled", background)
    assert fast.backend == "compiled" and ref.backend == "reference"
    assert torch.equal(fast.radii, ref.radii)
    assert (fast.image - ref.image).abs().max().item() <= image_atol
    assert (fast.alpha - ref.alpha).abs().max().item() <= image_atol
    names = ("means", "quats", "scales", "opacities", "colors", "means2d")
    for name, a, b in zip(names, fast_grads, ref_grads):
        if b is None or b.abs().max() == 0:
            assert a is None or a.abs().max() == 0, name
            continue
        relative = ((a - b).norm() / b.norm()).item()
        cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
        assert relative <= grad_rtol and cosine >= 1 - 1e-6, (name, relative, cosine)
    return ref, fast


def test_random_cloud_agrees_with_reference():
    assert_agree(cloud(3000, seed=0), camera(96, 72, 80.0), background=torch.tensor([0.2, 0.5, 0.8]))


def test_odd_image_size_and_gaussians_across_the_image_border():
    # 37 x 29: partial tiles on two sides; a spread of 2 puts many Gaussians half outside the image.
    assert_agree(cloud(1500, seed=1, spread=2.0, log_scale=-2.5), camera(37, 29, 30.0))


def test_gaussians_behind_and_inside_the_near_plane_are_culled():
    params = cloud(600, seed=2)
    params[0][:100, 2] = -1.0  # behind the camera
    params[0][100:150, 2] = 0.15  # in front of the camera but before the near plane (0.2)
    ref, fast = assert_agree(params, camera(48, 40, 40.0))
    assert not fast.visible[:150].any()


def test_huge_and_tiny_gaussians():
    params = cloud(800, seed=3)
    params[2][:20] = 3.0  # cover the whole image, several tiles
    params[2][20:200] = 1e-4  # well below a pixel: only the 0.3 px^2 dilation remains
    assert_agree(params, camera(64, 48, 50.0))


def test_heavy_overlap_where_early_termination_decides():
    # Many nearly opaque layers: most pixels stop long before the end of their tile's list.
    params = cloud(4000, seed=4, log_scale=-2.0, opacity=(0.6, 0.99))
    ref, _ = assert_agree(params, camera(64, 48, 50.0))
    assert (ref.alpha > 0.999).float().mean() > 0.5  # transmittance near the 1e-4 stop almost everywhere


def test_an_empty_view():
    params = cloud(50, seed=5)
    params[0][:, 2] = -3.0  # everything behind the camera
    ref, fast = assert_agree(params, camera(32, 32, 30.0), background=torch.tensor([0.1, 0.2, 0.3]))
    assert not fast.visible.any()
    assert torch.equal(fast.image, torch.tensor([0.1, 0.2, 0.3])[:, None, None].expand(3, 32, 32))


def test_no_gaussians_at_all():
    empty = [torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3)]
    out = rasterize(*empty, backend="compiled", **camera(20, 10, 20.0))
    assert out.image.shape == (3, 10, 20) and out.image.abs().max() == 0


def test_the_same_bits_whatever_the_thread_count():
    params = cloud(5000, seed=6, log_scale=-2.6)
    cam = camera(80, 64, 70.0)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out, grads = render_with_grads(params, cam, "compiled")
            results.append([out.image, out.alpha, *grads])
    finally:
        torch.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


LANE_CASES = {
    "random cloud": (lambda: cloud(3000, seed=0), (96, 72, 80.0)),
    "odd size, border": (lambda: cloud(1500, seed=1, spread=2.0, log_scale=-2.5), (37, 29, 30.0)),
    "heavy overlap": (lambda: cloud(4000, seed=4, log_scale=-2.0, opacity=(0.6, 0.99)), (64, 48, 50.0)),
    "huge gaussians": (lambda: cloud(300, seed=3, log_scale=-0.5), (70, 50, 50.0)),
}


def with_and_without(switch, params, cam):
    """The compiled render and its gradients with the extension's process-wide `switch` on, and with it off."""
    setter = getattr(kernels.load(), switch)
    try:
        setter(False)
        off = render_with_grads(params, cam, "compiled")
    finally:
        setter(True)
    return render_with_grads(params, cam, "compiled"), off


@pytest.mark.parametrize("case", sorted(LANE_CASES))
def test_lane_passes_agree_with_the_generic_passes(case):
    """float RGB takes the vector-lane tile passes (simd_lanes.h); the generic per-pixel passes (every other dtype
    and channel count) are their oracle: the same forward bits (each lane does the scalar operations in
    the same order), gradients summed in another order."""
    make, (width, height, focal) = LANE_CASES[case]
    (lanes, lane_grads), (generic, generic_grads) = with_and_without("set_vectorised", make(),
                                                                     camera(width, height, focal))
    assert torch.equal(lanes.image, generic.image) and torch.equal(lanes.alpha, generic.alpha)
    for a, b in zip(lane_grads, generic_grads):
        assert ((a - b).norm() / b.norm()).item() <= 1e-5


PAIR_CASES = {**LANE_CASES, "narrow splats": (lambda: cloud(6000, seed=5, log_scale=-3.9), (90, 70, 80.0))}


@pytest.mark.parametrize("case", sorted(PAIR_CASES))
def test_row_pairs_give_the_one_row_blocks_bits(case):
    """Splats at most kLanes/2 pixels wide take two rows per vector block; every lane computes its own pixel
    and each column's gradient sums take the rows in the same order, so images, the per-entry boxes and
    every gradient are the same bits (signs of zero included) as with one row per block."""
    make, (width, height, focal) = PAIR_CASES[case]
    (pairs, pair_grads), (rows, row_grads) = with_and_without("set_row_pairs", make(), camera(width, height, focal))
    assert torch.equal(pairs.image, rows.image) and torch.equal(pairs.alpha, rows.alpha)
    for a, b in zip(pair_grads, row_grads):
        assert torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))
    assert any(bool((g != 0).any()) for g in pair_grads)


def test_float64_gradcheck_of_the_compiled_stages():
    params = [t.double() for t in cloud(6, seed=8, log_scale=-1.6)]
    cam = camera(12, 10, 10.0, dtype=torch.float64)
    inputs = [p.clone().requires_grad_(True) for p in params]

    def render(*args):
        out = rasterize(*args, background=torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64), backend="compiled",
                        **cam)
        return out.image, out.alpha

    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_projection_equals_the_reference_projection():
    params = cloud(2000, seed=9, spread=3.0)
    params[0][:50, 2] = 0.1
    cam = camera(64, 48, 50.0)
    for dtype in (torch.float32, torch.float64):
        means, quats, scales = (p.to(dtype).clone().requires_grad_(True) for p in params[:3])
        viewmat, K = cam["viewmat"].to(dtype), cam["K"].to(dtype)
        fast = project(means, quats, scales, viewmat, K, 64, 48, 0.2, 0.3)
        ref = project_gaussians(means, quats, scales, viewmat, K, 64, 48, 0.2, 0.3)
        assert torch.equal(fast.radii, ref.radii)
        for a, b in ((fast.means2d, ref.means2d), (fast.conics, ref.conics), (fast.depths, ref.depths)):
            torch.testing.assert_close(a, b, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)
        gen = torch.Generator().manual_seed(1)
        visible = ref.radii > 0
        grads = []
        for proj in (fast, ref):
            w = [torch.randn(t.shape, generator=gen.manual_seed(1), dtype=dtype) for t in (proj.means2d, proj.conics)]
            loss = (proj.means2d * w[0])[visible].sum() + (proj.conics * w[1])[visible].sum() + proj.depths.sum()
            grads.append(torch.autograd.grad(loss, (means, quats, scales)))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-4 if dtype == torch.float32 else 1e-10,
                                       atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_projection_lanes_give_the_scalar_code_bits():
    """float32 projections run kLanes Gaussians at a time in vector lanes and the rest of each chunk in the
    scalar code; both must give the same bits for the same Gaussian (conditions as lane masks, no FMA).
    Groups of 7 Gaussians (fewer than any lane count) take the scalar code only."""
    module = kernels.load()
    params = cloud(700, seed=21, spread=3.0)
    means, quats, scales = (p.contiguous() for p in params[:3])
    means[:40, 2] = 0.1  # behind the near plane
    means[40:50, 2] = -1.0
    quats[50:60] = 0.0  # the norm's clamp
    means[60, 0], means[61, 1] = float("inf"), float("nan")
    scales[70:90] *= 100.0  # huge
    cam = camera(64, 48, 50.0)
    args = (cam["viewmat"], cam["K"], 64, 48, 0.2, 0.3)
    gen = torch.Generator().manual_seed(2)
    v_means2d, v_depths, v_conics = torch.randn(700, 2, generator=gen), torch.randn(700, generator=gen), \
        torch.randn(700, 3, generator=gen)
    lanes = module.project_forward(means, quats, scales, *args)
    lanes_grad = module.project_backward(means, quats, scales, *args, v_means2d, v_depths, v_conics)
    for start in range(0, 700, 7):
        part = slice(start, start + 7)
        scalar = module.project_forward(means[part], quats[part], scales[part], *args)
        scalar_grad = module.project_backward(means[part], quats[part], scales[part], *args, v_means2d[part],
                                              v_depths[part], v_conics[part])
        for a, b in zip(lanes + lanes_grad, scalar + scalar_grad):
            assert torch.equal(a[part].nan_to_num(1.0, 2.0, 3.0), b.nan_to_num(1.0, 2.0, 3.0)), start


def test_a_camera_that_requires_grad_takes_the_reference_projection():
    params = cloud(300, seed=10)
    cam = camera(32, 24, 30.0)
    cam["viewmat"] = cam["viewmat"].clone().requires_grad_(True)
    out = rasterize(*params, backend="compiled", **cam)
    out.image.sum().backward()
    assert cam["viewmat"].grad is not None and cam["viewmat"].grad.abs().sum() > 0


def test_other_channel_counts():
    params = cloud(700, seed=11)
    cam = camera(40, 30, 35.0)
    proj = project_gaussians(*params[:3], cam["viewmat"], cam["K"], 40, 30)
    colors = torch.cat([params[4], params[4][:, :2]], dim=1).requires_grad_(True)  # 5 channels
    five, alpha5 = rasterize_compiled(proj, params[3], colors, torch.zeros(5), 40, 30)
    three, alpha3 = rasterize_compiled(proj, params[3], params[4], torch.zeros(3), 40, 30)
    assert torch.equal(five[:3], three) and torch.equal(five[3:], three[:2]) and torch.equal(alpha5, alpha3)
    five.sum().backward()
    assert torch.equal(colors.grad[:, 3:], colors.grad[:, :2])


def test_binning_is_front_to_back_and_covers_every_drawn_pixel():
    params = cloud(400, seed=12, log_scale=-2.4)
    cam = camera(50, 40, 45.0)
    proj = project_gaussians(*params[:3], cam["viewmat"], cam["K"], 50, 40)
    tile_start, entries, _, slot_start, rects = bin_gaussians(proj, params[3], 50, 40)
    for tile in range(tile_start.numel() - 1):
        ids = entries[tile_start[tile]:tile_start[tile + 1]].long()
        assert torch.all(proj.depths[ids][1:] >= proj.depths[ids][:-1])
    # every Gaussian's rectangle holds every pixel it can draw (power >= -4.5 and alpha >= 1/255)
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(50.0), indexing="ij")
    for g in torch.nonzero(proj.radii > 0).squeeze(1).tolist():
        a, b, c = proj.conics[g]
        dx, dy = xs + 0.5 - proj.means2d[g, 0], ys + 0.5 - proj.means2d[g, 1]
        power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
        drawn = (power >= -4.5) & (params[3][g] * torch.exp(power) >= 1 / 255)
        if drawn.any():
            y_idx, x_idx = torch.nonzero(drawn, as_tuple=True)
            x0, y0, x1, y1 = rects[g].tolist()
            assert x0 <= x_idx.min() and x_idx.max() <= x1 and y0 <= y_idx.min() and y_idx.max() <= y1
    assert slot_start[-1] == entries.numel()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depth_order_is_the_stable_argsort_of_the_drawn_depths(dtype):
    """The radix sort that orders the drawn Gaussians gives exactly torch's stable argsort: ties by index,
    -0 equal to +0, infinities at the ends, NaN last; empty and single inputs."""
    module = kernels.load()
    gen = torch.Generator().manual_seed(3)
    for n in (0, 1, 7, 5000):
        depths = torch.rand(n, generator=gen, dtype=dtype) * 10 - 1
        radii = torch.randint(-1, 3, (n,), generator=gen, dtype=torch.int32)
        if n > 100:
            depths[::7] = depths[3]
            depths[::11] = -0.0
            depths[::13] = 0.0
            depths[5], depths[6], depths[8], depths[9] = float("nan"), float("inf"), -float("inf"), 1e-30
            radii[5:10] = 1
        drawn = torch.nonzero(radii > 0).squeeze(1)
        expected = drawn.index_select(0, torch.argsort(depths.index_select(0, drawn), stable=True))
        assert torch.equal(module.depth_order(depths, radii), expected)


def test_auto_falls_back_to_the_reference_with_one_warning(monkeypatch):
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_reason", "RuntimeError: no compiler")
    monkeypatch.setattr(kernels, "_warned", False)
    with pytest.warns(RuntimeWarning, match="could not be built .*no compiler"):
        assert resolve_backend("auto", "cpu") == "reference"
    from predictgs.errors import ConfigError
    with pytest.raises(ConfigError, match="compiled CPU rasterizer cannot be built"):
        resolve_backend("compiled", "cpu")


def test_the_build_reads_its_sources_from_a_path_that_does_not_depend_on_the_checkout(tmp_path, monkeypatch):
    """Two checkouts (worktrees of one environment) share torch's extension cache: the build files must name
    the same source paths for both, or each would rebuild the module whenever the other had loaded it.
    Two environments (another torch) get a module each."""
    import shutil

    other = tmp_path / "other_checkout" / "csrc"
    shutil.copytree(kernels.CSRC, other)
    build_dir = tmp_path / "build"
    first = kernels._staged_sources(build_dir)
    stamps = {p: p.stat().st_mtime_ns for p in (build_dir / "src").iterdir()}
    name = kernels._build_name()
    monkeypatch.setattr(kernels, "CSRC", other)
    assert kernels._build_name() == name
    assert kernels._staged_sources(build_dir) == first  # the same paths, under the build folder
    assert {p: p.stat().st_mtime_ns for p in (build_dir / "src").iterdir()} == stamps  # nothing rewritten
    assert sorted(p.name for p in (build_dir / "src").iterdir()) == sorted(p.name for p in other.iterdir())
    import torch

    monkeypatch.setattr(torch, "__file__", str(tmp_path / "another_env" / "torch" / "__init__.py"))
    assert kernels._build_name() != name
    monkeypatch.undo()
    monkeypatch.setattr(kernels, "CSRC", other)
    # a changed header is another module (the name covers every file the build reads)
    (other / "simd_math.h").write_text((other / "simd_math.h").read_text() + "\n// changed\n")
    assert kernels._build_name() != name
    kernels._staged_sources(build_dir)
    assert (build_dir / "src" / "simd_math.h").read_text().endswith("// changed\n")


def test_avx2_only_where_the_cpu_has_it_and_named_in_the_module(monkeypatch):
    """-mavx2 (8 vector lanes instead of 4) is added where torch reports AVX2 on x86-64, and the flags are
    part of the module's name: a machine without AVX2 sharing the cache never loads a module built with it."""
    import platform

    monkeypatch.delenv("PREDICTGS_KERNEL_ISA", raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    names = {}
    for capability in ("DEFAULT", "AVX2", "AVX512"):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        names[capability] = kernels._build_name()
        assert ("-mavx2" in kernels._cflags()) == (capability != "DEFAULT")
    assert names["DEFAULT"] != names["AVX2"] == names["AVX512"]
    monkeypatch.setenv("PREDICTGS_KERNEL_ISA", "baseline")
    assert "-mavx2" not in kernels._cflags() and kernels._build_name() == names["DEFAULT"]
    monkeypatch.delenv("PREDICTGS_KERNEL_ISA")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert "-mavx2" not in kernels._cflags()
