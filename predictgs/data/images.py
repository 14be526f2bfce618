"""Image files -> float32 tensors [3,H,W] in [0,1], following the reference code's conventions.

The loading order is: decode -> composite alpha over the background -> undistort -> 8-bit RGB ->
PIL bicubic resize to the working size -> /255. Every ground-truth image therefore passes through
8 bits, as in 3DGS/HAC (whose PILtoTorch resizes a uint8 PIL image), so our targets match theirs.

Pixel centres lie at (i + 0.5, j + 0.5) (COLMAP and gsplat convention).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from predictgs.data.cameras import Distortion
from predictgs.errors import SceneError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# Pixel formats read (PIL modes): 8 bits per channel, and 16-bit greyscale (rescaled by 1/257).
EIGHT_BIT_MODES = frozenset({"L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
EXIF_ORIENTATION = 0x0112
ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_IMAGES_N = re.compile(r"^images_(\d+)$")
_orientation_warned: set[str] = set()

# Distortion models we can remove; everything else is refused by the readers.
UNDISTORTABLE_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV")

# PIL raises these for missing, truncated or undecodable files (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by file name (hidden files skipped)."""
    return sorted(
        (p for p in Path(folder).iterdir()
         if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def check_image_mode(im: Image.Image, path: Path) -> None:
    """Only 8- and 16-bit images are read: a 1-bit, 32-bit integer or floating-point image has no agreed
    scale to 8 bits (a float TIFF may hold [0, 1] or [0, 255], a 32-bit one anything), so it is refused
    rather than read on some scale."""
    if im.mode in EIGHT_BIT_MODES or im.mode in SIXTEEN_BIT_MODES:
        return
    if im.mode == "I" and im.format == "PNG":  # PNG has no 32-bit pixels: this is 16-bit greyscale
        return
    what = {"1": "1-bit", "I": "32-bit integer", "F": "32-bit floating-point"}.get(im.mode, "unsupported")
    raise SceneError(f"image {path} has {what} pixels (PIL mode {im.mode}); only 8- and 16-bit images are read: "
                     "convert it (e.g. to an 8-bit PNG)")


def read_image_header(path: Path) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) from the file header, without decoding the pixels; the pixel
    format is checked (:func:`check_image_mode`). The orientation (1 when absent) is reported, never
    applied: see :func:`check_image_size`."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            check_image_mode(im, path)
            try:
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
            except (TypeError, ValueError, SyntaxError, OSError):  # a damaged EXIF block: no orientation
                orientation = 1
            if orientation != 1:
                _note_orientation(path, orientation)
            return int(im.size[0]), int(im.size[1]), orientation
    except _DECODE_ERRORS as exc:
        raise SceneError(f"cannot read image {path}: {exc}") from exc


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels (see :func:`read_image_header`)."""
    width, height, _ = read_image_header(path)
    return width, height


def _note_orientation(path: Path, orientation: int) -> None:
    folder = str(Path(path).parent)
    if folder not in _orientation_warned:
        _orientation_warned.add(folder)
        warnings.warn(f"images in {folder} carry an EXIF orientation tag (e.g. {Path(path).name}: {orientation}); "
                      "like COLMAP and 3DGS, predictgs uses the stored pixels and ignores it", stacklevel=4)


def folder_factor(path: Path) -> int | None:
    """The downscale factor an image's folder declares: 1 for ``images/``, N for ``images_N/``, None for
    any other folder."""
    name = Path(path).parent.name
    if name == "images":
        return 1
    found = _IMAGES_N.match(name)
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


def check_image_size(path: Path, size: tuple[int, int], camera_size: tuple[float, float], where: str,
                     factor: int | None = 1, orientation: int = 1) -> None:
    """An image file must have its camera's size, divided by the folder's declared ``factor`` (each side
    rounded down or up, as downscaling tools do), or with ``factor`` None at least its camera's aspect
    ratio (each side within a pixel): an image is never stretched to fit its camera.

    EXIF orientation is never applied (COLMAP and 3DGS read the stored pixels and ignore it, so the
    cameras of a COLMAP model describe the stored pixels); an image whose tag would turn it into its
    camera's shape is named as such in the error."""
    width, height = size
    cam_w, cam_h = float(camera_size[0]), float(camera_size[1])
    if factor is not None:
        allowed = [{math.floor(side / factor), math.ceil(side / factor)} for side in (cam_w, cam_h)]
        if width in allowed[0] and height in allowed[1]:
            return
        expected = f"{_pixels(cam_w)}x{_pixels(cam_h)}"
        if factor != 1:
            expected += (f", which its folder {Path(path).parent.name}/ divides by {factor} into "
                         f"{_pixels(cam_w / factor)}x{_pixels(cam_h / factor)}")
    else:
        if abs(height - cam_h * width / cam_w) <= 1 and abs(width - cam_w * height / cam_h) <= 1:
            return
        expected = f"{_pixels(cam_w)}x{_pixels(cam_h)}, another aspect ratio"
    message = f"{where}: image {path} is {width}x{height} pixels but its camera is {expected}; an image is never " \
              "stretched to fit"
    if orientation in ROTATING_ORIENTATIONS:
        message += (f" (its EXIF orientation {orientation} would turn it by 90 degrees, but like COLMAP and 3DGS "
                    "predictgs reads the stored pixels: write the pixels rotated, e.g. mogrify -auto-orient)")
    raise SceneError(message)


def _pixels(value: float) -> str:
    return f"{value:g}" if not float(value).is_integer() else str(int(value))


def load_image(
    path: Path,
    size: tuple[int, int] | None = None,
    background=(0.0, 0.0, 0.0),
    distortion: Distortion | None = None,
) -> torch.Tensor:
    """Load ``path`` as a float32 tensor [3, H, W] in [0, 1].

    ``size`` is the working (width, height); the image is resized with PIL bicubic when it differs.
    ``background`` (3 floats in [0,1]) is what transparent pixels are composited over.
    ``distortion`` is removed before resizing (see :func:`undistort_image`)."""
    rgb8 = decode_rgb8(path, background)
    if distortion is not None:
        image = torch.from_numpy(rgb8).permute(2, 0, 1).to(torch.float32) / 255.0
        image = undistort_image(image, distortion)
        rgb8 = (image.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if size is not None and (rgb8.shape[1], rgb8.shape[0]) != tuple(size):
        pil = Image.fromarray(rgb8, "RGB").resize((int(size[0]), int(size[1])), Image.BICUBIC)
        rgb8 = np.array(pil)
    return torch.from_numpy(np.ascontiguousarray(rgb8)).permute(2, 0, 1).to(torch.float32) / 255.0


def decode_rgb8(path: Path, background=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Decode an image file to uint8 [H, W, 3]; transparency is composited over ``background``."""
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            check_image_mode(im, path)
            im.load()
            return _to_rgb8(im, background)
    except _DECODE_ERRORS as exc:
        raise SceneError(f"cannot read image {path}: {exc}") from exc


def _to_rgb8(im: Image.Image, background) -> np.ndarray:
    has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
    if has_alpha:
        return composite_rgba8(np.array(im.convert("RGBA")), background)
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit greyscale ("I" only from a PNG: check_image_mode): PIL's convert("RGB") would clip at 255
        # instead of rescaling.
        grey = np.asarray(im, dtype=np.float64) / 257.0
        return np.repeat(np.clip(np.round(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))  # a writable copy: torch.from_numpy needs one


def composite_rgba8(rgba: np.ndarray, background) -> np.ndarray:
    """uint8 [H,W,4] -> uint8 [H,W,3]: ``rgb * a + bg * (1 - a)``.

    Computed in float64 and truncated to 8 bits exactly as the 3DGS Blender reader does
    (``np.array(arr * 255.0, dtype=np.byte)``), so that white-background targets are bit-identical."""
    norm = rgba.astype(np.float64) / 255.0
    alpha = norm[..., 3:4]
    bg = np.asarray(background, dtype=np.float64).reshape(1, 1, 3)
    out = norm[..., :3] * alpha + bg * (1.0 - alpha)
    return np.clip(out * 255.0, 0.0, 255.0).astype(np.uint8)


def distort_normalized(x, y, model: str, params):
    """COLMAP's forward distortion of normalised image coordinates (x, y) = ((u-cx)/fx, (v-cy)/fy).

    Works on numpy arrays and torch tensors alike. Returns the distorted (xd, yd)."""
    r2 = x * x + y * y
    if model == "SIMPLE_RADIAL":
        (k,) = params
        radial = k * r2
        return x + x * radial, y + y * radial
    if model == "RADIAL":
        k1, k2 = params
        radial = k1 * r2 + k2 * r2 * r2
        return x + x * radial, y + y * radial
    if model == "OPENCV":
        k1, k2, p1, p2 = params
        radial = k1 * r2 + k2 * r2 * r2
        xy = x * y
        dx = x * radial + 2.0 * p1 * xy + p2 * (r2 + 2.0 * x * x)
        dy = y * radial + 2.0 * p2 * xy + p1 * (r2 + 2.0 * y * y)
        return x + dx, y + dy
    raise SceneError(f"cannot undistort camera model {model}: supported are {', '.join(UNDISTORTABLE_MODELS)}")


def distortion_at_size(distortion: Distortion, width: int, height: int) -> Distortion:
    """The same lens for a resized file (e.g. an images_4 folder): coefficients act on normalised
    coordinates and do not change; the intrinsics scale with the image."""
    if (width, height) == (distortion.width, distortion.height):
        return distortion
    sx, sy = width / distortion.width, height / distortion.height
    return Distortion(
        model=distortion.model, params=tuple(distortion.params),
        fx=distortion.fx * sx, fy=distortion.fy * sy, cx=distortion.cx * sx, cy=distortion.cy * sy,
        width=int(width), height=int(height),
    )


def undistort_image(image: torch.Tensor, distortion: Distortion) -> torch.Tensor:
    """Remove lens distortion: [C,H,W] float -> [C,H,W] pinhole image with the same fx, fy, cx, cy.

    For every output pixel we compute where the distorted camera saw that ray (forward model, no
    inversion needed) and sample the input bilinearly there. Output pixels whose source lies
    outside the input image are 0."""
    _, height, width = image.shape
    d = distortion_at_size(distortion, width, height)
    u = torch.arange(width, dtype=torch.float64) + 0.5
    v = torch.arange(height, dtype=torch.float64) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    xd, yd = distort_normalized((uu - d.cx) / d.fx, (vv - d.cy) / d.fy, d.model, d.params)
    src_u = d.fx * xd + d.cx
    src_v = d.fy * yd + d.cy
    # align_corners=False maps -1/+1 to the outer pixel edges, i.e. pixel-centre coordinates 0..W.
    grid = torch.stack([2.0 * src_u / width - 1.0, 2.0 * src_v / height - 1.0], dim=-1)
    sampled = F.grid_sample(
        image[None].to(torch.float32), grid[None].to(torch.float32),
        mode="bilinear", padding_mode="border", align_corners=False,
    )[0]
    inside = (src_u >= 0) & (src_u <= width) & (src_v >= 0) & (src_v <= height)
    return sampled * inside.to(sampled.dtype)
