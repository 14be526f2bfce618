"""NeRF-style JSON scenes: Blender / NeRF-synthetic (``transforms_{train,test}.json``) and the
single-file instant-ngp / nerfstudio layout (``transforms.json``).

Both store camera-to-world matrices in the OpenGL convention (camera x right, y up, looking down
-z); we flip the y and z axes to get OpenCV's (x right, y down, z forward) and invert to
world-to-camera. Intrinsics come from ``camera_angle_x`` (NeRF-synthetic: square pixels, principal
point at the centre) or from ``fl_x/fl_y/cx/cy/w/h`` (instant-ngp), optionally with OpenCV
distortion ``k1, k2, p1, p2``; every key may be overridden per frame.

These scenes carry no point cloud; :func:`find_point_cloud` looks for one beside the JSON files.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from predictgs.data.cameras import Camera, Distortion, check_camera, check_finite, check_focal, check_size
from predictgs.data.colmap import check_relative_name, find_model_folder, read_colmap_model, read_points3D
from predictgs.data.images import (IMAGE_EXTENSIONS, check_image_size, distortion_at_size, folder_factor,
                                   read_image_header)
from predictgs.errors import SceneError
from predictgs.parse import HugeInt, ParseError, load_json_text

BLENDER_SPLITS = ("train", "test")
NGP_FILE = "transforms.json"

# Point-cloud files looked for beside the JSON files (3DGS writes points3d.ply there).
POINT_CLOUD_FILES = ("points3D.ply", "points3d.ply", "points3D.txt")

_INTRINSIC_KEYS = (
    "fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y",
    "k1", "k2", "k3", "k4", "p1", "p2", "camera_model", "is_fisheye",
)
_SUPPORTED_JSON_MODELS = (None, "OPENCV", "PINHOLE", "SIMPLE_PINHOLE")


def read_json(path: Path) -> dict:
    """A transforms JSON: an object with a 'frames' list of objects, each with a string file_path."""
    path = Path(path)
    try:
        data = load_json_text(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SceneError(f"file not found: {path}") from exc
    except ParseError as exc:
        raise SceneError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SceneError(f"cannot parse {path}: {str(exc)[:200] or type(exc).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise SceneError(f"{path} has no 'frames' list")
    for index, frame in enumerate(data["frames"]):
        if not isinstance(frame, dict):
            raise SceneError(f"{path}: frame {index} is not an object")
        if not isinstance(frame.get("file_path"), str) or not frame["file_path"]:
            raise SceneError(f"{path}: frame {index} needs a file_path string, got {frame.get('file_path')!r}")
    return data


def opengl_c2w_to_w2c(matrix) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL camera-to-world (4x4 or 3x4) -> OpenCV world-to-camera (R (3,3), t (3,))."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((3, 4), (4, 4)):
        raise ValueError(f"expected a 4x4 or 3x4 matrix, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the matrix has non-finite values")
    c2w = np.eye(4)
    c2w[: m.shape[0], :4] = m[:, :4]
    c2w[:3, 1:3] *= -1.0  # OpenGL (y up, z back) -> OpenCV (y down, z forward)
    w2c = np.linalg.inv(c2w)  # inverse, not transpose: as 3DGS, in case the matrix is not rigid
    return w2c[:3, :3], w2c[:3, 3]


def frame_image_path(root: Path, file_path: str, where: str = "frame") -> Path:
    """The image file of a frame; NeRF-synthetic omits the extension, which is then .png. The path must stay
    inside the scene folder (relative, no '..')."""
    check_relative_name(file_path, where)
    relative = Path(file_path)
    if relative.suffix.lower() not in IMAGE_EXTENSIONS:
        relative = Path(f"{file_path}.png")
    return Path(root) / relative


def blender_cameras(root: Path, splits=BLENDER_SPLITS) -> dict[str, list[Camera]]:
    """{split: cameras} from ``transforms_<split>.json`` (``splits`` may add "val")."""
    root = Path(root)
    result = {}
    for split in splits:
        path = root / f"transforms_{split}.json"
        if not path.is_file():
            raise SceneError(f"Blender scene {root} has no {path.name}")
        result[split] = json_cameras(root, read_json(path), path)
    return result


def ngp_cameras(root: Path) -> list[Camera]:
    """Cameras of an instant-ngp / nerfstudio ``transforms.json``."""
    path = Path(root) / NGP_FILE
    return json_cameras(Path(root), read_json(path), path)


def json_cameras(root: Path, meta: dict, source: Path) -> list[Camera]:
    """Cameras for the frames of one JSON file. Frames whose image is missing are skipped with a
    warning; none left is an error."""
    cameras = []
    for index, frame in enumerate(meta["frames"]):
        if "transform_matrix" not in frame:
            raise SceneError(f"frame {index} of {source} needs file_path and transform_matrix")
        image_path = frame_image_path(root, frame["file_path"], f"{source}: frame {index}")
        if not image_path.is_file():
            warnings.warn(f"{source}: image {image_path} not found; frame skipped", stacklevel=2)
            continue
        cameras.append(_frame_camera(root, meta, frame, image_path, source))
    if not cameras:
        raise SceneError(f"none of the {len(meta['frames'])} frames of {source} has its image file")
    return cameras


def _number(keys: dict, key: str, where: str) -> float | None:
    """keys[key] as a finite float, or None when absent."""
    value = keys[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(value, HugeInt):
        raise SceneError(f"{where}: {key} must be a number, got {value!r}")
    return float(check_finite(value, key, where))


def _pixels(keys: dict, key: str, where: str, default: int):
    """An image size in pixels from the JSON (absent or 0: the image file's ``default``)."""
    if not keys[key]:
        return default
    value = _number(keys, key, where)
    return int(value) if value.is_integer() else value  # a fraction is refused by check_size


def _frame_camera(root: Path, meta: dict, frame: dict, image_path: Path, source: Path) -> Camera:
    width, height, orientation = read_image_header(image_path)
    keys = {k: frame.get(k, meta.get(k)) for k in _INTRINSIC_KEYS}
    where = f"{source}: frame {frame['file_path']}"
    ref_w, ref_h = check_size(_pixels(keys, "w", where, width), _pixels(keys, "h", where, height), where)
    check_image_size(image_path, (width, height), (ref_w, ref_h), where, folder_factor(image_path), orientation)
    fx, fy, cx, cy = _json_intrinsics(keys, ref_w, ref_h, where)
    distortion = _json_distortion(keys, fx, fy, cx, cy, ref_w, ref_h, where)
    try:
        R, t = opengl_c2w_to_w2c(frame["transform_matrix"])
    except (ValueError, TypeError, IndexError, np.linalg.LinAlgError) as exc:
        raise SceneError(f"{where}: bad transform_matrix ({exc})") from None
    camera = Camera(
        uid=0, image_name=Path(os.path.relpath(image_path, root)).as_posix(), image_path=image_path,
        width=ref_w, height=ref_h, fx=fx, fy=fy, cx=cx, cy=cy, R=R, t=t, distortion=distortion,
    )
    check_camera(camera, where)
    if (width, height) != (ref_w, ref_h):
        camera = camera.resized(width, height)
        if distortion is not None:
            camera.distortion = distortion_at_size(distortion, width, height)
    return camera


def _angle(keys: dict, key: str, where: str) -> float:
    """A field of view in radians, in (0, pi)."""
    angle = _number(keys, key, where)
    if not 0.0 < angle < math.pi:
        raise SceneError(f"{where}: {key} = {angle!r} is not a field of view in (0, pi) radians")
    return angle


def _json_intrinsics(keys: dict, width: int, height: int, where: str) -> tuple[float, float, float, float]:
    if keys["fl_x"] is not None:
        fx = check_focal(_number(keys, "fl_x", where), "fl_x", where)
    elif keys["camera_angle_x"] is not None:
        fx = 0.5 * width / math.tan(0.5 * _angle(keys, "camera_angle_x", where))
    else:
        raise SceneError(f"{where}: no focal length (fl_x or camera_angle_x)")
    if keys["fl_y"] is not None:
        fy = check_focal(_number(keys, "fl_y", where), "fl_y", where)
    elif keys["camera_angle_y"] is not None and keys["fl_x"] is None:
        fy = 0.5 * height / math.tan(0.5 * _angle(keys, "camera_angle_y", where))
    else:
        fy = fx  # square pixels (3DGS derives FovY from the same focal)
    cx = _number(keys, "cx", where)
    cy = _number(keys, "cy", where)
    return fx, fy, width / 2.0 if cx is None else cx, height / 2.0 if cy is None else cy


def _json_distortion(keys, fx, fy, cx, cy, width, height, where: str) -> Distortion | None:
    model = keys["camera_model"]
    if keys["is_fisheye"]:
        model = "OPENCV_FISHEYE"
    if model not in _SUPPORTED_JSON_MODELS:
        raise SceneError(f"{where}: unsupported camera model {model}: supported are OPENCV and PINHOLE")
    if any((_number(keys, k, where) or 0.0) != 0.0 for k in ("k3", "k4")):
        raise SceneError(f"{where}: unsupported camera model FULL_OPENCV (non-zero k3/k4)")
    coeffs = tuple(_number(keys, k, where) or 0.0 for k in ("k1", "k2", "p1", "p2"))
    if not any(coeffs):
        return None
    return Distortion("OPENCV", coeffs, fx, fy, cx, cy, int(width), int(height))


# ----------------------------------------------------------------------------------------------
# Point clouds beside a JSON scene


def find_point_cloud(root: Path, cameras: list[Camera]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(xyz (P,3) float64, rgb (P,3) uint8, source) of a point cloud shipped with the scene, or None.

    A COLMAP model beside the JSON is used only when its camera centres agree with the JSON's for
    the same image names: converters such as instant-ngp's colmap2nerf re-orient and re-scale the
    world, and a cloud in another frame would be worse than a random one."""
    root = Path(root)
    for name in POINT_CLOUD_FILES:
        path = root / name
        if path.is_file():
            xyz, rgb = read_ply_points(path) if path.suffix == ".ply" else _colmap_text_points(path)
            return xyz, rgb, str(path)
    folder = find_model_folder(root)
    if folder is None:
        return None
    model = read_colmap_model(folder)
    if not len(model.points):
        return None
    if not _same_world_frame(model, cameras):
        warnings.warn(
            f"COLMAP model {folder} beside {root}'s transforms is not in the same world frame "
            f"(camera centres differ); using a random initial point cloud instead", stacklevel=2)
        return None
    return model.points.xyz, model.points.rgb, str(model.points_file)


def _colmap_text_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    points = read_points3D(path)
    return points.xyz, points.rgb


def _same_world_frame(model, cameras: list[Camera], tolerance: float = 1e-2) -> bool:
    """True when at least two images of the COLMAP model have centres within ``tolerance`` x the
    camera spread of the JSON cameras with the same file name."""
    by_name = {Path(c.image_name).name: c.center for c in cameras}
    pairs = [(by_name[Path(im.name).name], -im.R.T @ im.tvec)
             for im in model.images.values() if Path(im.name).name in by_name]
    if len(pairs) < 2:
        return False
    ours, theirs = (np.array(side) for side in zip(*pairs))
    spread = float(np.linalg.norm(ours.max(axis=0) - ours.min(axis=0)))
    return float(np.abs(ours - theirs).max()) <= tolerance * max(spread, 1e-12)


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertex positions and colours of a PLY file (ascii or binary; vertex must be the first
    element, with scalar properties). Missing colours are mid-grey."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        fmt, count, props, body_start = _ply_header(raw)
        if fmt == "ascii":
            text = raw[body_start:].decode("ascii").splitlines()[:count]
            table = np.loadtxt(io.StringIO("\n".join(text)), ndmin=2) if count else np.zeros((0, len(props)))
            columns = {name: table[:, i] for i, (name, _) in enumerate(props)}
        else:
            endian = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(name, endian + _PLY_TYPES[kind]) for name, kind in props])
            table = np.frombuffer(raw, dtype, count=count, offset=body_start)
            columns = {name: table[name] for name, _ in props}
        if len(table) != count:
            raise ValueError(f"the header announces {count} vertices, the file holds {len(table)}")
        xyz = np.stack([columns[a].astype(np.float64) for a in ("x", "y", "z")], axis=1)
    except (ValueError, KeyError, UnicodeDecodeError, IndexError, OSError) as exc:
        raise SceneError(f"cannot read point cloud {path}: {str(exc)[:200]}") from None
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        raise SceneError(f"{path}: vertex {int(np.flatnonzero(bad)[0])} has a non-finite position "
                         f"({int(bad.sum())} such vertices)")
    if all(c in columns for c in ("red", "green", "blue")):
        rgb = np.stack([columns[c] for c in ("red", "green", "blue")], axis=1)
        if np.issubdtype(rgb.dtype, np.floating) and rgb.max(initial=0.0) <= 1.0:
            rgb = rgb * 255.0
        rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    else:
        rgb = np.full((len(xyz), 3), 128, np.uint8)
    return xyz, rgb


def _ply_header(raw: bytes) -> tuple[str, int, list[tuple[str, str]], int]:
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file")
    body_start = raw.index(b"\n", end) + 1
    fmt, count, props, element = None, 0, [], None
    for line in raw[:end].decode("ascii").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            if element is None and words[1] != "vertex":
                raise ValueError("the first element must be 'vertex'")
            element = words[1]
            count = int(words[2]) if element == "vertex" else count
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list":
                raise ValueError("list properties on vertices are not supported")
            if words[1] not in _PLY_TYPES:
                raise ValueError(f"unknown PLY property type {words[1]}")
            props.append((words[2], words[1]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unknown PLY format {fmt}")
    return fmt, count, props, body_start
