"""``predictgs export``: a trained run or a decoded model as the files Gaussian-splatting viewers open.

Formats (all little-endian):

- ``ply``: 3DGS's PLY (``save_ply``): per vertex float32 x, y, z, nx, ny, nz, f_dc_0..2, f_rest_*,
  opacity (logit), scale_0..2 (log), rot_0..3 (w, x, y, z). SuperSplat, gsplat's viewer, nerfstudio and
  the Inria viewers read it.
- ``splat``: antimatter15's 32 bytes per Gaussian, no header: float32 position[3], float32 scale[3]
  (activated), uint8 RGBA (colour 0.5 + C0 f_dc and opacity, x 255), uint8 rotation[4] (normalised
  quaternion w, x, y, z, x 128 + 128); sorted by exp(scale sum) x opacity, largest first. Colour only
  (no higher SH).
- ``ply_compressed``: PlayCanvas's compressed PLY (SuperSplat): Gaussians in Morton order, in chunks of
  256; per chunk 18 float32 (position, log-scale and colour min/max); per Gaussian four uint32: position
  11-10-11 bits and log scale 11-10-11 bits within the chunk's box, rotation as the three smallest
  components (10 bits each, x sqrt(2)/2 + 0.5) with the index of the largest in the top 2 bits, colour
  RGBA 8-8-8-8 (RGB within the chunk's range, alpha the opacity); higher SH coefficients, if any, as
  uint8 (f_rest / 8 + 0.5) x 256 in an element ``sh``.

What is exported. 3DGS: its Gaussians, exactly the file 3DGS writes (view-independent). The anchor
methods (Scaffold-GS, HAC, HAC++, Predict-GS) have no fixed Gaussians: their networks spawn them per view
from the anchors (which Gaussians exist, their opacity, colour, shape depend on the viewing direction
and distance), so the export holds the Gaussians spawned for one camera (``--view``: a test view),
with their colour as the degree-0 coefficient. Seen from that camera it renders as the model does;
from elsewhere it is an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .io import check_output_file, write_atomic
from .model.gaussians import Gaussians
from .model.splats import SH_C0, ply_header

FORMATS = ("ply", "splat", "ply_compressed")
CHUNK = 256
_EPS = 1e-6


# -- loading a run or a decoded model --------------------------------------------------------------------
@dataclass
class LoadedModel:
    method: str
    model: object                 # in eval mode
    scene: str | None             # the scene folder, when known (a run knows it; a decoded model does not)
    protocol: dict


def load_any(path: Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A run directory (``predictgs train``) or a decoded model directory (``predictgs decode``)."""
    from .pipeline.codec import CONFIG_FILE, MODEL_FILE, load_decoded
    from .pipeline.train import load_run
    from .runs import CHECKPOINT

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path} is not a run or decoded model folder")
    if (path / MODEL_FILE).is_file():
        info, model = load_decoded(path, device)
        run = info.get("run") if isinstance(info.get("run"), dict) else {}
        protocol = run.get("protocol") if isinstance(run.get("protocol"), dict) else {}
        return LoadedModel(str(info.get("method")), model.eval(), None, protocol)
    if (path / CHECKPOINT).is_file():
        spec, model = load_run(path, device)
        return LoadedModel(spec["method"], model.eval(), spec["scene"], spec["protocol"])
    raise ConfigError(f"{path} is neither a run folder (needs {CHECKPOINT}) nor a decoded model folder (needs "
                      f"{MODEL_FILE} and {CONFIG_FILE})")


def view_dependent(model) -> bool:
    """Whether the model's Gaussians depend on the camera (the anchor methods)."""
    return not hasattr(model, "cloud")


def scene_cameras(loaded: LoadedModel, scene: Path | None):
    """(scene, test cameras or, without a test split, training cameras) of the model's scene."""
    from .data import load_scene

    folder = scene or loaded.scene
    if folder is None:
        raise ConfigError("a decoded model does not record where its scene is: give --scene")
    loaded_scene = load_scene(Path(folder), loaded.protocol)
    cameras = loaded_scene.test_cameras or loaded_scene.train_cameras
    if not cameras:
        raise ConfigError(f"{folder} has no cameras")
    return loaded_scene, cameras


@torch.no_grad()
def gaussians_for_view(model, camera, device: str | torch.device = "cpu") -> Gaussians:
    """The Gaussians the test-time model renders for ``camera`` (all of them for 3DGS)."""
    from .model.view import View

    gaussians, _ = model.eval().gaussians(View.from_camera(camera, torch.device(device)))
    return gaussians


# -- the Gaussians as 3DGS's raw PLY columns ------------------------------------------------------------
@dataclass
class RawGaussians:
    """Per-Gaussian values as 3DGS stores them (numpy float32): means [N,3], f_dc [N,3], f_rest [N,3(K-1)]
    channel-major, opacity logits [N], log scales [N,3], quaternions (w, x, y, z) [N,4]."""

    means: np.ndarray
    f_dc: np.ndarray
    f_rest: np.ndarray
    opacity: np.ndarray
    scale: np.ndarray
    rot: np.ndarray

    @property
    def count(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return round((self.f_rest.shape[1] // 3 + 1) ** 0.5) - 1

    def table(self) -> np.ndarray:
        n = self.count
        return np.concatenate([self.means, np.zeros((n, 3), np.float32), self.f_dc, self.f_rest,
                               self.opacity[:, None], self.scale, self.rot], axis=1).astype("<f4")


def raw_gaussians(gaussians: Gaussians) -> RawGaussians:
    """Activated Gaussians (what the rasterizer takes) as 3DGS's stored values."""
    def numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy().astype(np.float32)

    n = gaussians.count
    colors = gaussians.colors
    if gaussians.sh_degree is None:  # RGB: the degree-0 coefficient whose colour it is
        f_dc, f_rest = (colors.reshape(n, 3) - 0.5) / SH_C0, colors.new_zeros(n, 0)
    else:  # [N, K, 3] -> channel-major, as 3DGS flattens its [N, 3, K] features
        f_dc = colors[:, 0, :]
        f_rest = colors[:, 1:, :].transpose(1, 2).reshape(n, -1)
    opacity = gaussians.opacities.reshape(n).clamp(_EPS, 1 - _EPS)
    quats = torch.nn.functional.normalize(gaussians.quats.reshape(n, 4), dim=1)
    return RawGaussians(means=numpy(gaussians.means.reshape(n, 3)), f_dc=numpy(f_dc), f_rest=numpy(f_rest),
                        opacity=numpy(torch.log(opacity / (1 - opacity))),
                        scale=numpy(torch.log(gaussians.scales.reshape(n, 3).clamp_min(1e-12))), rot=numpy(quats))


def ply_data(raw: RawGaussians) -> bytes:
    return ply_header(raw.count, raw.sh_degree) + raw.table().tobytes()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def splat_data(raw: RawGaussians) -> bytes:
    order = np.argsort(-np.exp(raw.scale.astype(np.float64).sum(axis=1)) * _sigmoid(raw.opacity), kind="stable")
    n = raw.count
    record = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    out = np.zeros(n, dtype=record)
    out["position"] = raw.means[order]
    out["scale"] = np.exp(raw.scale[order].astype(np.float64))
    rgba = np.concatenate([0.5 + SH_C0 * raw.f_dc[order].astype(np.float64), _sigmoid(raw.opacity[order])[:, None]],
                          axis=1)
    out["rgba"] = np.clip(rgba * 255, 0, 255).astype(np.uint8)
    rot = raw.rot[order].astype(np.float64)
    rot /= np.linalg.norm(rot, axis=1, keepdims=True)
    out["rot"] = np.clip(rot * 128 + 128, 0, 255).astype(np.uint8)
    return out.tobytes()


# -- PlayCanvas's compressed PLY --------------------------------------------------------------------------
CHUNK_PROPERTIES = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
                    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")


def morton_order(means: np.ndarray) -> np.ndarray:
    """Gaussians sorted along a Morton (Z-order) curve of their positions (10 bits per axis)."""
    low, high = means.min(axis=0), means.max(axis=0)
    cells = ((means - low) / np.where(high > low, high - low, 1.0) * 1023).round().astype(np.uint64)

    def spread(v):  # 10 bits -> every third bit of 30
        v = v & np.uint64(0x3FF)
        v = (v | (v << np.uint64(16))) & np.uint64(0x030000FF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x0300F00F)
        v = (v | (v << np.uint64(4))) & np.uint64(0x030C30C3)
        return (v | (v << np.uint64(2))) & np.uint64(0x09249249)

    code = (spread(cells[:, 0]) << np.uint64(2)) | (spread(cells[:, 1]) << np.uint64(1)) | spread(cells[:, 2])
    return np.argsort(code, kind="stable")


def _unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _normalise(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    span = high - low
    t = np.where(span < 1e-5, 0.0, (values - low) / np.where(span < 1e-5, 1.0, span))
    return np.clip(t, 0.0, 1.0)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    return (_unorm(t[:, 0], 11) << np.uint32(21)) | (_unorm(t[:, 1], 10) << np.uint32(11)) | _unorm(t[:, 2], 11)


def _pack_rotation(rot: np.ndarray) -> np.ndarray:
    q = rot / np.linalg.norm(rot, axis=1, keepdims=True)
    largest = np.abs(q).argmax(axis=1)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)
    packed = largest.astype(np.uint32)
    for i in range(4):
        pick = largest != i
        packed = np.where(pick, (packed << np.uint32(10)) | _unorm(q[:, i] * (np.sqrt(2) * 0.5) + 0.5, 10), packed)
    return packed


def compressed_ply_data(raw: RawGaussians) -> bytes:
    n = raw.count
    order = morton_order(raw.means)
    chunks = max(1, -(-n // CHUNK))
    pad = np.concatenate([order, np.full(chunks * CHUNK - n, order[-1] if n else 0, dtype=order.dtype)])

    def chunked(values: np.ndarray) -> np.ndarray:
        return values[pad].astype(np.float64).reshape(chunks, CHUNK, -1)

    means, scales = chunked(raw.means), chunked(raw.scale)
    colours = 0.5 + SH_C0 * chunked(raw.f_dc)
    bounds = []
    for values, clamp in ((means, None), (scales, 20.0), (colours, None)):
        low, high = values.min(axis=1), values.max(axis=1)
        if clamp is not None:
            low, high = np.clip(low, -clamp, clamp), np.clip(high, -clamp, clamp)
        bounds.append((low, high))
    chunk_table = np.concatenate([np.concatenate(pair, axis=1) for pair in bounds], axis=1).astype("<f4")
    packed = np.zeros((chunks, CHUNK, 4), dtype="<u4")
    for index, values in enumerate((means, scales)):
        low, high = bounds[index]
        t = _normalise(values, low[:, None, :], high[:, None, :]).reshape(-1, 3)
        packed[:, :, 2 * index] = _pack_111011(t).reshape(chunks, CHUNK)
    packed[:, :, 1] = _pack_rotation(raw.rot[pad].astype(np.float64)).reshape(chunks, CHUNK)
    low, high = bounds[2]
    rgb = _normalise(colours, low[:, None, :], high[:, None, :]).reshape(-1, 3)
    alpha = _sigmoid(raw.opacity[pad])
    packed[:, :, 3] = ((_unorm(rgb[:, 0], 8) << np.uint32(24)) | (_unorm(rgb[:, 1], 8) << np.uint32(16))
                       | (_unorm(rgb[:, 2], 8) << np.uint32(8)) | _unorm(alpha, 8)).reshape(chunks, CHUNK)
    vertices = packed.reshape(-1, 4)[:n]
    lines = ["ply", "format binary_little_endian 1.0", "comment Generated by predictgs export",
             f"element chunk {chunks}", *(f"property float {p}" for p in CHUNK_PROPERTIES),
             f"element vertex {n}", *(f"property uint {p}" for p in VERTEX_PROPERTIES)]
    rest = raw.f_rest.shape[1]
    sh = b""
    if rest:
        lines += [f"element sh {n}", *(f"property uchar f_rest_{i}" for i in range(rest))]
        sh = np.clip(np.trunc((raw.f_rest[order].astype(np.float64) / 8 + 0.5) * 256), 0, 255).astype(np.uint8).tobytes()
    header = ("\n".join(lines) + "\nend_header\n").encode("ascii")
    return header + chunk_table.tobytes() + vertices.astype("<u4").tobytes() + sh


def read_compressed_ply(data: bytes) -> RawGaussians:
    """The Gaussians of a compressed PLY written by :func:`compressed_ply_data` (as viewers decode it)."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element ")}
    chunks, n = counts["chunk"], counts["vertex"]
    rest = sum(line.startswith("property uchar f_rest_") for line in header)
    offset = end
    table = np.frombuffer(data, "<f4", chunks * 18, offset).reshape(chunks, 18).astype(np.float64)
    offset += chunks * 18 * 4
    packed = np.frombuffer(data, "<u4", n * 4, offset).reshape(n, 4)
    offset += n * 16
    chunk = table[np.arange(n) // CHUNK]

    def unpack_111011(v):
        return np.stack([(v >> 21) / 2047.0, ((v >> 11) & 0x3FF) / 1023.0, (v & 0x7FF) / 2047.0], axis=1)

    def lerp(low, high, t):
        return low + (high - low) * t

    means = lerp(chunk[:, 0:3], chunk[:, 3:6], unpack_111011(packed[:, 0]))
    scale = lerp(chunk[:, 6:9], chunk[:, 9:12], unpack_111011(packed[:, 2]))
    c = packed[:, 3]
    rgba = np.stack([(c >> 24) & 0xFF, (c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF], axis=1) / 255.0
    rgb = lerp(chunk[:, 12:15], chunk[:, 15:18], rgba[:, :3])
    r = packed[:, 1]
    largest = r >> 30
    small = np.stack([(r >> 20) & 0x3FF, (r >> 10) & 0x3FF, r & 0x3FF], axis=1) / 1023.0
    small = (small - 0.5) / (np.sqrt(2) * 0.5)
    rot = np.zeros((n, 4))
    for i in range(n):
        others = [k for k in range(4) if k != largest[i]]
        rot[i, others] = small[i]
        rot[i, largest[i]] = np.sqrt(max(0.0, 1.0 - float((small[i] ** 2).sum())))
    alpha = np.clip(rgba[:, 3], _EPS, 1 - _EPS)
    f_rest = np.zeros((n, rest), np.float32)
    if rest:
        f_rest = (np.frombuffer(data, np.uint8, n * rest, offset).reshape(n, rest) / 256.0 - 0.5) * 8
    return RawGaussians(means=means.astype(np.float32), f_dc=((rgb - 0.5) / SH_C0).astype(np.float32),
                        f_rest=f_rest.astype(np.float32), opacity=np.log(alpha / (1 - alpha)).astype(np.float32),
                        scale=scale.astype(np.float32), rot=rot.astype(np.float32))


def read_splat(data: bytes) -> RawGaussians:
    """The Gaussians of a ``.splat`` file (colour only)."""
    record = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    rows = np.frombuffer(data, dtype=record)
    rgba = rows["rgba"].astype(np.float64) / 255.0
    alpha = np.clip(rgba[:, 3], _EPS, 1 - _EPS)
    rot = (rows["rot"].astype(np.float64) - 128) / 128
    return RawGaussians(means=rows["position"].astype(np.float32),
                        f_dc=((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32), f_rest=np.zeros((len(rows), 0), np.float32),
                        opacity=np.log(alpha / (1 - alpha)).astype(np.float32),
                        scale=np.log(rows["scale"].astype(np.float64)).astype(np.float32), rot=rot.astype(np.float32))


def to_gaussians(raw: RawGaussians, device: str | torch.device = "cpu") -> Gaussians:
    """Stored values -> what the rasterizer takes (SH coefficients with their degree)."""
    def tensor(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

    n, degree = raw.count, raw.sh_degree
    k = (degree + 1) ** 2
    sh = torch.cat([tensor(raw.f_dc)[:, None, :], tensor(raw.f_rest).reshape(n, 3, k - 1).transpose(1, 2)], dim=1)
    return Gaussians(means=tensor(raw.means), quats=torch.nn.functional.normalize(tensor(raw.rot), dim=1),
                     scales=torch.exp(tensor(raw.scale)), opacities=torch.sigmoid(tensor(raw.opacity)), colors=sh,
                     sh_degree=degree)


# -- the command -------------------------------------------------------------------------------------------
def format_for(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    name = path.name.lower()
    if name.endswith(".splat"):
        return "splat"
    if name.endswith(".compressed.ply"):
        return "ply_compressed"
    return "ply"


def export(source: Path, out: Path, *, fmt: str | None = None, view: int = 0, scene: Path | None = None) -> dict:
    """Write ``source``'s Gaussians (a run or a decoded model) to ``out``. -> a summary."""
    out = check_output_file(Path(out), "--out")
    fmt = format_for(out, fmt)
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    loaded = load_any(Path(source))
    model = loaded.model
    summary = {"method": loaded.method, "format": fmt, "out": str(out)}
    if view_dependent(model):
        _, cameras = scene_cameras(loaded, scene)
        if not 0 <= view < len(cameras):
            raise ConfigError(f"--view {view}: the scene has {len(cameras)} test views (0..{len(cameras) - 1})")
        gaussians = gaussians_for_view(model, cameras[view])
        summary.update(view=view, camera=cameras[view].image_name, view_dependent=True)
        raw = raw_gaussians(gaussians)
    else:
        raw = cloud_raw(model.cloud)
        summary["view_dependent"] = False
    data = {"ply": ply_data, "splat": splat_data, "ply_compressed": compressed_ply_data}[fmt](raw)
    write_atomic(out, data)
    summary.update(num_gaussians=raw.count, sh_degree=raw.sh_degree if fmt != "splat" else 0, size_bytes=len(data))
    return summary


@torch.no_grad()
def cloud_raw(cloud) -> RawGaussians:
    """3DGS's Gaussians as it stores them (the values of its PLY, exactly)."""
    n = cloud.num

    def numpy(t):
        return t.detach().float().cpu().numpy().astype(np.float32)

    return RawGaussians(means=numpy(cloud.means.reshape(n, 3)), f_dc=numpy(cloud.sh0.transpose(1, 2).reshape(n, -1)),
                        f_rest=numpy(cloud.shN.transpose(1, 2).reshape(n, -1)), opacity=numpy(cloud.opacities.reshape(n)),
                        scale=numpy(cloud.scales.reshape(n, 3)), rot=numpy(cloud.quats.reshape(n, 4)))


__all__ = ["export", "load_any", "gaussians_for_view", "raw_gaussians", "ply_data", "splat_data",
           "compressed_ply_data", "read_compressed_ply", "read_splat", "to_gaussians", "FORMATS"]
