"""Images to look at: the renders of an evaluation (``predictgs eval --save-renders DIR``) and a video
along the test cameras or a spiral around the scene (``predictgs render ... -o video.mp4``).

``--save-renders DIR`` writes per test view ``<name>_render.png``, ``<name>_gt.png`` and
``<name>_error.png``: the per-pixel absolute error averaged over the colour channels, mapped with
matplotlib's ``inferno`` colormap from 0 (black) to ``ERROR_SCALE`` (0.25, and above: white-yellow).

Videos are written with imageio and its ffmpeg plugin (the optional extra ``predictgs[video]``):
H.264 in an .mp4 (or whatever the file's extension asks of ffmpeg), ``fps`` frames per second.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .io import check_output_dir, check_output_file, write_atomic

ERROR_SCALE = 0.25
TRAJECTORIES = ("test", "spiral")


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """A [3,H,W] or [H,W,3] image in [0,1] -> [H,W,3] uint8."""
    array = image.detach().float().cpu().clamp(0, 1)
    if array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.permute(1, 2, 0)
    return (array.numpy() * 255 + 0.5).astype(np.uint8)


def error_map(render: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """|render - target| averaged over the channels, as an RGB heat map (inferno, 0 .. ERROR_SCALE)."""
    from matplotlib import colormaps

    a, b = to_uint8(render).astype(np.float32) / 255, to_uint8(target).astype(np.float32) / 255
    error = np.abs(a - b).mean(axis=2) / ERROR_SCALE
    return (colormaps["inferno"](np.clip(error, 0, 1))[..., :3] * 255 + 0.5).astype(np.uint8)


class RenderSaver:
    """``on_render`` for :func:`predictgs.evaluate.evaluate_model`: three PNGs per view in ``directory``."""

    def __init__(self, directory: Path):
        self.directory = check_output_dir(Path(directory), "--save-renders")
        self.written: list[str] = []

    def __call__(self, index: int, camera, render: torch.Tensor, target: torch.Tensor) -> None:
        stem = f"{index:03d}_{Path(camera.image_name).stem}"
        for suffix, image in (("render", to_uint8(render)), ("gt", to_uint8(target)),
                              ("error", error_map(render, target))):
            path = self.directory / f"{stem}_{suffix}.png"
            write_atomic(path, _png(image))
            self.written.append(path.name)


# -- trajectories ----------------------------------------------------------------------------------------
def spiral_cameras(cameras, frames: int):
    """A spiral around the scene: the cameras' mean distance to their look-at centre, circling it once
    (the camera centroid's orbit, with a gentle up-down wave), looking at the centre, with the first
    camera's intrinsics and image size."""
    centres = np.stack([c.center for c in cameras])
    forwards = np.stack([c.R[2] for c in cameras])
    # the point nearest to every camera's viewing ray (least squares): what the cameras look at
    system = np.zeros((3, 3))
    rhs = np.zeros(3)
    for centre, forward in zip(centres, forwards):
        projector = np.eye(3) - np.outer(forward, forward)
        system += projector
        rhs += projector @ centre
    target = np.linalg.lstsq(system, rhs, rcond=None)[0]
    up = -np.mean(np.stack([c.R[1] for c in cameras]), axis=0)  # OpenCV: y points down
    up /= np.linalg.norm(up)
    offsets = centres - target
    radius = float(np.mean(np.linalg.norm(offsets - np.outer(offsets @ up, up), axis=1)))
    height = float(np.mean(offsets @ up))
    spread = float(np.std(offsets @ up)) or 0.1 * radius
    axis_a = offsets[0] - (offsets[0] @ up) * up
    axis_a /= np.linalg.norm(axis_a)
    axis_b = np.cross(up, axis_a)
    base = cameras[0]
    out = []
    for i in range(frames):
        angle = 2 * math.pi * i / frames
        centre = target + radius * (math.cos(angle) * axis_a + math.sin(angle) * axis_b) \
            + (height + spread * math.sin(2 * angle)) * up
        forward = (target - centre) / np.linalg.norm(target - centre)
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R = np.stack([right, down, forward])
        out.append(_camera_like(base, R, -R @ centre, f"spiral_{i:04d}"))
    return out


def _camera_like(base, R: np.ndarray, t: np.ndarray, name: str):
    import dataclasses

    return dataclasses.replace(base, R=R.astype(base.R.dtype), t=t.astype(base.t.dtype), image_name=name)


def trajectory_cameras(scene, kind: str, frames: int | None = None):
    if kind not in TRAJECTORIES:
        raise ConfigError(f"--trajectory: {kind!r} is not one of {', '.join(TRAJECTORIES)}")
    cameras = scene.test_cameras or scene.train_cameras
    if kind == "test":
        return list(cameras)
    return spiral_cameras(list(scene.train_cameras) + list(scene.test_cameras), frames or 120)


def video_writer(path: Path, fps: float):
    """An imageio ffmpeg writer, or a one-line ConfigError naming the extra to install."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 - the ffmpeg binary imageio uses
    except ImportError:
        raise ConfigError("writing a video needs imageio and imageio-ffmpeg: pip install 'predictgs[video]'") \
            from None
    return imageio.get_writer(str(path), fps=fps, macro_block_size=1, ffmpeg_log_level="error")


@torch.no_grad()
def render_trajectory(source: Path, out: Path, *, trajectory: str = "spiral", frames: int | None = None,
                      fps: float = 30.0, scene: Path | None = None, device: str = "auto", rasterizer: str = "auto",
                      progress: bool = False) -> dict:
    """Render ``source`` (a run or a decoded model) along a trajectory into a video file. -> a summary."""
    from tqdm import tqdm

    from .evaluate import render_view, resolve_device
    from .export import load_any, scene_cameras
    from .render import resolve_backend

    out = check_output_file(Path(out), "--out")
    torch_device = resolve_device(device)
    backend = resolve_backend(rasterizer, torch_device)
    loaded = load_any(Path(source), torch_device)
    loaded_scene, _ = scene_cameras(loaded, scene)
    cameras = trajectory_cameras(loaded_scene, trajectory, frames)
    background = torch.as_tensor(loaded_scene.background, dtype=torch.float32, device=torch_device)
    writer_path = out.with_name(f".{out.stem}.tmp-video{out.suffix}")
    writer = video_writer(writer_path, fps)
    try:
        for camera in tqdm(cameras, desc="render", unit="frame", disable=not progress, leave=False):
            frame = to_uint8(render_view(loaded.model, camera, background, torch_device, backend).image)
            # H.264 in yuv420p needs even sides: repeat the last row / column where one is odd
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            writer.append_data(frame)
        writer.close()
        writer_path.replace(out)
    finally:
        writer_path.unlink(missing_ok=True)
    return {"method": loaded.method, "trajectory": trajectory, "frames": len(cameras), "fps": fps,
            "resolution": [cameras[0].width, cameras[0].height], "out": str(out), "size_bytes": out.stat().st_size}


__all__ = ["RenderSaver", "render_trajectory", "error_map", "spiral_cameras", "TRAJECTORIES"]
