"""Readers of the scene layer: COLMAP (bin/txt), camera models and undistortion, LLFF, Blender,
instant-ngp, images, and the errors a user can cause."""

from __future__ import annotations

import json
import math
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from predictgs.data import Protocol, load_scene
from predictgs.data.blender import opengl_c2w_to_w2c, read_ply_points
from predictgs.data.cameras import Distortion
from predictgs.data.colmap import (
    ColmapCamera, ColmapImage, ColmapPoints, MODEL_NUM_PARAMS, pinhole_intrinsics, read_cameras,
    read_colmap_model, read_images, read_points3D, write_colmap_binary, write_colmap_text,
)
from predictgs.data.images import distort_normalized, load_image, undistort_image
from predictgs.data.llff import llff_poses_to_w2c
from predictgs.errors import SceneError

DISTORTED = {
    "SIMPLE_RADIAL": [100.0, 83.3, 61.7, -0.25],
    "RADIAL": [100.0, 83.3, 61.7, -0.2, 0.08],
    "OPENCV": [100.0, 104.0, 83.3, 61.7, -0.2, 0.05, 0.03, -0.04],
}


# ----------------------------------------------------------------------------------------------
# helpers


def random_model(rng: np.random.Generator):
    """A COLMAP model exercising every field: several camera models, images with and without
    keypoints (some unmatched), points with empty and long tracks, a name with a folder and a space."""
    cameras = {}
    for cam_id, model in enumerate(["PINHOLE", "SIMPLE_RADIAL", "OPENCV", "FULL_OPENCV", "SIMPLE_PINHOLE"], start=1):
        cameras[cam_id * 3] = ColmapCamera(cam_id * 3, model, int(rng.integers(10, 5000)), int(rng.integers(10, 5000)),
                                           np.abs(rng.normal(size=MODEL_NUM_PARAMS[model])) * 100 + 1)
    images = {}
    names = ["a.jpg", "sub dir/b 1.png", "c.JPG", "d.png"]
    for k, name in enumerate(names):
        n_obs = [0, 7, 3, 12][k]
        q = rng.normal(size=4)
        ids = rng.integers(1, 40, size=n_obs)
        ids[::3] = -1
        images[10 + k] = ColmapImage(10 + k, q / np.linalg.norm(q), rng.normal(size=3), list(cameras)[k], name,
                                     rng.uniform(0, 3000, (n_obs, 2)), ids.astype(np.int64))
    lengths = rng.integers(0, 6, size=25)
    lengths[0] = 0
    total = int(lengths.sum())
    points = ColmapPoints(
        ids=rng.permutation(np.arange(1, 1000))[:25].astype(np.int64), xyz=rng.normal(size=(25, 3)) * 10,
        rgb=rng.integers(0, 256, (25, 3), dtype=np.uint8), errors=rng.random(25) * 2, track_lengths=lengths.astype(np.int64),
        track_image_ids=rng.integers(10, 14, total).astype(np.int32),
        track_point2D_idxs=rng.integers(0, 12, total).astype(np.int32),
    )
    return cameras, images, points


def assert_models_equal(a, b):
    cams_a, imgs_a, pts_a = a
    cams_b, imgs_b, pts_b = b
    assert sorted(cams_a) == sorted(cams_b)
    for k in cams_a:
        ca, cb = cams_a[k], cams_b[k]
        assert (ca.id, ca.model, ca.width, ca.height) == (cb.id, cb.model, cb.width, cb.height)
        np.testing.assert_array_equal(ca.params, cb.params)
    assert sorted(imgs_a) == sorted(imgs_b)
    for k in imgs_a:
        ia, ib = imgs_a[k], imgs_b[k]
        assert (ia.id, ia.camera_id, ia.name) == (ib.id, ib.camera_id, ib.name)
        for field in ("qvec", "tvec", "xys", "point3D_ids"):
            np.testing.assert_array_equal(getattr(ia, field), getattr(ib, field), err_msg=field)
        assert ib.xys.shape == (len(ib.point3D_ids), 2)
    for field in ("ids", "xyz", "rgb", "errors", "track_lengths", "track_image_ids", "track_point2D_idxs"):
        np.testing.assert_array_equal(getattr(pts_a, field), getattr(pts_b, field), err_msg=field)


def read_all(folder, suffix):
    return (read_cameras(folder / f"cameras{suffix}"), read_images(folder / f"images{suffix}"),
            read_points3D(folder / f"points3D{suffix}"))


def blob_image(width, height, centre, sigma=1.5) -> np.ndarray:
    """Float [H,W] Gaussian dot at ``centre`` in pixel coordinates (pixel centres at +0.5)."""
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    d2 = (u[None, :] - centre[0]) ** 2 + (v[:, None] - centre[1]) ** 2
    return np.exp(-d2 / (2 * sigma**2))


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of a dot (pixel coordinates), ignoring the faint tail."""
    weights = np.where(image > 0.05 * image.max(), image, 0.0)
    v, u = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    return np.array([(weights * u).sum(), (weights * v).sum()]) / weights.sum()


def distorted_position(model, params, pinhole_uv):
    """Where a distorted camera sees what the pinhole camera with the same intrinsics sees at pinhole_uv."""
    fx, fy, cx, cy, dist = pinhole_intrinsics(ColmapCamera(1, model, 160, 120, np.array(params)), "test")
    xd, yd = distort_normalized((pinhole_uv[0] - cx) / fx, (pinhole_uv[1] - cy) / fy, dist.model, dist.params)
    return np.array([fx * xd + cx, fy * yd + cy]), dist


def gl_c2w(centre, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> list:
    """OpenGL camera-to-world matrix (x right, y up, z back) of a camera looking at target."""
    centre, target, up = (np.asarray(v, float) for v in (centre, target, up))
    back = (centre - target) / np.linalg.norm(centre - target)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, centre
    return m.tolist()


def save_rgba(path, rgba: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(path)


# ----------------------------------------------------------------------------------------------
# COLMAP files


def test_colmap_text_binary_round_trip(tmp_path):
    original = random_model(np.random.default_rng(3))
    write_colmap_text(tmp_path / "txt", *original)
    from_text = read_all(tmp_path / "txt", ".txt")
    assert_models_equal(original, from_text)
    write_colmap_binary(tmp_path / "bin", *from_text)
    from_binary = read_all(tmp_path / "bin", ".bin")
    assert_models_equal(original, from_binary)
    # A whole-model read picks the binary files and finds the model through sparse/0.
    write_colmap_binary(tmp_path / "scene" / "sparse" / "0", *original)
    model = read_colmap_model(tmp_path / "scene")
    assert model.cameras_file.name == "cameras.bin"
    assert_models_equal(original, (model.cameras, model.images, model.points))
    i = int(np.argmax(original[2].track_lengths))
    image_ids, _ = model.points.track(i)
    assert len(image_ids) == original[2].track_lengths[i] > 0


@pytest.mark.parametrize("line_end, bom", [("\r\n", False), ("\r", False), ("\r\n", True), ("\n", True)],
                         ids=["CRLF", "CR", "CRLF with BOM (Windows Notepad)", "LF with BOM"])
def test_colmap_text_with_windows_line_ends_and_a_byte_order_mark(tmp_path, line_end, bom):
    """COLMAP text edited on Windows reads exactly as the LF original (an empty keypoint line included)."""
    original = random_model(np.random.default_rng(4))
    first = sorted(original[1])[0]
    original[1][first].xys, original[1][first].point3D_ids = np.zeros((0, 2)), np.zeros(0, np.int64)
    write_colmap_text(tmp_path / "lf", *original)
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        text = (tmp_path / "lf" / name).read_text().replace("\n", line_end)
        (tmp_path / "win").mkdir(exist_ok=True)
        (tmp_path / "win" / name).write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    assert_models_equal(read_all(tmp_path / "lf", ".txt"), read_all(tmp_path / "win", ".txt"))


def test_binary_layout_matches_colmap_format(tmp_path):
    """Bytes packed by hand from COLMAP's documented layout, independently of our writer."""
    (tmp_path / "cameras.bin").write_bytes(struct.pack("<Q", 1) + struct.pack("<iiQQ4d", 7, 1, 640, 480, 500.0, 501.0, 320.0, 240.0))
    image = (struct.pack("<I4d3dI", 3, 1.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 7) + b"dir/x.png\0"
             + struct.pack("<Q", 2) + struct.pack("<ddq", 10.5, 20.5, 42) + struct.pack("<ddq", 1.0, 2.0, -1))
    (tmp_path / "images.bin").write_bytes(struct.pack("<Q", 1) + image)
    points = (struct.pack("<QdddBBBd", 42, 1.0, 2.0, 3.0, 10, 20, 30, 0.5) + struct.pack("<Q", 2)
              + struct.pack("<ii", 3, 0) + struct.pack("<ii", 9, 5)
              + struct.pack("<QdddBBBd", 43, -1.0, 0.0, 1.0, 1, 2, 3, 0.25) + struct.pack("<Q", 0))
    (tmp_path / "points3D.bin").write_bytes(struct.pack("<Q", 2) + points)
    model = read_colmap_model(tmp_path)
    (camera,) = model.cameras.values()
    assert (camera.id, camera.model, camera.width, camera.height) == (7, "PINHOLE", 640, 480)
    np.testing.assert_array_equal(camera.params, [500.0, 501.0, 320.0, 240.0])
    (im,) = model.images.values()
    assert (im.id, im.camera_id, im.name) == (3, 7, "dir/x.png")
    np.testing.assert_array_equal(im.tvec, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(im.xys, [[10.5, 20.5], [1.0, 2.0]])
    np.testing.assert_array_equal(im.point3D_ids, [42, -1])
    pts = model.points
    np.testing.assert_array_equal(pts.ids, [42, 43])
    np.testing.assert_array_equal(pts.rgb, [[10, 20, 30], [1, 2, 3]])
    np.testing.assert_array_equal(pts.errors, [0.5, 0.25])
    np.testing.assert_array_equal(pts.track_lengths, [2, 0])
    np.testing.assert_array_equal(pts.track_image_ids, [3, 9])
    np.testing.assert_array_equal(pts.track_point2D_idxs, [0, 5])
    np.testing.assert_array_equal(pts.index_of([43, 42, 5]), [1, 0, -1])


def test_colmap_model_found_in_sparse_or_given_folder(tmp_path):
    cameras, images, points = random_model(np.random.default_rng(1))
    write_colmap_text(tmp_path / "a" / "sparse", cameras, images, points)
    assert read_colmap_model(tmp_path / "a").folder == tmp_path / "a" / "sparse"
    assert read_colmap_model(tmp_path / "a" / "sparse").folder == tmp_path / "a" / "sparse"
    with pytest.raises(SceneError, match="no COLMAP model"):
        read_colmap_model(tmp_path)


def test_truncated_binary_file_is_a_scene_error_naming_it(tmp_path):
    write_colmap_binary(tmp_path, *random_model(np.random.default_rng(2)))
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) - 13])
    for reader, name in ((read_cameras, "cameras.bin"), (read_images, "images.bin"), (read_points3D, "points3D.bin")):
        with pytest.raises(SceneError, match=name):
            reader(tmp_path / name)


# ----------------------------------------------------------------------------------------------
# Camera models and undistortion


@pytest.mark.parametrize("model, params, expected", [
    ("SIMPLE_PINHOLE", [50.0, 20.0, 10.0], (50.0, 50.0, 20.0, 10.0, None)),
    ("PINHOLE", [50.0, 60.0, 20.0, 10.0], (50.0, 60.0, 20.0, 10.0, None)),
    ("SIMPLE_RADIAL", [50.0, 20.0, 10.0, 0.1], (50.0, 50.0, 20.0, 10.0, (0.1,))),
    ("RADIAL", [50.0, 20.0, 10.0, 0.1, -0.02], (50.0, 50.0, 20.0, 10.0, (0.1, -0.02))),
    ("OPENCV", [50.0, 60.0, 20.0, 10.0, 0.1, -0.02, 0.003, 0.004], (50.0, 60.0, 20.0, 10.0, (0.1, -0.02, 0.003, 0.004))),
])
def test_camera_models_give_pinhole_intrinsics_and_distortion_records(model, params, expected):
    fx, fy, cx, cy, dist = pinhole_intrinsics(ColmapCamera(1, model, 40, 20, np.array(params)), "cameras.txt")
    assert (fx, fy, cx, cy) == expected[:4]
    if expected[4] is None:
        assert dist is None
    else:
        assert dist == Distortion(model, expected[4], fx, fy, cx, cy, 40, 20)


@pytest.mark.parametrize("model", ["FULL_OPENCV", "OPENCV_FISHEYE", "FOV", "THIN_PRISM_FISHEYE"])
def test_unsupported_camera_model_is_a_scene_error_naming_model_and_file(tmp_path, make_colmap_scene, model):
    root = make_colmap_scene(tmp_path, [(32, 24)] * 3, model=model, params=[30.0, 30.0, 16, 12] + [0.01] * (MODEL_NUM_PARAMS[model] - 4))
    with pytest.raises(SceneError, match=model) as info:
        load_scene(root)
    assert "cameras.txt" in str(info.value)


def test_opencv_tangential_terms_follow_the_opencv_formula():
    # OpenCV documentation: x'' = x' + 2 p1 x'y' + p2 (r^2 + 2 x'^2), y'' = y' + p1 (r^2 + 2 y'^2) + 2 p2 x'y'.
    xd, yd = distort_normalized(0.0, 0.5, "OPENCV", (0.0, 0.0, 0.1, 0.0))
    assert (xd, yd) == pytest.approx((0.0, 0.5 + 0.1 * (0.25 + 0.5)))
    xd, yd = distort_normalized(0.0, 0.5, "OPENCV", (0.0, 0.0, 0.0, 0.1))
    assert (xd, yd) == pytest.approx((0.1 * 0.25, 0.5))
    xd, yd = distort_normalized(0.5, 0.0, "RADIAL", (0.1, 0.2))
    assert (xd, yd) == pytest.approx((0.5 * (1 + 0.1 * 0.25 + 0.2 * 0.0625), 0.0))


@pytest.mark.parametrize("model", sorted(DISTORTED))
def test_undistortion_moves_a_distorted_dot_back_to_its_pinhole_position(model):
    target = np.array([131.3, 97.6])  # near a corner: large distortion there
    source, dist = distorted_position(model, DISTORTED[model], target)
    assert np.linalg.norm(source - target) > 3.0, "the distortion must move the dot for the test to mean anything"
    image = torch.from_numpy(np.stack([blob_image(160, 120, source)] * 3)).float()
    restored = undistort_image(image, dist)[0].numpy()
    assert np.linalg.norm(centroid(restored) - target) < 0.5
    assert np.linalg.norm(centroid(image[0].numpy()) - target) > 3.0


def test_undistortion_fills_pixels_seen_outside_the_file_with_zero():
    dist = Distortion("SIMPLE_RADIAL", (0.6,), 60.0, 60.0, 40.0, 30.0, 80, 60)  # strong barrel: corners sample outside
    out = undistort_image(torch.ones(3, 60, 80), dist)
    assert out[:, 0, 0].eq(0).all() and out[:, 30, 40].eq(1).all()


def test_scene_images_are_undistorted_on_load_at_the_working_size(tmp_path, make_colmap_scene):
    target = np.array([131.3, 97.6])
    source, _ = distorted_position("OPENCV", DISTORTED["OPENCV"], target)
    root = make_colmap_scene(tmp_path, [(160, 120)] * 2, model="OPENCV", params=DISTORTED["OPENCV"])
    dot = (np.clip(blob_image(160, 120, source), 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(np.stack([dot] * 3, axis=2)).save(root / "images" / "img_001.png")
    scene = load_scene(root, Protocol(resolution="factor", downscale=2.0))
    camera = next(c for c in scene.cameras if c.image_name == "img_001.png")
    assert camera.distortion is not None and camera.distortion.model == "OPENCV"
    assert (camera.width, camera.height, camera.fx, camera.cx) == (80, 60, 50.0, 83.3 / 2)
    image = scene.load_image(camera)
    assert image.shape == (3, 60, 80)
    assert np.linalg.norm(centroid(image[0].numpy()) - target / 2) < 0.5


# ----------------------------------------------------------------------------------------------
# Images and bad input


def test_rgba_is_composited_over_the_background(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # half-transparent red
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    save_rgba(tmp_path / "a.png", rgba)
    white = load_image(tmp_path / "a.png", background=(1.0, 1.0, 1.0))
    black = load_image(tmp_path / "a.png", background=(0.0, 0.0, 0.0))
    assert white.shape == (3, 4, 6) and white.dtype == torch.float32
    a = 128 / 255
    np.testing.assert_allclose(white[:, 1, 1].numpy(), [1.0, 1 - a, 1 - a], atol=1 / 255)
    np.testing.assert_allclose(black[:, 1, 1].numpy(), [a, 0.0, 0.0], atol=1 / 255)
    np.testing.assert_allclose(white[:, 0, 0].numpy(), np.array([10, 20, 30]) / 255, atol=1e-7)


def test_resize_is_pil_bicubic(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png", size=(20, 15))
    expected = np.asarray(Image.fromarray(pixels).resize((20, 15), Image.BICUBIC)).astype(np.float32) / 255
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)


def test_missing_folder_and_unknown_layout_are_scene_errors(tmp_path):
    with pytest.raises(SceneError, match="not found") as info:
        load_scene(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path / "empty")
    for looked_for in ("empty", "sparse", "poses_bounds.npy", "transforms_train.json", "transforms.json"):
        assert looked_for in str(info.value)


def test_image_listed_in_model_but_missing_is_a_scene_error(tmp_path, make_colmap_scene):
    root = make_colmap_scene(tmp_path, [(32, 24)] * 4)
    (root / "images" / "img_002.png").unlink()
    with pytest.raises(SceneError, match="img_002.png") as info:
        load_scene(root)
    assert "images.txt" in str(info.value)


def test_unreadable_image_is_a_scene_error_naming_the_file(tmp_path, make_colmap_scene):
    root = make_colmap_scene(tmp_path, [(32, 24)] * 3)
    (root / "images" / "img_001.png").write_bytes(b"this is not a png" * 10)
    with pytest.raises(SceneError, match="img_001.png"):
        load_scene(root)
    # A valid header with truncated pixel data fails only when the pixels are decoded.
    root = make_colmap_scene(tmp_path / "b", [(64, 48)] * 3)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "images" / "img_002.png")
    data = (root / "images" / "img_002.png").read_bytes()
    (root / "images" / "img_002.png").write_bytes(data[: len(data) // 2])
    scene = load_scene(root)
    camera = next(c for c in scene.cameras if c.image_name == "img_002.png")
    with pytest.raises(SceneError, match="img_002.png"):
        scene.load_image(camera)


# ----------------------------------------------------------------------------------------------
# LLFF


def write_llff(root, centres, image_size=(40, 30), full_size=(160, 120), focal=150.0, n_images=None,
               folder="images_4"):
    """poses_bounds.npy for cameras at ``centres`` looking at the origin (image size ``full_size``), plus
    ``folder`` with images of ``image_size`` (images_4: the full size divided by 4)."""
    rows = []
    for centre in centres:
        c2w_gl = np.array(gl_c2w(centre))[:3]
        right, up, back = c2w_gl[:, 0], c2w_gl[:, 1], c2w_gl[:, 2]
        pose = np.stack([-up, right, back, c2w_gl[:, 3], [full_size[1], full_size[0], focal]], axis=1)  # [down, right, back]
        rows.append(np.concatenate([pose.reshape(-1), [1.0, 10.0]]))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "poses_bounds.npy", np.array(rows))
    (root / folder).mkdir(exist_ok=True)
    for i in range(n_images if n_images is not None else len(centres)):
        Image.fromarray(np.full((image_size[1], image_size[0], 3), 40 * i % 255, np.uint8)).save(root / folder / f"{i:03d}.png")


def test_llff_poses_become_opencv_world_to_camera(tmp_path):
    centres = [(4.0, 0.0, 1.0), (0.0, 4.0, 1.5), (-4.0, 0.5, 0.5)]
    write_llff(tmp_path, centres)
    scene = load_scene(tmp_path, Protocol(resolution="3dgs", images_folder="images_4", random_init_points=100))
    assert scene.format == "llff" and scene.points_are_random and len(scene.points) == 100
    for camera, centre in zip(scene.cameras, centres):
        np.testing.assert_allclose(camera.center, centre, atol=1e-9)
        uv, depth = camera.project(np.zeros((1, 3)))  # the origin is looked at: image centre, in front
        np.testing.assert_allclose(uv[0], [20.0, 15.0], atol=1e-9)
        assert depth[0] == pytest.approx(np.linalg.norm(centre))
        up_uv, _ = camera.project(np.array([[0.0, 0.0, 0.5]]))  # world up appears higher in the image
        assert up_uv[0, 1] < 15.0
        assert (camera.fx, camera.fy, camera.cx, camera.cy) == (150.0 / 4, 150.0 / 4, 20.0, 15.0)
        assert camera.metadata["near"] == 1.0 and camera.metadata["far"] == 10.0
        np.testing.assert_allclose(camera.R @ camera.R.T, np.eye(3), atol=1e-12)


def test_llff_conversion_matches_the_column_rule():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(2, 3, 5))
    R, t = llff_poses_to_w2c(poses)
    for i in range(2):
        c2w = np.stack([poses[i, :, 1], poses[i, :, 0], -poses[i, :, 2]], axis=1)
        np.testing.assert_allclose(R[i], c2w.T)
        np.testing.assert_allclose(t[i], -c2w.T @ poses[i, :, 3])


def test_llff_pose_and_image_count_mismatch_names_both_counts(tmp_path):
    write_llff(tmp_path, [(4.0, 0.0, 1.0), (0.0, 4.0, 1.0), (-4.0, 0.0, 1.0)], n_images=4, folder="images")
    with pytest.raises(SceneError) as info:
        load_scene(tmp_path)
    message = str(info.value)
    assert "3 poses" in message and "4 images" in message and str(tmp_path / "images") in message


# ----------------------------------------------------------------------------------------------
# Blender / NeRF-synthetic


def write_blender(root, train_centres, test_centres, size=(40, 30), angle_x=0.7, missing=()):
    rng = np.random.default_rng(0)
    for split, centres in (("train", train_centres), ("test", test_centres)):
        frames = []
        for i, centre in enumerate(centres):
            name = f"{split}/r_{i}"
            frames.append({"file_path": f"./{name}", "transform_matrix": gl_c2w(centre)})
            if name not in missing:
                rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
                rgba[0, 0] = (255, 0, 0, 128)
                save_rgba(root / f"{name}.png", rgba)
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle_x, "frames": frames}))


def test_blender_scene_split_background_and_missing_frames(tmp_path):
    train = [(4 * math.cos(a), 4 * math.sin(a), 2.0) for a in np.linspace(0, 6, 5)]
    test = [(4.0, 0.0, 1.0), (0.0, -4.0, 3.0)]
    write_blender(tmp_path, train, test, missing=("train/r_3",))
    with pytest.warns(UserWarning, match=r"r_3\.png"):
        scene = load_scene(tmp_path, Protocol(random_init_points=300))
    assert scene.format == "blender"
    assert len(scene.train_cameras) == 4 and len(scene.test_cameras) == 2
    assert [c.image_name for c in scene.test_cameras] == ["test/r_0.png", "test/r_1.png"]
    assert scene.background.tolist() == [1.0, 1.0, 1.0] and scene.points_are_random
    camera = scene.test_cameras[0]
    assert camera.fx == pytest.approx(0.5 * 40 / math.tan(0.35)) and camera.fy == camera.fx
    assert (camera.cx, camera.cy) == (20.0, 15.0)
    np.testing.assert_allclose(camera.center, (4.0, 0.0, 1.0), atol=1e-12)
    uv, depth = camera.project(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(uv[0], [20.0, 15.0], atol=1e-9)  # looks at the origin, in front
    assert depth[0] > 0 and uv[1, 1] < 15.0  # world up (z) is up in the image
    assert uv[2, 0] > 20.0  # seen from +x looking at the origin (z up), +y lies to the right
    image = scene.load_image(camera)
    np.testing.assert_allclose(image[:, 0, 0].numpy(), [1.0, 1 - 128 / 255, 1 - 128 / 255], atol=1 / 255)
    with pytest.warns(UserWarning, match=r"r_3\.png"):
        black = load_scene(tmp_path, Protocol(white_background=False, random_init_points=10))
    assert black.background.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(black.load_image(black.test_cameras[0])[:, 0, 0].numpy(), [128 / 255, 0, 0], atol=1 / 255)


def test_blender_scene_without_any_image_is_an_error(tmp_path):
    write_blender(tmp_path, [(4.0, 0.0, 1.0)], [(0.0, 4.0, 1.0)], missing=("train/r_0",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SceneError, match="transforms_train.json"):
            load_scene(tmp_path)


def test_opengl_to_opencv_flips_y_and_z():
    R, t = opengl_c2w_to_w2c(np.eye(4))
    np.testing.assert_allclose(R, np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(t, 0.0)


def test_point_cloud_beside_json_is_used(tmp_path):
    write_blender(tmp_path, [(4.0, 0.0, 1.0), (0.0, 4.0, 1.0)], [(-4.0, 0.0, 1.0)])
    vertex = np.zeros(3, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"),
                          ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["red"], vertex["blue"] = [1, 2, 3], [255, 0, 10], [0, 255, 20]
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex 3\n"
              + "".join(f"property float {p}\n" for p in ("x", "y", "z", "nx", "ny", "nz"))
              + "".join(f"property uchar {p}\n" for p in ("red", "green", "blue")) + "end_header\n")
    (tmp_path / "points3d.ply").write_bytes(header.encode() + vertex.tobytes())
    xyz, rgb = read_ply_points(tmp_path / "points3d.ply")
    np.testing.assert_array_equal(xyz[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(rgb[:, 2], [0, 255, 20])
    scene = load_scene(tmp_path)
    assert not scene.points_are_random and scene.points.shape == (3, 3)
    np.testing.assert_allclose(scene.colors[0], [1.0, 0.0, 0.0])


# ----------------------------------------------------------------------------------------------
# instant-ngp transforms.json


def test_instant_ngp_single_file_with_distortion_and_overrides(tmp_path):
    target = np.array([131.3, 97.6])
    params = DISTORTED["OPENCV"]
    source, _ = distorted_position("OPENCV", params, target)
    dot = (blob_image(160, 120, source) * 255).round().astype(np.uint8)
    frames = []
    for i in range(10):
        name = f"images/f_{9 - i:02d}.png"  # reverse order: the split must sort by name
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.fromarray(np.stack([dot] * 3, axis=2)).save(tmp_path / name)
        frames.append({"file_path": name, "transform_matrix": gl_c2w((4 * math.cos(i), 4 * math.sin(i), 1.0))})
    frames[3]["fl_x"] = 120.0  # frame f_06 overrides the focal length
    meta = {"fl_x": params[0], "fl_y": params[1], "cx": params[2], "cy": params[3], "w": 160, "h": 120,
            "k1": params[4], "k2": params[5], "p1": params[6], "p2": params[7], "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path, Protocol(random_init_points=50))
    assert scene.format == "instant-ngp" and not scene.background.any() and scene.points_are_random
    assert [c.image_name for c in scene.test_cameras] == ["images/f_00.png", "images/f_08.png"]
    assert len(scene.train_cameras) == 8
    camera = scene.test_cameras[0]
    assert camera.distortion == Distortion("OPENCV", tuple(params[4:]), *params[:4], 160, 120)
    assert next(c for c in scene.cameras if c.image_name.endswith("f_06.png")).fx == 120.0
    image = scene.load_image(camera)
    assert np.linalg.norm(centroid(image[0].numpy()) - target) < 0.5


def test_instant_ngp_fisheye_is_refused(tmp_path):
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "a.png")
    meta = {"camera_model": "OPENCV_FISHEYE", "fl_x": 10.0, "frames": [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError, match="OPENCV_FISHEYE") as info:
        load_scene(tmp_path)
    assert "transforms.json" in str(info.value)


# ----------------------------------------------------------------------------------------------
# Real data: the distorted COLMAP model of test_colmap_23 (its images are not shipped)


def test_real_simple_radial_model_reads_with_its_distortion(shared_data):
    folder = shared_data / "scenes" / "test_colmap_23" / "sparse" / "0"
    model = read_colmap_model(folder)
    assert len(model.cameras) == 23 and len(model.images) == 23 and len(model.points) == 1443
    assert {c.model for c in model.cameras.values()} == {"SIMPLE_RADIAL"}
    errors_with, errors_without = [], []
    for image in model.images.values():
        camera = model.cameras[image.camera_id]
        assert (camera.width, camera.height) == (3031, 2006)
        fx, fy, cx, cy, dist = pinhole_intrinsics(camera, model.cameras_file)
        assert dist.model == "SIMPLE_RADIAL" and dist.params == (camera.params[3],)
        observed = image.point3D_ids >= 0
        index = model.points.index_of(image.point3D_ids[observed])
        assert (index >= 0).all()
        cam = model.points.xyz[index] @ image.R.T + image.tvec
        x, y = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
        xd, yd = distort_normalized(x, y, dist.model, dist.params)
        errors_with.append(np.hypot(fx * xd + cx - image.xys[observed, 0], fy * yd + cy - image.xys[observed, 1]))
        errors_without.append(np.hypot(fx * x + cx - image.xys[observed, 0], fy * y + cy - image.xys[observed, 1]))
    # Our forward distortion model explains the observations better than ignoring it.
    median_with, median_without = np.median(np.concatenate(errors_with)), np.median(np.concatenate(errors_without))
    assert median_with < 1.0 and median_with < median_without
    # Loading it as a scene needs its images, which are not shipped: a clear error, not a crash.
    with pytest.raises(SceneError, match="images"):
        load_scene(folder)
