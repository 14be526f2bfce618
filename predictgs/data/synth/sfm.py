"""Sparse points that imitate Structure-from-Motion, and their COLMAP text model.

Methods initialise from an SfM point cloud, so the benchmark ships one with SfM's characteristic gaps and
errors rather than a perfect sampling: random pixels of every view are cast into the scene, hits on the
backdrop are dropped (SfM does not triangulate the sky), textured pixels are preferred (keypoint detectors
fire on texture), and a hit is kept when it is seen (in the image, unoccluded, not at a grazing angle) from
at least two views. Its 2D observations in ``images.txt`` are the exact projections of the true surface
point (what a keypoint detector measures); the 3D position written to ``points3D.txt`` carries isotropic
Gaussian noise of standard deviation ``noise_sigma`` (recorded in synth.json), truncated at 3 sigma per
axis, as triangulation would. The ERROR column is the mean reprojection error (pixels) of the noisy point
over its track, as COLMAP writes it. Point colours are the rendered pixel colours, as SfM takes them from
the images.

The model is written by the COLMAP writer every other model goes through
(:func:`predictgs.data.colmap.write_colmap_text`), with fixed decimals for the measured quantities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predictgs.data.cameras import Camera, rotmat_to_qvec
from predictgs.data.colmap import ColmapCamera, ColmapImage, ColmapPoints, write_colmap_text
from predictgs.data.synth.raycast import camera_rays
from predictgs.data.synth.scenes import SynthScene
from predictgs.data.synth.shading import to_uint8


@dataclass
class SparsePoints:
    xyz: np.ndarray            # (P, 3) noisy positions, as written
    xyz_true: np.ndarray       # (P, 3) exact surface points
    rgb: np.ndarray            # (P, 3) uint8
    visible: np.ndarray        # (P, V) bool: views observing each point
    uv: np.ndarray             # (P, V, 2) exact projections (valid where visible)
    error: np.ndarray          # (P,) mean reprojection error of the noisy point, pixels


def _visibility(scene: SynthScene, cameras: list[Camera], pts: np.ndarray, normals: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(P, V) visibility and (P, V, 2) projections: in the image, in front, not occluded, not grazing."""
    P, V = len(pts), len(cameras)
    vis = np.zeros((P, V), dtype=bool)
    uv_all = np.zeros((P, V, 2))
    for j, cam in enumerate(cameras):
        uv, z = cam.project(pts)
        uv_all[:, j] = uv
        ok = (z > 0.05) & (uv[:, 0] >= 0.5) & (uv[:, 0] <= cam.width - 0.5) & \
             (uv[:, 1] >= 0.5) & (uv[:, 1] <= cam.height - 0.5)
        if not np.any(ok):
            continue
        c = cam.center
        d = pts[ok] - c
        dist = np.linalg.norm(d, axis=1)
        d /= dist[:, None]
        t, _ = scene.raycaster.intersect(c, d, include_background=False)
        seen = np.abs(t - dist) <= 1e-4 * (1.0 + dist)
        seen &= np.abs(np.einsum("ij,ij->i", normals[ok], d)) > 0.15
        vis[np.flatnonzero(ok)[seen], j] = True
    return vis, uv_all


def sample_sparse_points(scene: SynthScene, cameras: list[Camera], images: list[np.ndarray], num_points: int,
                         rng: np.random.Generator, max_rounds: int = 8) -> SparsePoints:
    V = len(cameras)
    rs = scene.raycaster
    # Keypoints concentrate on texture: accept a sample with a probability that grows with image gradient.
    grads = []
    for img in images:
        lum = img @ np.array([0.299, 0.587, 0.114])
        gy, gx = np.gradient(lum)
        g = np.hypot(gx, gy)
        grads.append(g / max(np.percentile(g, 90), 1e-6))
    pts_l, nrm_l, rgb_l, vis_l, uv_l = [], [], [], [], []
    have = 0
    yield_rate = 0.5  # fraction of cast samples that end up as points; re-estimated after each round
    for _ in range(max_rounds):
        if have >= num_points:
            break
        per_view = int(math.ceil(1.3 * (num_points - have) / (V * max(yield_rate, 0.02)))) + 4
        cand_p, cand_n, cand_rgb = [], [], []
        for j, cam in enumerate(cameras):
            u = rng.uniform(0.5, cam.width - 0.5, per_view)
            v = rng.uniform(0.5, cam.height - 0.5, per_view)
            iu = np.minimum(u.astype(int), cam.width - 1)
            iv = np.minimum(v.astype(int), cam.height - 1)
            accept = rng.uniform(size=per_view) < 0.2 + 0.8 * np.clip(grads[j][iv, iu], 0, 1)
            origin, dirs = camera_rays(cam.R, cam.t, cam.fx, cam.fy, cam.cx, cam.cy, u, v)
            t, idx = rs.intersect(origin, dirs)
            keep = accept & (idx >= 0)
            keep[keep] = ~np.array([rs.primitives[k].background for k in idx[keep]], dtype=bool)
            p = origin + t[:, None] * dirs
            keep &= np.hypot(p[:, 0], p[:, 1]) <= scene.point_radius
            if not np.any(keep):
                continue
            p = p[keep]
            cand_p.append(p)
            cand_n.append(rs.normals(idx[keep], p, dirs[keep]))
            cand_rgb.append(to_uint8(images[j][iv[keep], iu[keep]]))
        if not cand_p:
            continue
        p, n, rgb = np.concatenate(cand_p), np.concatenate(cand_n), np.concatenate(cand_rgb)
        vis, uv = _visibility(scene, cameras, p, n)
        good = vis.sum(axis=1) >= 2
        yield_rate = max(float(good.sum()), 1.0) / (per_view * V)
        pts_l.append(p[good])
        nrm_l.append(n[good])
        rgb_l.append(rgb[good])
        vis_l.append(vis[good])
        uv_l.append(uv[good])
        have += int(good.sum())
    if have == 0:
        empty = np.zeros((0, 3))
        return SparsePoints(empty, empty, np.zeros((0, 3), np.uint8), np.zeros((0, V), bool),
                            np.zeros((0, V, 2)), np.zeros(0))
    pts, rgb, vis, uv = (np.concatenate(x) for x in (pts_l, rgb_l, vis_l, uv_l))
    if len(pts) > num_points:
        pick = np.sort(rng.choice(len(pts), num_points, replace=False))
        pts, rgb, vis, uv = pts[pick], rgb[pick], vis[pick], uv[pick]
    sigma = scene.noise_sigma
    noisy = pts + np.clip(rng.normal(0.0, sigma, pts.shape), -3 * sigma, 3 * sigma)
    err = np.zeros(len(pts))
    for j, cam in enumerate(cameras):
        uvn, _ = cam.project(noisy)
        e = np.linalg.norm(uvn - uv[:, j], axis=1)
        err += np.where(vis[:, j], e, 0.0)
    err /= vis.sum(axis=1)
    return SparsePoints(noisy, pts, rgb, vis, uv, err)


def to_colmap(cameras: list[Camera], pts: SparsePoints) -> tuple[list[ColmapCamera], list[ColmapImage], ColmapPoints]:
    """COLMAP records of a synthetic model: one shared PINHOLE camera (id 1), image ``j + 1`` for view j,
    point ``i + 1`` for point i. An image's keypoints are the points it sees, in point order, so a point's
    POINT2D_IDX in image j is its position in that list; a track lists its images in increasing order."""
    cam0 = cameras[0]
    colmap_cameras = [ColmapCamera(1, "PINHOLE", cam0.width, cam0.height,
                                   np.array([cam0.fx, cam0.fy, cam0.cx, cam0.cy], dtype=np.float64))]
    P, V = pts.visible.shape
    obs_index = np.full((P, V), -1, dtype=np.int64)
    images = []
    for j, cam in enumerate(cameras):
        ids = np.flatnonzero(pts.visible[:, j])
        obs_index[ids, j] = np.arange(len(ids))
        images.append(ColmapImage(j + 1, rotmat_to_qvec(cam.R), np.asarray(cam.t, dtype=np.float64), 1,
                                  cam.image_name, pts.uv[ids, j], ids + 1))
    point_rows, view_cols = np.nonzero(pts.visible)  # row-major: point by point, views in increasing order
    points = ColmapPoints(
        ids=np.arange(1, P + 1, dtype=np.int64), xyz=pts.xyz, rgb=pts.rgb, errors=pts.error,
        track_lengths=pts.visible.sum(axis=1).astype(np.int64),
        track_image_ids=(view_cols + 1).astype(np.int32),
        track_point2D_idxs=obs_index[point_rows, view_cols].astype(np.int32),
    )
    return colmap_cameras, images, points


def write_sparse_model(sparse_dir: Path, cameras: list[Camera], pts: SparsePoints) -> None:
    """``cameras.txt``, ``images.txt``, ``points3D.txt`` in ``sparse_dir``. Keypoints get 5 decimals
    (1e-5 pixel), positions 7 and errors 6: far finer than the simulated noise, and the files stay compact."""
    write_colmap_text(sparse_dir, *to_colmap(cameras, pts), xy_decimals=5, xyz_decimals=7, error_decimals=6)
