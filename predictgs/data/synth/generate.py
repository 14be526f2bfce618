"""Writing one synthetic scene: argument checks, seeding, and the files on disk (each written atomically).

:func:`generate_scene` ties the parts together: the family's builder (:mod:`.scenes`) and camera rig
(:mod:`.poses`), the renderer (:mod:`.shading`), the sparse points (:mod:`.sfm`), and ``synth.json``,
which records everything needed to regenerate the scene.

Determinism: all randomness comes from numpy Generators seeded with (family, seed, stream), one stream per
purpose, so the same arguments give byte-identical files on the same platform and changing e.g. the view
count does not change the scene layout: the scene (geometry, materials, light) depends only on
(family, seed), not on image size or view count.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from predictgs.data.cameras import Camera
from predictgs.data.synth.poses import FOV_X_DEG, focal_for, make_poses
from predictgs.data.synth.scenes import BUILDERS
from predictgs.data.synth.sfm import sample_sparse_points, write_sparse_model
from predictgs.data.synth.shading import render_view, to_uint8
from predictgs.errors import ConfigError
from predictgs.io import write_atomic

SYNTH_VERSION = "predictgs-synth-1"
# The position of a family in this tuple seeds its random streams: append new families, never reorder.
FAMILIES = ("outdoor", "indoor", "object")
MAX_IMAGE_SIDE = 4096
MAX_VIEWS = 2000
MAX_SUPERSAMPLE = 8
MAX_POINTS = 1_000_000
DEFAULT_NUM_POINTS = 3000

# Random streams, so that changing e.g. the view count does not change the scene layout.
_STREAM_SCENE, _STREAM_CAMERAS, _STREAM_JITTER, _STREAM_POINTS = 1, 2, 3, 4


def _rng(family: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([FAMILIES.index(family), seed, stream])


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"synthetic scene: {name} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ConfigError(f"synthetic scene: {name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def image_name(index: int, num_views: int) -> str:
    digits = max(3, len(str(num_views - 1)))
    return f"view_{index:0{digits}d}.png"


def make_cameras(family: str, seed: int, width: int, height: int, num_views: int) -> list[Camera]:
    fx = focal_for(width)
    cams = []
    for i, (R, t) in enumerate(make_poses(family, _rng(family, seed, _STREAM_CAMERAS), num_views)):
        name = image_name(i, num_views)
        cams.append(Camera(uid=i, image_name=name, image_path=None, width=width, height=height,
                           fx=fx, fy=fx, cx=width / 2.0, cy=height / 2.0, R=R, t=t))
    return cams


def generate_scene(family: str, seed: int, out_dir: Path, width: int = 160, height: int = 120,
                   num_views: int = 40, num_points: int = DEFAULT_NUM_POINTS, supersample: int = 2,
                   progress: bool | Callable[[int, int], None] = False) -> dict:
    """Render one synthetic scene to ``out_dir`` (images/, sparse/0/*.txt, synth.json) and return a summary.

    ``progress``: True shows a tqdm bar over views; a callable is called as ``progress(done, total)``.
    Raises :class:`ConfigError` for an unknown family or out-of-range sizes.
    """
    if family not in FAMILIES:
        raise ConfigError(f"synthetic scene: unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    width = _check_int("width", width, 8, MAX_IMAGE_SIDE)
    height = _check_int("height", height, 8, MAX_IMAGE_SIDE)
    num_views = _check_int("num_views", num_views, 2, MAX_VIEWS)
    num_points = _check_int("num_points", num_points, 0, MAX_POINTS)
    supersample = _check_int("supersample", supersample, 1, MAX_SUPERSAMPLE)
    out_dir = Path(out_dir)

    scene = BUILDERS[family](_rng(family, seed, _STREAM_SCENE))
    cameras = make_cameras(family, seed, width, height, num_views)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    # A rerun with fewer views must not leave stale views of ours behind (loaders may list the folder).
    current = {c.image_name for c in cameras}
    for stale in sorted(image_dir.glob("view_*.png")):
        if stale.name not in current:
            stale.unlink()

    bar = None
    if progress is True:
        from tqdm import tqdm
        bar = tqdm(total=num_views, desc=f"synth {family}", unit="view")
    jitter_rng = _rng(family, seed, _STREAM_JITTER)
    images = []
    for i, cam in enumerate(cameras):
        img = render_view(scene, cam, supersample, jitter_rng)
        images.append(img)
        png = io.BytesIO()
        Image.fromarray(to_uint8(img), mode="RGB").save(png, format="PNG")
        write_atomic(image_dir / cam.image_name, png.getvalue())
        cam.image_path = image_dir / cam.image_name
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(i + 1, num_views)
    if bar is not None:
        bar.close()

    pts = sample_sparse_points(scene, cameras, [to_uint8(im) / 255.0 for im in images], num_points,
                               _rng(family, seed, _STREAM_POINTS))
    write_sparse_model(out_dir / "sparse" / "0", cameras, pts)

    centers = np.stack([c.center for c in cameras])
    extent = 1.1 * float(np.max(np.linalg.norm(centers - centers.mean(axis=0), axis=1)))
    meta = {
        "generator": "predictgs.data.synth",
        "version": SYNTH_VERSION,
        "family": family,
        "seed": seed,
        "width": width,
        "height": height,
        "num_views": num_views,
        "num_points_requested": num_points,
        "num_points": int(len(pts.xyz)),
        "supersample": supersample,
        "camera_model": "PINHOLE",
        "fov_x_deg": FOV_X_DEG,
        "fx": cameras[0].fx,
        "noise_sigma": scene.noise_sigma,
        "noise_truncation_sigmas": 3.0,
        "observations": "exact projections of the noise-free surface points",
        "mean_track_length": float(pts.visible.sum() / max(len(pts.xyz), 1)),
        "camera_extent": extent,
        "primitives": scene.description,
    }
    write_atomic(out_dir / "synth.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {**meta, "out_dir": str(out_dir), "image_names": [c.image_name for c in cameras]}
