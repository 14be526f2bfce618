"""`predictgs export`: every format read back (PLY with plyfile) and rendered against the model's own render
of the view; 3DGS's PLY is exactly the file 3DGS writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from baselines.gaussian_splatting import write_ply
from predictgs.cli import main
from predictgs.data import load_scene
from predictgs.data.synth import generate_scene
from predictgs.evaluate import render_view
from predictgs.export import (RawGaussians, cloud_raw, gaussians_for_view, load_any, morton_order,
                              raw_gaussians, read_compressed_ply, read_splat, to_gaussians)
from predictgs.model.splats import ply_property_names
from predictgs.model.view import View
from predictgs.pipeline.train import run_training
from predictgs.render import rasterize

plyfile = pytest.importorskip("plyfile", reason="the PLY read-back uses plyfile (pip install 'predictgs[test]')")
pytestmark = pytest.mark.slow

CONFIG = {"train": {"lpips": False},
          "model": {"curriculum": {"noise_from": 0.1, "entropy_from": 0.2, "bbox_update_at": 0.2}},
          "model_by_method": {"hac": {"context": {"log2_grid": 8, "log2_plane": 8}}}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=9, num_points=300)
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    for method in ("hac", "3dgs"):
        run_training(method, scene, root / method, iterations=30, config_file=config, progress=False)
    assert main(["encode", str(root / "hac"), "-o", str(root / "hac.pgs"), "--no-eval"]) == 0
    assert main(["decode", str(root / "hac.pgs"), "-o", str(root / "decoded")]) == 0
    return root, scene


def _camera(scene_path, index):
    scene = load_scene(scene_path, {})
    return scene, scene.test_cameras[index]


def _render(gaussians, camera, background):
    view = View.from_camera(camera, torch.device("cpu"))
    return rasterize(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.colors,
                     background=background, sh_degree=gaussians.sh_degree, backend="reference",
                     **view.render_args()).image.clamp(0, 1)


def _psnr(a, b) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else -10 * np.log10(mse)


def _read_ply(path) -> RawGaussians:
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n.split("_")[-1]))

    def cols(*keys):
        return np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=1) if keys else \
            np.zeros((vertex.count, 0), np.float32)

    return RawGaussians(means=cols("x", "y", "z"), f_dc=cols("f_dc_0", "f_dc_1", "f_dc_2"), f_rest=cols(*rest),
                        opacity=np.asarray(vertex["opacity"], np.float32), scale=cols("scale_0", "scale_1", "scale_2"),
                        rot=cols("rot_0", "rot_1", "rot_2", "rot_3"))


READERS = {"ply": _read_ply, "splat": lambda p: read_splat(p.read_bytes()),
           "ply_compressed": lambda p: read_compressed_ply(p.read_bytes())}
SUFFIX = {"ply": ".ply", "splat": ".splat", "ply_compressed": ".compressed.ply"}
# PSNR of the exported Gaussians' render against the model's own render of the view: float32 PLY is
# the same up to rounding; .splat and the compressed PLY quantise colour, opacity and rotation to 8-10 bits.
MIN_PSNR = {"ply": 60.0, "splat": 40.0, "ply_compressed": 45.0}


@pytest.mark.parametrize("source", ["hac", "decoded"])
@pytest.mark.parametrize("fmt", ["ply", "splat", "ply_compressed"])
def test_anchor_model_exports_the_gaussians_of_a_view(trained, source, fmt, capsys):
    root, scene_path = trained
    out = root / f"{source}_{fmt}{SUFFIX[fmt]}"
    args = ["export", str(root / source), "-o", str(out), "--view", "1"]
    if source == "decoded":
        args += ["--scene", str(scene_path)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == fmt and summary["view_dependent"] and summary["view"] == 1
    raw = READERS[fmt](out)
    assert raw.count == summary["num_gaussians"] > 0
    if fmt == "ply":
        names = [p.name for p in plyfile.PlyData.read(str(out))["vertex"].properties]
        assert names == ply_property_names(0)  # x,y,z,nx,ny,nz,f_dc_*,opacity,scale_*,rot_*: 3DGS's layout
    scene, camera = _camera(scene_path, 1)
    background = torch.as_tensor(scene.background, dtype=torch.float32)
    model = load_any(root / source).model
    expected = render_view(model, camera, background, torch.device("cpu"), "reference").image.clamp(0, 1)
    got = _render(to_gaussians(raw), camera, background)
    assert _psnr(got, expected) > MIN_PSNR[fmt], fmt


@pytest.mark.parametrize("fmt", ["ply", "splat", "ply_compressed"])
def test_3dgs_exports_its_gaussians(trained, fmt, capsys, tmp_path):
    root, scene_path = trained
    out = tmp_path / f"gs{SUFFIX[fmt]}"
    assert main(["export", str(root / "3dgs"), "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert not summary["view_dependent"]
    model = load_any(root / "3dgs").model
    if fmt == "ply":
        write_ply(model, tmp_path / "reference.ply")
        assert out.read_bytes() == (tmp_path / "reference.ply").read_bytes()  # 3DGS's own file
    raw = READERS[fmt](out)
    assert raw.count == model.cloud.num
    if fmt == "ply_compressed":
        assert raw.sh_degree == model.config.sh_degree  # the element sh holds the higher coefficients
    scene, camera = _camera(scene_path, 0)
    background = torch.as_tensor(scene.background, dtype=torch.float32)
    expected = render_view(model, camera, background, torch.device("cpu"), "reference").image.clamp(0, 1)
    got = _render(to_gaussians(raw), camera, background)
    assert _psnr(got, expected) > MIN_PSNR[fmt], fmt


def test_export_errors_are_one_line(trained, tmp_path, capsys):
    root, _ = trained
    assert main(["export", str(root / "decoded"), "-o", str(tmp_path / "x.ply")]) == 2
    assert "--scene" in capsys.readouterr().err
    assert main(["export", str(root / "hac"), "-o", str(tmp_path / "x.ply"), "--view", "99"]) == 2
    assert "--view 99" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "x.ply")]) == 2
    assert "neither a run" in capsys.readouterr().err


def _sigmoid(x):
    return 1 / (1 + np.exp(-x.astype(np.float64)))


@pytest.mark.parametrize("method", ["hac", "3dgs"])
@pytest.mark.parametrize("fmt", ["ply", "splat", "ply_compressed"])
def test_every_value_reads_back_within_its_format_precision(trained, method, fmt, tmp_path, capsys):
    root, scene_path = trained
    out = tmp_path / f"x{SUFFIX[fmt]}"
    assert main(["export", str(root / method), "-o", str(out), "--view", "1"]) == 0
    capsys.readouterr()
    model = load_any(root / method).model
    source = cloud_raw(model.cloud) if method == "3dgs" else \
        raw_gaussians(gaussians_for_view(model, _camera(scene_path, 1)[1]))
    got = READERS[fmt](out)
    if fmt == "splat":  # sorted by size x opacity, largest first (antimatter15's order)
        order = np.argsort(-np.exp(source.scale.astype(np.float64).sum(axis=1)) * _sigmoid(source.opacity),
                           kind="stable")
        got_order = np.arange(got.count)
    elif fmt == "ply_compressed":  # Morton order
        order, got_order = morton_order(source.means), np.arange(got.count)
    else:
        order = got_order = np.arange(source.count)

    def pair(name):
        return getattr(source, name)[order].astype(np.float64), getattr(got, name)[got_order].astype(np.float64)

    span = source.means.max(axis=0) - source.means.min(axis=0)
    if fmt == "ply":
        for name in ("means", "f_dc", "f_rest", "opacity", "scale", "rot"):
            a, b = pair(name)
            assert np.array_equal(a, b), name
        return
    a, b = pair("means")
    assert np.abs(a - b).max() <= (0 if fmt == "splat" else span.max() / 1023 + 1e-6)
    a, b = pair("rot")
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    error = np.minimum(np.abs(a - b).max(axis=1), np.abs(a + b).max(axis=1))  # q and -q: one rotation
    assert error.max() < (1.5 / 128 if fmt == "splat" else 2e-3)
    a, b = pair("f_dc")
    colour_error = np.abs((a - b) * 0.28209479177387814)
    assert colour_error[(0.5 + 0.28209479177387814 * a > 0.0) & (0.5 + 0.28209479177387814 * a < 1.0)].max() < 1.5 / 255
    a, b = pair("opacity")
    assert np.abs(_sigmoid(a) - _sigmoid(b)).max() < 1.5 / 255
    a, b = pair("scale")
    assert np.abs(np.exp(a) - np.exp(b)).max() <= (1e-6 if fmt == "splat" else np.exp(a).max() * 0.01)
