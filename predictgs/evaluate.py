"""Evaluating a model: the device, test-view renders, quality metrics, rendering speed.

FPS protocol (``measure_fps``): one warm-up pass over the test views (the test-time model's per-anchor
values are computed then, once, as at load time), then passes over the test views at test resolution,
each frame timed between CUDA synchronisations, for at least ``min_seconds`` (default 3 s); FPS is
1 / the median frame time. Run one process alone on the GPU: concurrent processes time-slice it.
"""

from __future__ import annotations

import statistics
import time

import torch

from .config import check_device
from .data.scene import Scene
from .errors import ConfigError
from .metrics import evaluate_images
from .model.view import View
from .render import rasterize

FPS_MIN_SECONDS = 3.0


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available. A device that is not there is a one-line error."""
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but it is not available")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@torch.no_grad()
def render_view(model, camera, background: torch.Tensor, device: torch.device, backend: str = "auto"):
    """Render one camera with the test-time model (``model`` in eval mode); the rasterizer output."""
    view = View.from_camera(camera, device)
    gaussians, _ = model.gaussians(view)
    return rasterize(gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.colors,
                     background=background, sh_degree=gaussians.sh_degree, backend=backend, **view.render_args())


def test_cameras(scene: Scene) -> list:
    """The scene's test views; none is a ConfigError (a model is never scored on its training views)."""
    if not scene.test_cameras:
        raise ConfigError(f"{scene.path} has no test views under its protocol (llffhold "
                          f"{scene.protocol.llffhold}); nothing to evaluate")
    return scene.test_cameras


@torch.no_grad()
def evaluate_model(model, scene: Scene, device: torch.device, lpips: bool = True,
                   backend: str = "auto", on_render=None, progress: bool = False) -> tuple[dict, dict]:
    """Test-view metrics of a model (the scene's test split: never its training views; a scene without
    test views is an error). The model is put in eval mode (its test-time values); the caller restores
    train mode if needed. ``on_render(index, camera, render, target)`` sees each view (e.g. to save it);
    ``progress``: a bar."""
    from tqdm import tqdm

    model.eval()
    cameras = test_cameras(scene)
    background = torch.as_tensor(scene.background, dtype=torch.float32, device=device)
    renders, targets = [], []
    for index, camera in enumerate(tqdm(cameras, desc="evaluate", unit="view", disable=not progress, leave=False)):
        renders.append(render_view(model, camera, background, device, backend).image.clamp(0, 1).cpu())
        targets.append(scene.load_image(camera))
        if on_render is not None:
            on_render(index, camera, renders[-1], targets[-1])
    return evaluate_images(renders, targets, [c.image_name for c in cameras], lpips=lpips)


@torch.no_grad()
def measure_fps(model, cameras, background: torch.Tensor, device: torch.device, backend: str = "auto",
                min_seconds: float = FPS_MIN_SECONDS, max_frames: int = 100_000) -> dict:
    """Rendering speed at the cameras' resolution (see the module docstring). -> fps, frames timed,
    median and mean frame time in ms, seconds spent."""
    model.eval()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for camera in cameras:  # warm-up: caches, kernels, allocator
        render_view(model, camera, background, device, backend)
    sync()
    times, start = [], time.perf_counter()
    while len(times) < max_frames:
        for camera in cameras:
            t0 = time.perf_counter()
            render_view(model, camera, background, device, backend)
            sync()
            times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_seconds:
            break
    median = statistics.median(times)
    return {"fps": 1.0 / median, "fps_frames": len(times), "frame_ms_median": 1000 * median,
            "frame_ms_mean": 1000 * statistics.fmean(times), "fps_seconds": time.perf_counter() - start}
