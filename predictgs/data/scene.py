"""The evaluation protocol (split, resolution, background, initial points) and the loaded Scene.

``load_scene(path, protocol)`` detects the layout (COLMAP, LLFF, Blender, instant-ngp), reads the
cameras at the size of their image files, then applies the protocol:

- split: images sorted by name (3DGS's key: file name up to the first dot, then the full relative
  name as tie-break); test = index % llffhold == 0, train = the rest; llffhold is at least 2, so every
  scene has test views and a model is never evaluated on its training views.
  Blender scenes keep their transforms_train / transforms_test split.
- resolution (the conventions of the evaluation-protocol design notes):
  "hac"    the ``images/`` folder, any image wider than ``max_width`` downscaled to that width with
           3DGS's arithmetic (scale = W / max_width; size = int(W / scale), int(H / scale)), whose
           float truncation can give max_width - 1 (e.g. 1601 -> 1599), as in the published runs.
           Without ``images/`` (e.g. LLFF data shipping only images_8) the lowest-factor
           ``images_N`` folder is used, recorded in ``resolution_note`` and warned about once.
  "3dgs"   the ``images_folder`` folder (default ``images``), e.g. images_4 / images_2, at its own
           size; like 3DGS's default ``-r -1`` it still caps widths at ``max_width`` (no-op for the
           reference datasets, whose images_2/images_4 are narrower).
  "factor" the ``images/`` folder (or ``images_folder``) downscaled by ``downscale``:
           size = round(W / downscale), round(H / downscale), as 3DGS's ``-r N``.
  Blender / instant-ngp files are named by their JSON; ``images_folder`` does not apply to them.
  Intrinsics always follow the image: Camera.resized from the file's size to the working size.
- initial points: the scene's sparse cloud, else ``random_init_points`` uniform random points in
  the box of the training camera centres scaled by RANDOM_INIT_BOX_SCALE (``points_are_random``).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping

import numpy as np
import torch

from predictgs.config import CHECK, SEED_LIMIT, bounded, check_fields, choice
from predictgs.data import blender, colmap, llff
from predictgs.data.cameras import MAX_IMAGE_SIDE, Camera, check_camera
from predictgs.data.images import load_image
from predictgs.errors import ConfigError, SceneError

FORMATS = ("colmap", "llff", "blender", "instant-ngp")
RESOLUTIONS = ("hac", "3dgs", "factor")
MAX_RANDOM_INIT_POINTS = 10**8
MIN_LLFFHOLD = 2  # 1 would make every image a test view; 0 or less none (the model would be scored on its training views)
MAX_LLFFHOLD = 1 << 20

# Half-sizes of the camera-centre box are multiplied by this about the box centre. NeRF-synthetic
# trains on an upper hemisphere of radius ~4 (centre heights ~0.1..4), so its box is about
# [-4,4]^2 x [0.1,4]; x2.5 reaches z ~ -2.5, covering the object around the origin (which 3DGS
# initialises in [-1.3, 1.3]^3).
RANDOM_INIT_BOX_SCALE = 2.5
# Flat camera rigs (e.g. a turntable at one height) give a box with a zero-size axis; each
# half-size is at least this fraction of the largest one so the random cloud has volume.
RANDOM_INIT_MIN_ASPECT = 0.5

_IMAGES_N = re.compile(r"^images_(\d+)$")
_warned_once: set[str] = set()


# ----------------------------------------------------------------------------------------------
# Protocol


def _folder_name(value, key: str) -> None:
    """A folder of the scene: a relative path that stays inside it (no absolute path, no '..')."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a folder name or null, got {value!r}")
    if "\0" in value or PurePosixPath(value).is_absolute() or ".." in PurePosixPath(value).parts:
        raise ConfigError(f"{key}: {value!r} must name a folder inside the scene folder (e.g. images_4)")


@dataclass
class Protocol:
    """How a scene is evaluated. Recorded with every result (``to_dict``). Each field declares its type
    and range (``predictgs.config``); a wrong one is a ConfigError naming ``protocol.<field>``."""

    llffhold: int = field(default=8, metadata=bounded(MIN_LLFFHOLD, MAX_LLFFHOLD))  # every N-th image is a test view
    resolution: str = field(default="hac", metadata=choice(RESOLUTIONS))
    max_width: int = field(default=1600, metadata=bounded(1, MAX_IMAGE_SIDE))
    images_folder: str | None = field(default=None, metadata={CHECK: _folder_name})
    downscale: float = field(default=1.0, metadata=bounded(0.0, MAX_IMAGE_SIDE, low_open=True))
    white_background: bool | None = None  # None: True for Blender scenes, False otherwise
    random_init_points: int = field(default=100_000, metadata=bounded(1, MAX_RANDOM_INIT_POINTS))
    seed: int = field(default=0, metadata=bounded(0, SEED_LIMIT, high_open=True))

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for a value of the wrong type or range (ints where floats are due become floats)."""
        check_fields(self, prefix="protocol.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Protocol":
        if not isinstance(data, Mapping):
            raise ConfigError(f"protocol must be a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(map(str, set(data) - set(known)))
        if unknown:
            raise ConfigError(f"unknown protocol keys: {', '.join(unknown)} (known: {', '.join(known)})")
        return cls(**dict(data))


# ----------------------------------------------------------------------------------------------
# Scene


@dataclass
class Scene:
    path: Path
    format: str
    protocol: Protocol
    train_cameras: list[Camera]  # working resolution, sorted by image name
    test_cameras: list[Camera]
    points: np.ndarray  # float32 (P, 3)
    colors: np.ndarray  # float32 (P, 3) in [0, 1]
    points_are_random: bool
    extent: float  # 3DGS getNerfppNorm radius of the training cameras
    background: np.ndarray  # float32 (3,)
    resolution_note: str

    @property
    def cameras(self) -> list[Camera]:
        """Train and test cameras together, in image-name order (uid order)."""
        return sorted(self.train_cameras + self.test_cameras, key=lambda c: c.uid)

    def load_image(self, camera: Camera) -> torch.Tensor:
        """The ground-truth image of ``camera``: float32 [3, H, W] in [0, 1], undistorted, resized
        to the camera's working size and composited over the scene background."""
        if camera.image_path is None:
            raise SceneError(f"camera {camera.image_name} of {self.path} has no image file")
        return load_image(camera.image_path, (camera.width, camera.height), self.background, camera.distortion)

    def summary(self) -> dict:
        """JSON-serialisable description of the scene and the protocol applied."""
        cameras = self.cameras
        sizes = Counter((c.width, c.height) for c in cameras)
        (width, height), _ = sizes.most_common(1)[0]
        result = {
            "format": self.format,
            "path": str(self.path),
            "num_cameras": len({_intrinsics_key(c) for c in cameras}),
            "num_images": len(cameras),
            "num_train": len(self.train_cameras),
            "num_test": len(self.test_cameras),
            "image_size": [int(width), int(height)],
            "num_points": int(self.points.shape[0]),
            "points_are_random": bool(self.points_are_random),
            "extent": float(self.extent),
            "background": [float(v) for v in self.background],
            "protocol": self.protocol.to_dict(),
            "resolution_note": self.resolution_note,
        }
        if len(sizes) > 1:
            result["image_sizes"] = {f"{w}x{h}": n for (w, h), n in sorted(sizes.items())}
        return result


def _intrinsics_key(camera: Camera) -> tuple:
    d = camera.distortion
    lens = None if d is None else (d.model, tuple(round(float(p), 9) for p in d.params))
    return (camera.width, camera.height, *(round(float(v), 6) for v in (camera.fx, camera.fy, camera.cx, camera.cy)), lens)


# ----------------------------------------------------------------------------------------------
# Loading


@dataclass
class _Source:
    """What a format reader found: cameras at their files' sizes, before the protocol."""

    cameras: list[Camera]
    predefined_split: tuple[list[Camera], list[Camera]] | None
    cloud: tuple[np.ndarray, np.ndarray] | None  # xyz (P,3), rgb uint8 (P,3)
    folder_note: str


def load_scene(path, protocol: Protocol | Mapping | None = None) -> Scene:
    """Load the scene at ``path`` (COLMAP, LLFF, Blender or instant-ngp layout) under ``protocol``."""
    protocol = _as_protocol(protocol)
    root = Path(path).expanduser()
    if not root.exists():
        raise SceneError(f"scene folder not found: {root}")
    if not root.is_dir():
        raise SceneError(f"scene path is not a folder: {root}")
    scene_format = detect_format(root)
    source = _READERS[scene_format](root, protocol)
    # Every reader checks what it reads, naming its file; this catches what a reader derived from it.
    for camera in source.cameras:
        check_camera(camera, f"{root}: camera of {camera.image_name}")
    check_unique_images(source.cameras, root)
    if source.cloud is not None and not np.isfinite(source.cloud[0]).all():
        raise SceneError(f"{root}: the initial point cloud has non-finite positions")

    if source.predefined_split is None:
        train, test = split_llffhold(sort_cameras(source.cameras), protocol.llffhold)
    else:
        train, test = (sort_cameras(cams) for cams in source.predefined_split)
    if not train:
        raise SceneError(f"{root}: no training images after the split ({len(test)} test images, "
                         f"llffhold={protocol.llffhold})")
    if not test:
        raise SceneError(f"{root}: no test images after the split ({len(train)} training images); a model is "
                         "never evaluated on its training views")
    uids = {id(c): i for i, c in enumerate(sort_cameras(train + test))}
    train = [_to_working(dataclasses.replace(c, uid=uids[id(c)]), protocol) for c in train]
    test = [_to_working(dataclasses.replace(c, uid=uids[id(c)]), protocol) for c in test]

    if source.cloud is not None:
        xyz, rgb = source.cloud
        points, colors, is_random = xyz.astype(np.float32), (rgb.astype(np.float32) / 255.0), False
    else:
        centres = np.stack([c.center for c in train])
        points, colors = random_init_cloud(centres, protocol.random_init_points, protocol.seed)
        is_random = True

    white = protocol.white_background if protocol.white_background is not None else scene_format == "blender"
    return Scene(
        path=root, format=scene_format, protocol=protocol, train_cameras=train, test_cameras=test,
        points=points, colors=colors, points_are_random=is_random,
        extent=nerfpp_extent([c.center for c in train]),
        background=np.full(3, 1.0 if white else 0.0, np.float32),
        resolution_note=source.folder_note,
    )


def check_unique_images(cameras: list[Camera], root: Path) -> None:
    """Two image records of one file (with their own poses, or one in each split) are an error: each image
    is one view."""
    seen: dict[Path, str] = {}
    for camera in cameras:
        if camera.image_path is None:
            continue
        key = Path(camera.image_path).resolve()
        if key in seen:
            first = seen[key]
            detail = f"{first} and {camera.image_name}" if first != camera.image_name else f"{first} twice"
            raise SceneError(f"{root}: two image records name the same file {camera.image_path} ({detail}); "
                             "each image must appear once")
        seen[key] = camera.image_name


def _as_protocol(protocol) -> Protocol:
    if protocol is None:
        return Protocol()
    if isinstance(protocol, Protocol):
        return protocol
    return Protocol.from_dict(protocol)


def detect_format(root: Path) -> str:
    """"colmap" | "llff" | "blender" | "instant-ngp", checked in that order."""
    root = Path(root)
    if colmap.find_model_folder(root) is not None:
        return "colmap"
    if (root / llff.POSES_FILE).is_file():
        return "llff"
    if (root / "transforms_train.json").is_file():
        return "blender"
    if (root / blender.NGP_FILE).is_file():
        return "instant-ngp"
    raise SceneError(
        f"no scene found in {root}: looked for a COLMAP model (cameras.bin|txt + images.bin|txt in "
        f"sparse/0/, sparse/ or the folder itself), an LLFF poses_bounds.npy, a Blender "
        f"transforms_train.json and an instant-ngp transforms.json"
    )


def sort_cameras(cameras: list[Camera]) -> list[Camera]:
    """Image-name order. The key is 3DGS's image_name (base name up to the first dot), then the full
    relative name, so that splits match 3DGS's even for names like 'a-b.jpg' vs 'a.jpg'."""
    return sorted(cameras, key=lambda c: (Path(c.image_name).name.split(".")[0], c.image_name))


def split_llffhold(cameras: list[Camera], llffhold: int) -> tuple[list[Camera], list[Camera]]:
    """(train, test) of name-sorted cameras: every llffhold-th image (from the first) is a test image."""
    if llffhold < MIN_LLFFHOLD:
        raise ConfigError(f"protocol.llffhold: {llffhold!r} is below {MIN_LLFFHOLD} (no test views, or no training views)")
    test = [c for i, c in enumerate(cameras) if i % llffhold == 0]
    train = [c for i, c in enumerate(cameras) if i % llffhold != 0]
    return train, test


def working_size(width: int, height: int, protocol: Protocol) -> tuple[int, int]:
    """The size an image of (width, height) is used at, with 3DGS's loadCam arithmetic."""
    if protocol.resolution == "factor":
        return round(width / protocol.downscale), round(height / protocol.downscale)
    if width <= protocol.max_width:
        return width, height
    scale = width / protocol.max_width
    return int(width / scale), int(height / scale)


def _to_working(camera: Camera, protocol: Protocol) -> Camera:
    size = working_size(camera.width, camera.height, protocol)
    if min(size) < 1:
        raise ConfigError(f"protocol: {camera.image_name} ({camera.width}x{camera.height}) would be used at "
                          f"{size[0]}x{size[1]} pixels (downscale {protocol.downscale:g})")
    return camera if size == (camera.width, camera.height) else camera.resized(*size)


def nerfpp_extent(centres) -> float:
    """3DGS getNerfppNorm radius: 1.1 x the largest distance of a camera centre from their mean."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    return 1.1 * float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max())


def random_init_cloud(centres, count: int, seed: int, box_scale: float = RANDOM_INIT_BOX_SCALE):
    """(points float32 (count,3), colours float32 (count,3)) uniform in the box of the camera
    centres, its half-sizes scaled by ``box_scale`` about its centre. Deterministic in ``seed``."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    low, high = centres.min(axis=0), centres.max(axis=0)
    middle, half = (low + high) / 2.0, (high - low) / 2.0
    largest = float(half.max()) if half.max() > 0 else 1.0
    half = np.maximum(half, RANDOM_INIT_MIN_ASPECT * largest) * box_scale
    rng = np.random.default_rng(seed)
    points = middle + (2.0 * rng.random((count, 3)) - 1.0) * half
    colors = rng.random((count, 3))
    return points.astype(np.float32), colors.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Image folders and per-format readers


def resolve_image_folder(root: Path, protocol: Protocol) -> tuple[Path, str]:
    """(folder, note) of the images of a COLMAP / LLFF scene under the protocol."""
    wanted = protocol.images_folder or "images"
    folder = Path(root) / wanted
    if folder.is_dir():
        return folder, _resolution_note(protocol, f"{wanted}/")
    if protocol.images_folder is None and protocol.resolution == "hac":
        fallback = lowest_factor_folder(root)
        if fallback is not None:
            _warn_once(f"{root} has no images/ folder; using {fallback.name}/ (lowest downscale factor available)")
            note = _resolution_note(protocol, f"{fallback.name}/") + f" [fallback: no images/ folder, used {fallback.name}/]"
            return fallback, note
    available = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and (p.name == "images" or _IMAGES_N.match(p.name)))
    raise SceneError(f"image folder {folder} not found (image folders present: {', '.join(available) or 'none'})")


def lowest_factor_folder(root: Path) -> Path | None:
    """The images_N folder with the smallest N, or None."""
    found = [(int(m.group(1)), p) for p in Path(root).iterdir() if p.is_dir() and (m := _IMAGES_N.match(p.name))]
    return min(found)[1] if found else None


def _resolution_note(protocol: Protocol, folder: str) -> str:
    if protocol.resolution == "factor":
        return f"factor: {folder} images downscaled by {float(protocol.downscale):g} (PIL bicubic)"
    if protocol.resolution == "3dgs":
        return (f"3dgs: {folder} images at their own size (widths above {protocol.max_width} px "
                f"downscaled, as 3DGS's -r -1)")
    return f"hac: {folder} images, widths above {protocol.max_width} px downscaled to {protocol.max_width} (PIL bicubic)"


def _warn_once(message: str) -> None:
    if message not in _warned_once:
        _warned_once.add(message)
        warnings.warn(message, stacklevel=3)


def _colmap_scene_root(given: Path, model_folder: Path) -> Path:
    """Where images/ lives when the user pointed at the model folder itself."""
    if model_folder != given:
        return given
    if given.name == "sparse":
        return given.parent
    if given.parent.name == "sparse":
        return given.parent.parent
    return given


def _read_colmap(root: Path, protocol: Protocol) -> _Source:
    model = colmap.read_colmap_model(root)
    images_dir, note = resolve_image_folder(_colmap_scene_root(root, model.folder), protocol)
    cameras = colmap.model_to_cameras(model, images_dir)
    cloud = (model.points.xyz, model.points.rgb) if len(model.points) else None
    if cloud is None:
        warnings.warn(f"COLMAP model {model.folder} has no 3D points; using a random initial cloud", stacklevel=3)
    return _Source(cameras, None, cloud, note)


def _read_llff(root: Path, protocol: Protocol) -> _Source:
    images_dir, note = resolve_image_folder(root, protocol)
    return _Source(llff.llff_cameras(root, images_dir), None, llff.llff_points(root), note)


def _json_note(protocol: Protocol, files: str) -> str:
    note = _resolution_note(protocol, files)
    if protocol.images_folder is not None:
        note += f" [images_folder={protocol.images_folder!r} ignored: the JSON names the image files]"
    return note


def _read_blender(root: Path, protocol: Protocol) -> _Source:
    splits = blender.blender_cameras(root)
    train, test = splits["train"], splits["test"]
    found = blender.find_point_cloud(root, train)
    cloud = None if found is None else found[:2]
    return _Source(train + test, (train, test), cloud, _json_note(protocol, "transforms_{train,test}.json"))


def _read_ngp(root: Path, protocol: Protocol) -> _Source:
    cameras = blender.ngp_cameras(root)
    found = blender.find_point_cloud(root, cameras)
    cloud = None if found is None else found[:2]
    return _Source(cameras, None, cloud, _json_note(protocol, "transforms.json"))


_READERS = {"colmap": _read_colmap, "llff": _read_llff, "blender": _read_blender, "instant-ngp": _read_ngp}
