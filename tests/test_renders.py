"""Renders to look at: `predictgs eval --save-renders DIR` (render, ground truth, error map per test view)
and `predictgs render ... -o video.mp4` (test cameras or a spiral)."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from predictgs.cli import main
from predictgs.data import load_scene
from predictgs.data.synth import generate_scene
from predictgs.evaluate import render_view
from predictgs.export import load_any
from predictgs.pipeline.train import run_training
from predictgs.render_video import spiral_cameras, to_uint8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("renders")
    scene = root / "scene"
    generate_scene("object", 0, scene, width=40, height=30, num_views=17, num_points=300)  # 3 test views
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump({"train": {"lpips": False}}))
    run_training("scaffold", scene, root / "run", iterations=20, config_file=config, progress=False)
    assert main(["encode", str(root / "run"), "-o", str(root / "x.pgs"), "--no-eval"]) == 0
    assert main(["decode", str(root / "x.pgs"), "-o", str(root / "decoded")]) == 0
    return root, scene


def test_eval_saves_render_ground_truth_and_error_map(decoded, tmp_path, capsys):
    root, scene_path = decoded
    out = tmp_path / "renders"
    assert main(["eval", str(root / "decoded"), "--scene", str(scene_path), "--no-lpips", "--fps-seconds", "0.01",
                 "--device", "cpu", "--save-renders", str(out)]) == 0
    capsys.readouterr()
    scene = load_scene(scene_path, {})
    cameras = scene.test_cameras
    assert len(cameras) == 3
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 * len(cameras)
    model = load_any(root / "decoded").model
    background = torch.as_tensor(scene.background, dtype=torch.float32)
    backend = json.loads((root / "decoded" / "metrics.json").read_text())["rasterizer"]  # what eval rendered with
    for index, camera in enumerate(cameras):
        stem = f"{index:03d}_{camera.image_name.rsplit('.', 1)[0]}"
        render = np.asarray(Image.open(out / f"{stem}_render.png"))
        gt = np.asarray(Image.open(out / f"{stem}_gt.png"))
        error = np.asarray(Image.open(out / f"{stem}_error.png"))
        assert render.shape == gt.shape == error.shape == (camera.height, camera.width, 3)
        expected = to_uint8(render_view(model, camera, background, torch.device("cpu"), backend).image)
        assert np.array_equal(render, expected)
        assert np.array_equal(gt, to_uint8(scene.load_image(camera)))
        # the error map is dark where the render is right and bright where it is wrong
        diff = np.abs(render.astype(float) - gt.astype(float)).mean(axis=2)
        brightness = error.astype(float).sum(axis=2)
        low, high = diff <= np.percentile(diff, 10), diff >= np.percentile(diff, 90)
        assert brightness[high].mean() > brightness[low].mean()
    metrics = json.loads((root / "decoded" / "metrics.json").read_text())
    assert metrics["renders"] == str(out)


@pytest.mark.parametrize("trajectory,frames", [("test", 3), ("spiral", 8)])
def test_render_writes_a_video(decoded, tmp_path, trajectory, frames, capsys):
    pytest.importorskip("imageio.v2", reason="the video extra (predictgs[video])")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the video extra (predictgs[video])")
    root, _ = decoded
    video = tmp_path / "v.mp4"
    assert main(["render", str(root / "run"), "-o", str(video), "--trajectory", trajectory, "--frames", "8",
                 "--fps", "10", "--device", "cpu", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == frames and video.stat().st_size == summary["size_bytes"] > 0
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    width, height = meta["size"]
    read = [np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]
    assert len(read) == frames and (width, height) == (40, 30)
    assert float(np.std(read[0])) > 1.0  # the scene, not a blank frame
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_spiral_circles_the_scene_looking_at_it(decoded):
    _, scene_path = decoded
    scene = load_scene(scene_path, {})
    cameras = list(scene.train_cameras) + list(scene.test_cameras)
    spiral = spiral_cameras(cameras, 12)
    centres = np.stack([c.center for c in spiral])
    middle = centres.mean(axis=0)
    radii = np.linalg.norm(centres - middle, axis=1)
    assert radii.std() < 0.2 * radii.mean()  # a loop, not a line
    for camera in spiral:  # each looks towards the loop's middle (forward axis within 30 degrees)
        towards = (middle - camera.center) / np.linalg.norm(middle - camera.center)
        assert float(camera.R[2] @ towards) > np.cos(np.radians(30))


def test_render_without_the_video_extra_names_it(decoded, tmp_path, monkeypatch, capsys):
    root, _ = decoded
    real_import = builtins.__import__

    def no_ffmpeg(name, *args, **kwargs):
        if name == "imageio_ffmpeg":
            raise ImportError("No module named 'imageio_ffmpeg'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ffmpeg)
    assert main(["render", str(root / "run"), "-o", str(tmp_path / "v.mp4"), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predictgs[video]" in err[0]
