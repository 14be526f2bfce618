"""Tests for the embedded procedural benchmark (predictgs.data.synth).

The COLMAP text files are read with a tiny local parser on purpose: the project's reader is tested on
its own, and an integration test ties the two together.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from predictgs.data.cameras import qvec_to_rotmat
from predictgs.data.synth import FAMILIES, generate_scene
from predictgs.errors import ConfigError

SMALL = dict(width=64, height=48, num_views=8, num_points=300, supersample=2)


# ------------------------------------------------------------------ tiny COLMAP text parser

def _data_lines(path: Path) -> list[str]:
    return [ln.rstrip("\n") for ln in path.read_text().splitlines(keepends=True) if not ln.startswith("#")]


def read_cameras(path: Path) -> dict:
    cams = {}
    for ln in _data_lines(path):
        if ln.strip():
            f = ln.split()
            cams[int(f[0])] = dict(model=f[1], width=int(f[2]), height=int(f[3]), params=[float(x) for x in f[4:]])
    return cams


def read_images(path: Path) -> dict:
    lines = _data_lines(path)
    assert len(lines) % 2 == 0, "images.txt must hold two lines per image (the second may be empty)"
    images = {}
    for head, obs in zip(lines[0::2], lines[1::2]):
        f = head.split()
        q = np.array([float(x) for x in f[1:5]])
        t = np.array([float(x) for x in f[5:8]])
        o = obs.split()
        xy = np.array([[float(o[k]), float(o[k + 1])] for k in range(0, len(o), 3)]).reshape(-1, 2)
        ids = np.array([int(o[k + 2]) for k in range(0, len(o), 3)], dtype=np.int64)
        images[int(f[0])] = dict(R=qvec_to_rotmat(q), t=t, camera_id=int(f[8]), name=f[9], xy=xy, point_ids=ids)
    return images


def read_points(path: Path) -> dict:
    pts = {}
    for ln in _data_lines(path):
        if not ln.strip():
            continue
        f = ln.split()
        track = [(int(f[k]), int(f[k + 1])) for k in range(8, len(f), 2)]
        pts[int(f[0])] = dict(xyz=np.array([float(x) for x in f[1:4]]), rgb=tuple(int(x) for x in f[4:7]),
                              error=float(f[7]), track=track)
    return pts


def load_images(scene_dir: Path) -> np.ndarray:
    paths = sorted((scene_dir / "images").glob("*.png"))
    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255.0 for p in paths])


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for fam in FAMILIES:
        summary = generate_scene(fam, 3, root / fam, **SMALL)
        out[fam] = (root / fam, summary)
    return out


# ------------------------------------------------------------------ tests

def test_determinism_byte_identical(tmp_path):
    kwargs = dict(width=48, height=32, num_views=4, num_points=120, supersample=2)
    a = generate_scene("object", 11, tmp_path / "a", **kwargs)
    b = generate_scene("object", 11, tmp_path / "b", **kwargs)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 4 + 3 + 1
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert {k: v for k, v in a.items() if k != "out_dir"} == {k: v for k, v in b.items() if k != "out_dir"}
    # Another seed gives another scene.
    generate_scene("object", 12, tmp_path / "c", **kwargs)
    first = sorted((tmp_path / "a" / "images").glob("*.png"))[0].name
    assert (tmp_path / "a" / "images" / first).read_bytes() != (tmp_path / "c" / "images" / first).read_bytes()


@pytest.mark.parametrize("family", FAMILIES)
def test_files_and_counts(scenes, family):
    scene_dir, summary = scenes[family]
    W, H, V, P = SMALL["width"], SMALL["height"], SMALL["num_views"], SMALL["num_points"]
    names = sorted(p.name for p in (scene_dir / "images").glob("*.png"))
    assert len(names) == V
    for name in names:
        with Image.open(scene_dir / "images" / name) as im:
            assert im.size == (W, H) and im.mode == "RGB"

    cams = read_cameras(scene_dir / "sparse/0/cameras.txt")
    assert list(cams) == [1]
    cam = cams[1]
    assert cam["model"] == "PINHOLE" and (cam["width"], cam["height"]) == (W, H)
    fx, fy, cx, cy = cam["params"]
    assert fx == pytest.approx(fy) and (cx, cy) == (W / 2, H / 2)
    fov_x = np.degrees(2 * np.arctan(W / (2 * fx)))
    assert 60 <= fov_x <= 70

    images = read_images(scene_dir / "sparse/0/images.txt")
    assert sorted(images) == list(range(1, V + 1))
    assert [images[i]["name"] for i in sorted(images)] == names
    assert all(img["camera_id"] == 1 for img in images.values())

    points = read_points(scene_dir / "sparse/0/points3D.txt")
    assert len(points) == P == summary["num_points"]
    assert sorted(points) == list(range(1, P + 1))

    meta = json.loads((scene_dir / "synth.json").read_text())
    assert meta["family"] == family and meta["seed"] == 3 and meta["version"]
    assert (meta["width"], meta["height"], meta["num_views"], meta["num_points"]) == (W, H, V, P)
    assert summary["image_names"] == names


@pytest.mark.parametrize("family", FAMILIES)
def test_image_content(scenes, family):
    """Not constant, natural range, and both smooth regions and fine detail."""
    imgs = load_images(scenes[family][0])
    lum = imgs @ np.array([0.299, 0.587, 0.114])
    assert lum.std(axis=(1, 2)).min() > 0.04, "an image is nearly constant"
    assert 0.2 < imgs.mean() < 0.7
    saturated = (imgs.max(axis=-1) >= 1.0) | (imgs.min(axis=-1) <= 0.0)
    assert saturated.mean() < 0.01, "large areas clip to pure black/white"
    g = np.hypot(np.diff(lum, axis=2)[:, :-1], np.diff(lum, axis=1)[:, :, :-1])
    assert (g < 0.01).mean() > 0.15, "no smooth regions"
    assert (g > 0.06).mean() > 0.03, "no fine detail or edges"
    # High-frequency energy: the discrete Laplacian is far from zero somewhere in every family.
    lap = lum[:, 1:-1, 1:-1] * 4 - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:]
    assert np.percentile(np.abs(lap), 95) > 0.03


@pytest.mark.parametrize("family", FAMILIES)
def test_sparse_points_reproject(scenes, family):
    """Every observation is the projection of its point up to the recorded 3D noise; points lie in front of
    the cameras that see them; tracks and 2D observations point at each other."""
    scene_dir, _ = scenes[family]
    meta = json.loads((scene_dir / "synth.json").read_text())
    fx, fy, cx, cy = read_cameras(scene_dir / "sparse/0/cameras.txt")[1]["params"]
    images = read_images(scene_dir / "sparse/0/images.txt")
    points = read_points(scene_dir / "sparse/0/points3D.txt")
    # Noise is truncated at k sigma per axis; 1e-6 covers the 7 decimals of the written coordinates.
    delta = meta["noise_truncation_sigmas"] * meta["noise_sigma"] * np.sqrt(3) + 1e-6

    errors = []
    n_obs = 0
    for pid, pt in points.items():
        assert len(pt["track"]) >= 2
        assert len({img for img, _ in pt["track"]}) == len(pt["track"])
        per_point = []
        for image_id, idx in pt["track"]:
            img = images[image_id]
            assert img["point_ids"][idx] == pid
            xc = img["R"] @ pt["xyz"] + img["t"]
            z = xc[2]
            assert z > 0, "point behind a camera that observes it"
            uv = np.array([fx * xc[0] / z + cx, fy * xc[1] / z + cy])
            obs = img["xy"][idx]
            assert 0 <= obs[0] <= SMALL["width"] and 0 <= obs[1] <= SMALL["height"]
            err = float(np.linalg.norm(uv - obs))
            # A 3D offset of norm <= delta at depth z moves the projection by at most about
            # f * delta * (1 + |x/z, y/z|) / (z - delta); 1.2 and 1e-3 px absorb second-order terms and rounding.
            slope = np.linalg.norm(xc[:2]) / z
            bound = 1.2 * fx * delta * (1.0 + slope) / (z - delta) + 1e-3
            assert err <= bound, (pid, image_id, err, bound)
            per_point.append(err)
        assert pt["error"] == pytest.approx(np.mean(per_point), abs=2e-4)
        errors += per_point
        n_obs += len(pt["track"])
    errors = np.array(errors)
    assert np.median(errors) < 0.5 and np.mean(errors < 1.0) > 0.95
    # Every 2D observation belongs to a track (no dangling observations).
    assert sum(len(img["point_ids"]) for img in images.values()) == n_obs


def test_sparse_point_colours_match_images(scenes):
    scene_dir, _ = scenes["outdoor"]
    imgs = load_images(scene_dir)
    images = read_images(scene_dir / "sparse/0/images.txt")
    points = read_points(scene_dir / "sparse/0/points3D.txt")
    # The colour is read from the image where the point was sampled, at its pixel: some observation matches.
    close = 0
    for pid, pt in points.items():
        rgb = np.array(pt["rgb"]) / 255.0
        best = min(
            np.abs(imgs[image_id - 1][int(images[image_id]["xy"][idx][1]), int(images[image_id]["xy"][idx][0])] - rgb).max()
            for image_id, idx in pt["track"])
        close += best < 1e-6
    assert close / len(points) > 0.95


def test_bad_family_raises_config_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        generate_scene("forest", 0, tmp_path / "x", **SMALL)
    for name in FAMILIES:
        assert name in str(exc.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("override", [
    dict(width=0), dict(height=-4), dict(width=100_000), dict(num_views=0), dict(num_views=1),
    dict(supersample=0), dict(supersample=64), dict(num_points=-1), dict(width=64.5), dict(height=True),
    dict(seed=-1),
])
def test_bad_sizes_raise_config_error(tmp_path, override):
    kwargs = {**SMALL, "seed": 0, **override}
    with pytest.raises(ConfigError):
        generate_scene(family="indoor", out_dir=tmp_path / "x", **kwargs)


def test_progress_callback_and_no_points(tmp_path):
    calls = []
    summary = generate_scene("indoor", 1, tmp_path / "s", width=32, height=24, num_views=3, num_points=0,
                             supersample=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert summary["num_points"] == 0
    assert read_points(tmp_path / "s/sparse/0/points3D.txt") == {}
    images = read_images(tmp_path / "s/sparse/0/images.txt")
    assert len(images) == 3 and all(len(img["point_ids"]) == 0 for img in images.values())


@pytest.mark.slow
def test_default_size_scene(tmp_path):
    summary = generate_scene("indoor", 0, tmp_path / "d")
    assert summary["num_views"] == 40 and summary["num_points"] == 3000
    assert len(list((tmp_path / "d/images").glob("*.png"))) == 40
    with Image.open(sorted((tmp_path / "d/images").glob("*.png"))[0]) as im:
        assert im.size == (160, 120)
    assert len(read_points(tmp_path / "d/sparse/0/points3D.txt")) == 3000


def test_rerun_with_fewer_views_removes_stale_views(tmp_path):
    generate_scene("outdoor", 0, tmp_path, width=32, height=24, num_views=5, num_points=20, supersample=1)
    generate_scene("outdoor", 0, tmp_path, width=32, height=24, num_views=3, num_points=20, supersample=1)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["view_000.png", "view_001.png", "view_002.png"]
