"""COLMAP sparse models: read and write cameras / images / points3D (binary .bin and text .txt), and
turn them into our pinhole :class:`~predictgs.data.cameras.Camera` objects.

File formats follow COLMAP's documentation (doc/format.rst) and its binary layout (little endian):

- cameras.bin:  u64 count; per camera: i32 id, i32 model_id, u64 width, u64 height, f64 params[n]
- images.bin:   u64 count; per image: u32 id, f64 qvec[4] (w,x,y,z), f64 tvec[3], u32 camera_id,
                NUL-terminated name, u64 num_points2D, then (f64 x, f64 y, i64 point3D_id) each
- points3D.bin: u64 count; per point: u64 id, f64 xyz[3], u8 rgb[3], f64 error, u64 track_length,
                then (i32 image_id, i32 point2D_idx) each

The model may live in ``<scene>/sparse/0/``, ``<scene>/sparse/`` or the folder given itself; for each
file the binary form is preferred when both exist (as COLMAP and 3DGS do).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, Mapping

import numpy as np

from predictgs.data.cameras import (Camera, Distortion, check_camera, check_distortion, check_finite, check_focal,
                                    check_principal_point, check_size, qvec_to_rotmat, unit_quaternion)
from predictgs.data.images import (IMAGE_EXTENSIONS, check_image_size, distortion_at_size, folder_factor,
                                   read_image_header)
from predictgs.errors import SceneError
from predictgs.io import write_atomic

# model_id -> (name, number of parameters), from COLMAP's camera model list.
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS: dict[str, int] = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()}
MODEL_NUM_PARAMS: dict[str, int] = {name: n for name, n in CAMERA_MODELS.values()}

# Parameters that are focal lengths (must be > 0): one focal length for the SIMPLE_* and RADIAL models,
# fx and fy (the first two) for the others.
SINGLE_FOCAL_MODELS = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")

# Models we turn into pinhole cameras; the distorted ones are undistorted when images are loaded.
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
DISTORTED_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64, COLMAP parameter order for ``model``


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # (4,) world-to-camera rotation quaternion (w, x, y, z)
    tvec: np.ndarray  # (3,) world-to-camera translation
    camera_id: int
    name: str  # path relative to the image folder
    xys: np.ndarray  # (N, 2) float64 keypoint positions in pixels (pixel centres at +0.5)
    point3D_ids: np.ndarray  # (N,) int64; -1 where the keypoint has no 3D point

    @property
    def R(self) -> np.ndarray:
        return qvec_to_rotmat(self.qvec)


@dataclass
class ColmapPoints:
    """Sparse points with their tracks stored flat: the observations of point i are entries
    ``track_offsets[i] : track_offsets[i] + track_lengths[i]`` of the track arrays."""

    ids: np.ndarray  # (P,) int64
    xyz: np.ndarray  # (P, 3) float64
    rgb: np.ndarray  # (P, 3) uint8
    errors: np.ndarray  # (P,) float64 mean reprojection error in pixels
    track_lengths: np.ndarray  # (P,) int64
    track_image_ids: np.ndarray  # (T,) int32
    track_point2D_idxs: np.ndarray  # (T,) int32

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> "ColmapPoints":
        return cls(
            ids=np.zeros(0, np.int64), xyz=np.zeros((0, 3)), rgb=np.zeros((0, 3), np.uint8),
            errors=np.zeros(0), track_lengths=np.zeros(0, np.int64),
            track_image_ids=np.zeros(0, np.int32), track_point2D_idxs=np.zeros(0, np.int32),
        )

    @property
    def track_offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.track_lengths)[:-1]]).astype(np.int64)

    def track(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image_ids, point2D_idxs) of point number ``i`` (an index, not a point id)."""
        start = int(self.track_offsets[i])
        stop = start + int(self.track_lengths[i])
        return self.track_image_ids[start:stop], self.track_point2D_idxs[start:stop]

    def index_of(self, point_ids: np.ndarray) -> np.ndarray:
        """Row indices of the given point ids; -1 for ids that are not in the model."""
        point_ids = np.asarray(point_ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.full(point_ids.shape, -1, np.int64)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, point_ids), 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == point_ids
        return np.where(found, order[pos], -1).astype(np.int64)


@dataclass
class ColmapModel:
    folder: Path
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints
    cameras_file: Path
    images_file: Path
    points_file: Path | None


# ----------------------------------------------------------------------------------------------
# Locating a model


def model_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.bin`` or ``folder/stem.txt`` (binary preferred), or None."""
    for suffix in (".bin", ".txt"):
        candidate = Path(folder) / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def find_model_folder(path: Path) -> Path | None:
    """The first of ``path/sparse/0``, ``path/sparse``, ``path`` holding cameras and images files."""
    path = Path(path)
    for folder in (path / "sparse" / "0", path / "sparse", path):
        if model_file(folder, "cameras") and model_file(folder, "images"):
            return folder
    return None


def read_colmap_model(path: Path) -> ColmapModel:
    """Read a whole model from a scene folder or a model folder (points3D is optional: empty if absent)."""
    folder = find_model_folder(path)
    if folder is None:
        raise SceneError(
            f"no COLMAP model in {path}: looked for cameras.bin|txt and images.bin|txt in "
            f"{Path(path) / 'sparse' / '0'}, {Path(path) / 'sparse'} and {path}"
        )
    cameras_file = model_file(folder, "cameras")
    images_file = model_file(folder, "images")
    points_file = model_file(folder, "points3D")
    return ColmapModel(
        folder=folder,
        cameras=read_cameras(cameras_file),
        images=read_images(images_file),
        points=read_points3D(points_file) if points_file else ColmapPoints.empty(),
        cameras_file=cameras_file,
        images_file=images_file,
        points_file=points_file,
    )


def read_cameras(path: Path) -> dict[int, ColmapCamera]:
    """Cameras of a cameras.bin|txt file; sizes and parameters are checked (finite, focal lengths and
    sizes positive)."""
    path = Path(path)
    cameras = _read_either(path, _read_cameras_bin, _read_cameras_txt)
    for camera in cameras.values():
        _check_camera(camera, path)
    return cameras


def read_images(path: Path) -> dict[int, ColmapImage]:
    """Images of an images.bin|txt file; poses are checked (finite, unit quaternions, which are
    normalised)."""
    path = Path(path)
    images = _read_either(path, _read_images_bin, _read_images_txt)
    for image in images.values():
        where = f"{path}: image {image.id} ({image.name})"
        image.qvec = unit_quaternion(image.qvec, where)
        image.tvec = check_finite(image.tvec, "translation", where)
    return images


def read_points3D(path: Path) -> ColmapPoints:
    """Points of a points3D.bin|txt file; positions are checked (finite)."""
    path = Path(path)
    points = _read_either(path, _read_points_bin, _read_points_txt)
    bad = ~np.isfinite(points.xyz).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise SceneError(f"{path}: point {int(points.ids[first])} has a non-finite position "
                         f"{points.xyz[first].tolist()} ({int(bad.sum())} such points)")
    _check_unique(points.ids, "point", path)
    return points


def _check_camera(camera: ColmapCamera, path: Path) -> None:
    where = f"{path}: camera {camera.id}"
    check_size(camera.width, camera.height, where)
    params = check_finite(camera.params, f"{camera.model} parameters", where)
    names = ("f",) if camera.model in SINGLE_FOCAL_MODELS else ("fx", "fy")
    for index, name in enumerate(names):
        check_focal(params[index], name, where)


def _check_unique(ids: np.ndarray, what: str, path: Path) -> None:
    values, counts = np.unique(np.asarray(ids), return_counts=True)
    if (counts > 1).any():
        raise SceneError(f"{path}: {what} id {int(values[counts > 1][0])} appears more than once")


def _insert(records: dict, key: int, value, what: str, path: Path) -> None:
    if key in records:
        raise SceneError(f"{path}: {what} id {key} appears more than once")
    records[key] = value


def _read_either(path: Path, read_bin, read_txt):
    if not path.is_file():
        raise SceneError(f"COLMAP file not found: {path}")
    reader = read_bin if path.suffix == ".bin" else read_txt
    try:
        return reader(path)
    except SceneError:
        raise
    except (struct.error, ValueError, IndexError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise SceneError(f"corrupt or truncated COLMAP file {path}: {str(exc).splitlines()[0][:200]}") from None
    except OSError as exc:
        raise SceneError(f"cannot read COLMAP file {path}: {exc.strerror or exc}") from None


def _model_name(model_id: int, path: Path) -> tuple[str, int]:
    if model_id not in CAMERA_MODELS:
        raise SceneError(f"unknown COLMAP camera model id {model_id} in {path}")
    return CAMERA_MODELS[model_id]


# ----------------------------------------------------------------------------------------------
# Binary readers

_U64 = struct.Struct("<Q")
_CAMERA_HEAD = struct.Struct("<iiQQ")
_IMAGE_HEAD = struct.Struct("<I4d3dI")
_POINT2D = np.dtype([("xy", "<f8", (2,)), ("point3D_id", "<i8")])
_POINT_HEAD = np.dtype([
    ("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"), ("track_length", "<u8"),
])  # packed: 51 bytes
_TRACK_ELEM = np.dtype([("image_id", "<i4"), ("point2D_idx", "<i4")])


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    buf = path.read_bytes()
    (count,) = _U64.unpack_from(buf, 0)
    _check_count(count, _CAMERA_HEAD.size, buf)
    pos = _U64.size
    cameras = {}
    for _ in range(count):
        cam_id, model_id, width, height = _CAMERA_HEAD.unpack_from(buf, pos)
        pos += _CAMERA_HEAD.size
        name, n_params = _model_name(model_id, path)
        params = np.frombuffer(buf, "<f8", count=n_params, offset=pos).astype(np.float64)
        pos += 8 * n_params
        _insert(cameras, cam_id, ColmapCamera(cam_id, name, int(width), int(height), params), "camera", path)
    return cameras


def _check_count(count: int, min_record: int, buf: bytes) -> None:
    """A corrupt count must not make us allocate or loop for billions of records."""
    if count * min_record > len(buf):
        raise ValueError(f"header announces {count} records, more than the file's {len(buf)} bytes can hold")


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    buf = path.read_bytes()
    (count,) = _U64.unpack_from(buf, 0)
    _check_count(count, _IMAGE_HEAD.size + 1 + _U64.size, buf)
    pos = _U64.size
    images = {}
    for _ in range(count):
        head = _IMAGE_HEAD.unpack_from(buf, pos)
        pos += _IMAGE_HEAD.size
        end = buf.index(b"\0", pos)
        name = buf[pos:end].decode("utf-8")
        pos = end + 1
        (n_points,) = _U64.unpack_from(buf, pos)
        pos += _U64.size
        obs = np.frombuffer(buf, _POINT2D, count=n_points, offset=pos)
        pos += _POINT2D.itemsize * n_points
        _insert(images, head[0], ColmapImage(
            id=head[0], qvec=np.array(head[1:5]), tvec=np.array(head[5:8]), camera_id=head[8], name=name,
            xys=obs["xy"].astype(np.float64).reshape(-1, 2), point3D_ids=obs["point3D_id"].astype(np.int64),
        ), "image", path)
    return images


def _read_points_bin(path: Path) -> ColmapPoints:
    buf = path.read_bytes()
    (count,) = _U64.unpack_from(buf, 0)
    _check_count(count, _POINT_HEAD.itemsize, buf)
    starts, end = _point_record_starts(buf, count)
    body = np.frombuffer(buf, np.uint8, count=end - 8, offset=8)
    starts = np.asarray(starts, dtype=np.int64) - 8
    # Records are variable length (header + track). Mark the header bytes of every record with a
    # running sum of +1 at each start and -1 at each header end, then split the bytes in one go.
    marks = np.zeros(len(body) + 1, np.int8)
    marks[starts] += 1
    marks[starts + _POINT_HEAD.itemsize] -= 1
    is_header = np.cumsum(marks[:-1], dtype=np.int8).astype(bool)
    heads = body[is_header].reshape(count, _POINT_HEAD.itemsize).copy().view(_POINT_HEAD).reshape(count)
    tracks = body[~is_header].reshape(-1, _TRACK_ELEM.itemsize).copy().view(_TRACK_ELEM).reshape(-1)
    return ColmapPoints(
        ids=heads["id"].astype(np.int64), xyz=heads["xyz"].astype(np.float64),
        rgb=heads["rgb"].astype(np.uint8), errors=heads["error"].astype(np.float64),
        track_lengths=heads["track_length"].astype(np.int64),
        track_image_ids=tracks["image_id"].astype(np.int32),
        track_point2D_idxs=tracks["point2D_idx"].astype(np.int32),
    )


def _point_record_starts(buf: bytes, count: int) -> tuple[list[int], int]:
    """Byte offset of each points3D.bin record and the end of the last one. Each record's length
    depends on its track length, so this walk is the one sequential step of the reader."""
    unpack_u64 = _U64.unpack_from
    length_at = _POINT_HEAD.itemsize - 8
    starts = [0] * count
    pos = _U64.size
    for i in range(count):
        starts[i] = pos
        pos += _POINT_HEAD.itemsize + 8 * unpack_u64(buf, pos + length_at)[0]
    if pos > len(buf):
        raise ValueError(f"file ends at byte {len(buf)}, records need {pos}")
    return starts, pos


# ----------------------------------------------------------------------------------------------
# Text readers


def _data_lines(path: Path) -> list[str]:
    """Lines that are not comments (empty lines kept: images.txt may have empty keypoint lines)."""
    # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first line; line ends
    # may be LF, CRLF or CR.
    return [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8-sig").splitlines()
            if not line.lstrip().startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for line in _data_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise ValueError(f"camera line needs at least 4 fields, got {len(parts)}: {line[:80]!r}")
        cam_id, model, width, height = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
        if model not in MODEL_NUM_PARAMS:
            raise SceneError(f"unknown COLMAP camera model {model} in {path}")
        params = np.array([float(p) for p in parts[4:]], dtype=np.float64)
        if len(params) != MODEL_NUM_PARAMS[model]:
            raise SceneError(
                f"camera {cam_id} in {path}: model {model} needs {MODEL_NUM_PARAMS[model]} parameters, "
                f"got {len(params)}"
            )
        _insert(cameras, cam_id, ColmapCamera(cam_id, model, width, height, params), "camera", path)
    return cameras


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    lines = _data_lines(path)
    images = {}
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        # Two lines per image; the second (keypoints) may be empty but is always present.
        head = lines[i].strip().split(maxsplit=9)
        keypoints = lines[i + 1].split() if i + 1 < len(lines) else []
        i += 2
        if len(head) != 10:
            raise ValueError(f"image line needs 10 fields, got {len(head)}: {' '.join(head)!r}")
        values = np.array([float(v) for v in keypoints], dtype=np.float64).reshape(-1, 3)
        image_id = int(head[0])
        _insert(images, image_id, ColmapImage(
            id=image_id, qvec=np.array([float(v) for v in head[1:5]]), tvec=np.array([float(v) for v in head[5:8]]),
            camera_id=int(head[8]), name=head[9], xys=values[:, :2].copy(),
            point3D_ids=values[:, 2].astype(np.int64),
        ), "image", path)
    return images


def _read_points_txt(path: Path) -> ColmapPoints:
    ids, xyz, rgb, errors, lengths, track_values = [], [], [], [], [], []
    for line in _data_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 8:
            raise ValueError(f"point line needs at least 8 fields, got {len(parts)}: {line[:80]!r}")
        ids.append(int(parts[0]))
        xyz.append([float(v) for v in parts[1:4]])
        colour = [int(v) for v in parts[4:7]]
        if not all(0 <= v <= 255 for v in colour):
            raise ValueError(f"point {parts[0]}: colour {colour} is outside 0..255")
        rgb.append(colour)
        errors.append(float(parts[7]))
        track = parts[8:]
        if len(track) % 2:
            raise ValueError(f"point {parts[0]} has an odd number of track values")
        lengths.append(len(track) // 2)
        track_values.extend(int(v) for v in track)
    if not ids:
        return ColmapPoints.empty()
    track = np.array(track_values, dtype=np.int64).reshape(-1, 2)
    return ColmapPoints(
        ids=np.array(ids, np.int64), xyz=np.array(xyz, np.float64), rgb=np.array(rgb, np.uint8),
        errors=np.array(errors, np.float64), track_lengths=np.array(lengths, np.int64),
        track_image_ids=track[:, 0].astype(np.int32), track_point2D_idxs=track[:, 1].astype(np.int32),
    )


# ----------------------------------------------------------------------------------------------
# Writers


def write_colmap_text(folder: Path, cameras, images, points: ColmapPoints | None = None, *,
                      xy_decimals: int | None = None, xyz_decimals: int | None = None,
                      error_decimals: int | None = None) -> None:
    """Write ``cameras.txt``, ``images.txt`` and ``points3D.txt`` into ``folder`` (created if needed).

    ``cameras`` and ``images`` are ``{id: ColmapCamera}`` / ``{id: ColmapImage}`` dicts or plain
    iterables of those records; ``points`` is a :class:`ColmapPoints` (None writes no points).
    Floats are written with Python's shortest round-trip repr, so reading back is exact. The
    ``*_decimals`` options write keypoint positions, point positions and reprojection errors with a
    fixed number of decimals instead, as SfM output carries them (the synthetic benchmark does this;
    camera parameters and poses stay exact). The header lines carry COLMAP's summary statistics
    (mean observations per image, mean track length), with 6 significant digits.
    Lines end in ``\\n`` on every platform, so a file's bytes do not depend on where it was written.
    Every file is written atomically (:func:`predictgs.io.write_atomic`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cams, imgs = _records(cameras), _records(images)
    points = points if points is not None else ColmapPoints.empty()

    lines = ["# Camera list with one line of data per camera:",
             "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(cams)}"]
    lines += [" ".join([str(c.id), c.model, str(c.width), str(c.height), *_floats(c.params)]) for c in cams]
    write_atomic(folder / "cameras.txt", "\n".join(lines) + "\n")

    # COLMAP counts an observation per keypoint that has a 3D point.
    n_obs = sum(int(np.count_nonzero(np.asarray(im.point3D_ids) >= 0)) for im in imgs)
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)",
             f"# Number of images: {len(imgs)}, mean observations per image: {n_obs / max(len(imgs), 1):.6g}"]
    for im in imgs:
        lines.append(" ".join([str(im.id), *_floats(im.qvec), *_floats(im.tvec), str(im.camera_id), im.name]))
        xys = _floats(im.xys, xy_decimals)
        lines.append(" ".join(f"{x} {y} {int(pid)}" for x, y, pid in
                              zip(xys[0::2], xys[1::2], np.asarray(im.point3D_ids).tolist())))
    write_atomic(folder / "images.txt", "\n".join(lines) + "\n")

    n_track = int(np.sum(points.track_lengths))
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {len(points)}, mean track length: {n_track / max(len(points), 1):.6g}"]
    offsets = points.track_offsets
    all_tracks = np.stack([points.track_image_ids, points.track_point2D_idxs], axis=1)
    for i in range(len(points)):
        track = all_tracks[offsets[i]:offsets[i] + points.track_lengths[i]]
        lines.append(" ".join([
            str(int(points.ids[i])), *_floats(points.xyz[i], xyz_decimals), *(str(int(v)) for v in points.rgb[i]),
            *_floats(points.errors[i], error_decimals), *(str(int(v)) for v in track.reshape(-1)),
        ]))
    write_atomic(folder / "points3D.txt", "\n".join(lines) + "\n")


def write_colmap_binary(folder: Path, cameras, images, points: ColmapPoints | None = None) -> None:
    """Write ``cameras.bin``, ``images.bin`` and ``points3D.bin``; arguments as :func:`write_colmap_text`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cams, imgs = _records(cameras), _records(images)
    points = points if points is not None else ColmapPoints.empty()

    chunks = [_U64.pack(len(cams))]
    for c in cams:
        chunks.append(_CAMERA_HEAD.pack(c.id, MODEL_IDS[c.model], c.width, c.height))
        chunks.append(np.asarray(c.params, "<f8").tobytes())
    write_atomic(folder / "cameras.bin", b"".join(chunks))

    chunks = [_U64.pack(len(imgs))]
    for im in imgs:
        chunks.append(_IMAGE_HEAD.pack(im.id, *map(float, im.qvec), *map(float, im.tvec), im.camera_id))
        chunks.append(im.name.encode("utf-8") + b"\0")
        obs = np.zeros(len(im.point3D_ids), _POINT2D)
        obs["xy"] = np.asarray(im.xys, np.float64).reshape(-1, 2)
        obs["point3D_id"] = im.point3D_ids
        chunks.append(_U64.pack(len(obs)) + obs.tobytes())
    write_atomic(folder / "images.bin", b"".join(chunks))

    heads = np.zeros(len(points), _POINT_HEAD)
    heads["id"], heads["xyz"], heads["rgb"] = points.ids, points.xyz, points.rgb
    heads["error"], heads["track_length"] = points.errors, points.track_lengths
    tracks = np.zeros(len(points.track_image_ids), _TRACK_ELEM)
    tracks["image_id"], tracks["point2D_idx"] = points.track_image_ids, points.track_point2D_idxs
    head_bytes, track_bytes = heads.tobytes(), tracks.tobytes()
    offsets = points.track_offsets * _TRACK_ELEM.itemsize
    ends = offsets + points.track_lengths * _TRACK_ELEM.itemsize
    size = _POINT_HEAD.itemsize
    chunks = [_U64.pack(len(points))]
    chunks += [head_bytes[i * size:(i + 1) * size] + track_bytes[a:b]
               for i, (a, b) in enumerate(zip(offsets.tolist(), ends.tolist()))]
    write_atomic(folder / "points3D.bin", b"".join(chunks))


def _records(items) -> list:
    values = list(items.values()) if isinstance(items, Mapping) else list(items)
    return sorted(values, key=lambda r: r.id)


def _floats(values: Iterable, decimals: int | None = None) -> list[str]:
    """Shortest round-trip repr (exact), or ``decimals`` fixed decimals."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1).tolist()
    if decimals is None:
        return [repr(v) for v in flat]
    return [f"{v:.{decimals}f}" for v in flat]


# ----------------------------------------------------------------------------------------------
# COLMAP -> our cameras


def pinhole_intrinsics(camera: ColmapCamera, source: Path | str) -> tuple[float, float, float, float, Distortion | None]:
    """(fx, fy, cx, cy, distortion) of a COLMAP camera at its own resolution.

    Distorted models keep their intrinsics and get a :class:`Distortion` record, so the loader
    undistorts the image to a pinhole image with the same intrinsics. ``source`` names the camera
    file in the error raised for models we cannot handle."""
    p = [float(v) for v in camera.params]
    model = camera.model
    if model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], None
    if model == "PINHOLE":
        return p[0], p[1], p[2], p[3], None
    if model == "SIMPLE_RADIAL":
        fx, fy, cx, cy, coeffs = p[0], p[0], p[1], p[2], (p[3],)
    elif model == "RADIAL":
        fx, fy, cx, cy, coeffs = p[0], p[0], p[1], p[2], (p[3], p[4])
    elif model == "OPENCV":
        fx, fy, cx, cy, coeffs = p[0], p[1], p[2], p[3], tuple(p[4:8])
    else:
        raise SceneError(
            f"unsupported camera model {model} (camera {camera.id}) in {source}: supported are "
            f"{', '.join(PINHOLE_MODELS + DISTORTED_MODELS)}; undistort the images first "
            f"(e.g. colmap image_undistorter)"
        )
    if not any(coeffs):
        return fx, fy, cx, cy, None  # zero distortion: nothing to undistort
    return fx, fy, cx, cy, Distortion(model, coeffs, fx, fy, cx, cy, camera.width, camera.height)


def check_relative_name(name: str, where: str) -> str:
    """An image name from a scene file: a relative path that stays inside the scene's image folder (no
    absolute path, no '..'), so that a scene file cannot make predictgs read files elsewhere."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or "\0" in name or pure.is_absolute() or ".." in pure.parts or PureWindowsPath(name).drive:
        raise SceneError(f"{where}: image name {name!r} must be a relative path inside the scene's image folder")
    return name


def find_image_file(images_dir: Path, name: str) -> Path | None:
    """``images_dir/name``, or a file with the same stem and another image extension (downscaled
    folders are sometimes re-encoded, e.g. JPG -> png)."""
    exact = images_dir / name
    if exact.is_file():
        return exact
    if not exact.parent.is_dir():
        return None
    stem = exact.stem
    matches = sorted(p for p in exact.parent.iterdir()
                     if p.stem == stem and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return matches[0] if matches else None


def model_to_cameras(model: ColmapModel, images_dir: Path) -> list[Camera]:
    """One :class:`Camera` per registered image, with intrinsics scaled to the size of its file in
    ``images_dir`` (which may be a downscaled images_N folder). Order: image id; uid = image id."""
    images_dir = Path(images_dir)
    for im in model.images.values():
        check_relative_name(im.name, f"{model.images_file}: image {im.id}")
    missing = [im.name for im in model.images.values() if find_image_file(images_dir, im.name) is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SceneError(
            f"{model.images_file} lists {len(model.images)} images but {len(missing)} are missing from "
            f"{images_dir}: {shown}"
        )
    cameras = []
    for image_id in sorted(model.images):
        im = model.images[image_id]
        if im.camera_id not in model.cameras:
            raise SceneError(f"image {im.name} in {model.images_file} uses camera {im.camera_id}, "
                             f"which is not in {model.cameras_file}")
        cameras.append(_image_camera(model, im, find_image_file(images_dir, im.name)))
    return cameras


def _image_camera(model: ColmapModel, im: ColmapImage, path: Path) -> Camera:
    colmap_cam = model.cameras[im.camera_id]
    fx, fy, cx, cy, distortion = pinhole_intrinsics(colmap_cam, model.cameras_file)
    # Plausible as a camera (checked where a camera is used, so that any file can be read and written):
    # the principal point in the image, distortion coefficients of a real lens.
    where = f"{model.cameras_file}: camera {colmap_cam.id}"
    check_principal_point(cx, cy, colmap_cam.width, colmap_cam.height, where)
    if distortion is not None:
        check_distortion(distortion.model, distortion.params, where)
    camera = Camera(
        uid=im.id, image_name=im.name, image_path=path, width=colmap_cam.width, height=colmap_cam.height,
        fx=fx, fy=fy, cx=cx, cy=cy, R=im.R, t=np.asarray(im.tvec, np.float64), distortion=distortion,
        metadata={"colmap_image_id": im.id, "colmap_camera_id": im.camera_id},
    )
    width, height, orientation = read_image_header(path)
    check_image_size(path, (width, height), (camera.width, camera.height), where, folder_factor(path), orientation)
    if (width, height) != (camera.width, camera.height):
        camera = camera.resized(width, height)
        if distortion is not None:
            camera.distortion = distortion_at_size(distortion, width, height)
    return camera
