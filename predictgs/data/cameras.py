"""Pinhole cameras in the COLMAP / OpenCV convention.

World-to-camera: ``x_cam = R @ x_world + t``; camera axes x right, y down, z forward.
Pixel centres lie at (i + 0.5, j + 0.5), as in gsplat; with cx = W/2 this matches the Inria rasterizer,
whose principal point is the image centre.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from predictgs.errors import SceneError

MAX_IMAGE_SIDE = 1 << 20  # pixels: a larger width or height is a corrupt size field, not a camera
QUATERNION_TOLERANCE = 1e-3  # |norm - 1| up to this is rounding (the quaternion is normalised); more is an error
ROTATION_TOLERANCE = 1e-3  # max |R R^T - I| of a rotation matrix read from a file
# Lens distortion on normalised coordinates: calibrated real lenses have |k1|, |k2| well below 1 and
# |p1|, |p2| below 0.01; these bounds leave a wide margin and refuse only values no lens has (a unit error
# or a corrupt file: k1 = 1e6 moves every pixel off the image).
MAX_RADIAL_COEFFICIENT = 10.0
MAX_TANGENTIAL_COEFFICIENT = 1.0


@dataclass
class Distortion:
    """Lens distortion still present in the image file; removed when the image is loaded.

    ``model`` is a COLMAP model name (SIMPLE_RADIAL, RADIAL, OPENCV); ``params`` holds the
    distortion coefficients only, in COLMAP order: (k1,), (k1, k2) or (k1, k2, p1, p2).
    ``fx, fy, cx, cy`` are the intrinsics of the distorted image at the file's resolution."""

    model: str
    params: tuple[float, ...]
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


@dataclass
class Camera:
    """One registered image: intrinsics at the working resolution and its pose."""

    uid: int
    image_name: str
    image_path: Path | None
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    R: np.ndarray  # (3, 3) world -> camera rotation
    t: np.ndarray  # (3,) world -> camera translation
    distortion: Distortion | None = None
    # Blender scenes store RGBA; the alpha channel is composited over this background at load time.
    metadata: dict = field(default_factory=dict)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, -R^T t."""
        return -self.R.T @ self.t

    @property
    def viewmat(self) -> np.ndarray:
        """4x4 world-to-camera matrix (float64)."""
        m = np.eye(4)
        m[:3, :3] = self.R
        m[:3, 3] = self.t
        return m

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fov_x(self) -> float:
        return 2.0 * float(np.arctan(self.width / (2.0 * self.fx)))

    @property
    def fov_y(self) -> float:
        return 2.0 * float(np.arctan(self.height / (2.0 * self.fy)))

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera with intrinsics scaled to a new image size."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(
            self, width=int(width), height=int(height),
            fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
        )

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project (N,3) world points; returns pixel coordinates (N,2) and depths (N,)."""
        cam = points_world @ self.R.T + self.t
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * cam[:, 0] / z + self.cx
            v = self.fy * cam[:, 1] / z + self.cy
        return np.stack([u, v], axis=1), z

    def render_args(self, device="cpu", dtype=None) -> dict:
        """Keyword arguments for :func:`predictgs.render.rasterize`."""
        import torch

        dtype = dtype or torch.float32
        return dict(
            viewmat=torch.as_tensor(self.viewmat, dtype=dtype, device=device),
            K=torch.as_tensor(self.K, dtype=dtype, device=device),
            width=self.width,
            height=self.height,
        )


def qvec_to_rotmat(qvec) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation matrix (COLMAP convention)."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
    ]) / 3.0
    eigvals, eigvecs = np.linalg.eigh(K)
    x, y, z, w = eigvecs[:, np.argmax(eigvals)]
    q = np.array([w, x, y, z])
    return -q if q[0] < 0 else q


# ----------------------------------------------------------------------------------------------
# Checks of values read from scene files. Each raises a SceneError that starts with ``where`` (the file,
# and the camera, image or point concerned).


def check_size(width, height, where: str) -> tuple[int, int]:
    """(width, height) as positive integers of at most MAX_IMAGE_SIDE."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < int(value) <= MAX_IMAGE_SIDE:
            raise SceneError(f"{where}: image {name} {value!r} is not a positive integer of at most {MAX_IMAGE_SIDE}")
    return int(width), int(height)


def check_finite(values, what: str, where: str) -> np.ndarray:
    """``values`` as a float64 array whose entries are all finite."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SceneError(f"{where}: {what} {values!r} is not numeric") from None
    if not np.isfinite(array).all():
        raise SceneError(f"{where}: {what} {np.array2string(array, precision=6, threshold=12)} is not finite")
    return array


def check_focal(value, name: str, where: str) -> float:
    """A focal length in pixels: a finite number > 0."""
    focal = float(check_finite(value, name, where))
    if not focal > 0:
        raise SceneError(f"{where}: focal length {name} = {focal!r} is not positive")
    return focal


def unit_quaternion(qvec, where: str) -> np.ndarray:
    """A rotation quaternion (w, x, y, z) of norm 1 within QUATERNION_TOLERANCE, returned normalised
    (as stored when it is of norm 1 to rounding, so that reading a file is exact). Zero, non-finite or
    clearly non-unit quaternions are errors (they are no rotation)."""
    q = check_finite(qvec, "quaternion", where)
    if q.shape != (4,):
        raise SceneError(f"{where}: a quaternion has 4 values, got {q.size}")
    norm = float(np.linalg.norm(q))
    if norm == 0.0 or abs(norm - 1.0) > QUATERNION_TOLERANCE:
        raise SceneError(f"{where}: quaternion {q.tolist()} has norm {norm:.6g}, not 1 (no rotation)")
    return q if abs(norm - 1.0) <= 1e-12 else q / norm


def check_rotation(R, where: str) -> np.ndarray:
    """A 3x3 rotation matrix: finite, orthonormal within ROTATION_TOLERANCE, determinant +1."""
    R = check_finite(R, "rotation", where)
    if R.shape != (3, 3):
        raise SceneError(f"{where}: a rotation is 3x3, got shape {R.shape}")
    error = float(np.abs(R @ R.T - np.eye(3)).max())
    if error > ROTATION_TOLERANCE or np.linalg.det(R) <= 0:
        raise SceneError(f"{where}: the camera rotation is not a rotation matrix (|R R^T - I| = {error:.3g}, "
                         f"det = {np.linalg.det(R):.3g})")
    return R


def check_principal_point(cx, cy, width, height, where: str) -> None:
    """The principal point lies in the image (pixel edges included): [0, W] x [0, H]."""
    cx, cy = check_finite([cx, cy], "principal point", where)
    if not (0.0 <= cx <= width and 0.0 <= cy <= height):
        raise SceneError(f"{where}: principal point ({cx:g}, {cy:g}) is outside the {width}x{height} image")


def check_distortion(model: str, params, where: str) -> np.ndarray:
    """Distortion coefficients in COLMAP order ((k1,), (k1, k2) or (k1, k2, p1, p2)): finite, radial ones
    within +-MAX_RADIAL_COEFFICIENT, tangential ones within +-MAX_TANGENTIAL_COEFFICIENT."""
    values = check_finite(params, "distortion coefficients", where)
    radial = values[:2]
    tangential = values[2:4] if model == "OPENCV" else values[:0]
    if np.abs(radial).max(initial=0.0) > MAX_RADIAL_COEFFICIENT or \
            np.abs(tangential).max(initial=0.0) > MAX_TANGENTIAL_COEFFICIENT:
        raise SceneError(f"{where}: {model} distortion coefficients {values.tolist()} are implausible (|k| at most "
                         f"{MAX_RADIAL_COEFFICIENT:g}, |p| at most {MAX_TANGENTIAL_COEFFICIENT:g})")
    return values


def check_camera(camera: Camera, where: str) -> Camera:
    """Every value of a camera: size, focal lengths, principal point (inside the image), pose, distortion
    (plausible coefficients)."""
    check_size(camera.width, camera.height, where)
    check_focal(camera.fx, "fx", where)
    check_focal(camera.fy, "fy", where)
    check_principal_point(camera.cx, camera.cy, camera.width, camera.height, where)
    check_rotation(camera.R, where)
    check_finite(camera.t, "translation", where)
    if camera.distortion is not None:
        check_distortion(camera.distortion.model, camera.distortion.params, where)
    return camera
