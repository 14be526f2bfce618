"""Shared fixtures. Keep this small: test modules own their helpers unless several modules need them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Small real scenes (see shared/data/README.md): beside the checkout on dev machines and in CI only.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference-data folder; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA} (present only on dev machines and in CI)")
    return SHARED_DATA


def look_at_w2c(centre, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t), OpenCV axes (x right, y down, z forward), camera at ``centre``
    looking at ``target``."""
    centre, target, up = (np.asarray(v, dtype=np.float64) for v in (centre, target, up))
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    return R, -R @ centre


@pytest.fixture
def make_colmap_scene():
    """Factory writing a synthetic COLMAP scene (text model in sparse/0 + gradient images).

    make(root, sizes, model="PINHOLE", params=None, folders={"images": 1}, names=None, centres=None)
    - sizes: (width, height) of each image at full resolution (one COLMAP camera per image)
    - params: COLMAP parameters used for every camera (default: a pinhole with f = 0.8 W)
    - folders: image folder name -> integer downscale factor of its files
    - centres: camera centres (default: a circle of radius 4 at height 1, looking at the origin)
    Returns the root path."""
    from predictgs.data.cameras import rotmat_to_qvec
    from predictgs.data.colmap import ColmapCamera, ColmapImage, ColmapPoints, write_colmap_text

    def make(root, sizes, model="PINHOLE", params=None, folders=None, names=None, centres=None):
        root = Path(root)
        n = len(sizes)
        names = names or [f"img_{i:03d}.png" for i in range(n)]
        folders = folders or {"images": 1}
        if centres is None:
            angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
            centres = np.stack([4 * np.cos(angles), 4 * np.sin(angles), np.ones(n)], axis=1)
        cameras, images = {}, {}
        for i, ((w, h), name, centre) in enumerate(zip(sizes, names, centres)):
            cam_params = params if params is not None else [0.8 * w, 0.8 * w, w / 2, h / 2]
            cameras[i + 1] = ColmapCamera(i + 1, model, w, h, np.asarray(cam_params, dtype=np.float64))
            R, t = look_at_w2c(centre)
            images[i + 1] = ColmapImage(i + 1, rotmat_to_qvec(R), t, i + 1, name,
                                        np.zeros((0, 2)), np.zeros(0, np.int64))
            for folder, factor in folders.items():
                write_gradient_image(root / folder / name, w // factor, h // factor, seed=i)
        rng = np.random.default_rng(0)
        points = ColmapPoints(
            ids=np.arange(1, 51, dtype=np.int64), xyz=rng.uniform(-1, 1, (50, 3)),
            rgb=rng.integers(0, 256, (50, 3), dtype=np.uint8), errors=rng.random(50),
            track_lengths=np.zeros(50, np.int64), track_image_ids=np.zeros(0, np.int32),
            track_point2D_idxs=np.zeros(0, np.int32),
        )
        write_colmap_text(root / "sparse" / "0", cameras, images, points)
        return root

    return make


def write_gradient_image(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A smooth RGB image (compresses well, so large sizes stay cheap to write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x * y + 0.1 * seed) % 1.0], axis=2)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
