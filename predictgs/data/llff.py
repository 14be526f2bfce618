"""LLFF scenes: ``poses_bounds.npy`` + an image folder (+ optionally a COLMAP ``sparse/`` point cloud).

Each row of poses_bounds.npy holds 17 numbers: a 3x5 matrix (row-major) and the near/far depth
bounds. Its columns are the camera axes [down, right, back] in world coordinates, the camera centre,
and (height, width, focal) of the full-resolution images. The rows follow the sorted image names.
The world frame is COLMAP's (LLFF only permutes the camera axes), so a COLMAP sparse cloud of the
same capture lines up with these poses.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from predictgs.data.cameras import Camera, check_focal, check_rotation
from predictgs.data.colmap import model_file, read_points3D
from predictgs.data.images import check_image_size, folder_factor, list_image_files, read_image_header
from predictgs.errors import SceneError

POSES_FILE = "poses_bounds.npy"


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(poses (N, 3, 5), bounds (N, 2)) from a poses_bounds.npy file (never unpickled). Every value must
    be finite, each pose's rotation a rotation, its image height, width and focal length positive."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SceneError(f"cannot read {path}: {str(exc).splitlines()[0][:200] or type(exc).__name__}") from None
    if not isinstance(data, np.ndarray):  # an .npz archive
        raise SceneError(f"{path} must hold one N x 17 array (numpy .npy), not an archive")
    if data.ndim != 2 or data.shape[1] != 17 or not np.issubdtype(data.dtype, np.number):
        raise SceneError(f"{path} must hold an N x 17 numeric array, got shape {data.shape}")
    data = data.astype(np.float64)
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        raise SceneError(f"{path}: pose {int(np.flatnonzero(bad)[0])} has non-finite values")
    poses, bounds = data[:, :15].reshape(-1, 3, 5), data[:, 15:17]
    for i, pose in enumerate(poses):
        where = f"{path}: pose {i}"
        height, width, focal = pose[:, 4]
        for name, value in (("height", height), ("width", width)):
            if not value > 0:
                raise SceneError(f"{where}: image {name} {float(value)!r} is not positive")
        check_focal(focal, "focal", where)
        check_rotation(pose[:, :3], where)
    return poses, bounds


def llff_poses_to_w2c(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LLFF (N, 3, 5) poses -> world-to-camera (R (N,3,3), t (N,3)) in the OpenCV/COLMAP convention.

    The OpenCV camera axes are right = column 1, down = column 0, forward = -column 2 (back)."""
    c2w_rot = np.stack([poses[:, :, 1], poses[:, :, 0], -poses[:, :, 2]], axis=-1)
    centres = poses[:, :, 3]
    R = np.transpose(c2w_rot, (0, 2, 1))
    t = -np.einsum("nij,nj->ni", R, centres)
    return R, t


def llff_cameras(root: Path, images_dir: Path) -> list[Camera]:
    """Cameras for the sorted images of ``images_dir``, at the size of each file.

    fx, fy come from the full-resolution focal scaled to the file's size; the principal point is
    the image centre (LLFF assumes it)."""
    poses_path = Path(root) / POSES_FILE
    poses, bounds = read_poses_bounds(poses_path)
    files = list_image_files(images_dir)
    if len(files) != len(poses):
        raise SceneError(
            f"{poses_path} has {len(poses)} poses but {images_dir} has {len(files)} images; "
            f"LLFF pairs them by sorted file name, so the counts must match"
        )
    R, t = llff_poses_to_w2c(poses)
    cameras = []
    for i, path in enumerate(files):
        width, height, orientation = read_image_header(path)
        full_h, full_w, focal = poses[i, :, 4]
        # The pose's height and width are those of the images COLMAP ran on: the file must be that size,
        # or that size divided by its folder's factor (images_8: each side / 8).
        check_image_size(path, (width, height), (full_w, full_h), f"{poses_path}: pose {i}",
                         folder_factor(path), orientation)
        cameras.append(Camera(
            uid=i, image_name=path.name, image_path=path, width=width, height=height,
            fx=focal * width / full_w, fy=focal * height / full_h, cx=width / 2.0, cy=height / 2.0,
            R=R[i], t=t[i], metadata={"near": float(bounds[i, 0]), "far": float(bounds[i, 1])},
        ))
    return cameras


def llff_points_file(root: Path) -> Path | None:
    """The COLMAP points3D file of an LLFF capture, if it ships one."""
    for folder in (Path(root) / "sparse" / "0", Path(root) / "sparse"):
        found = model_file(folder, "points3D")
        if found:
            return found
    return None


def llff_points(root: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(xyz float64 (P,3), rgb uint8 (P,3)) from the capture's COLMAP points, or None."""
    path = llff_points_file(root)
    if path is None:
        return None
    points = read_points3D(path)
    return (points.xyz, points.rgb) if len(points) else None
