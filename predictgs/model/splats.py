"""Explicit 3D Gaussians (3DGS's ``GaussianModel`` state) and the PLY file 3DGS writes.

:class:`GaussianCloud` holds one row per Gaussian, named as gsplat's parameter dictionary:

    means [N,3]      positions
    scales [N,3]     log scales (activation exp)
    quats [N,4]      rotations (w, x, y, z), not normalised (activation: normalise)
    opacities [N]    opacity logits (activation sigmoid)
    sh0 [N,1,3]      the degree-0 spherical-harmonics coefficient per colour
    shN [N,K-1,3]    the higher coefficients, K = (degree+1)^2

Rows are added (clone, split) and removed (prune) together with the optimiser state: see
``predictgs.train.gs_densify`` and ``predictgs.train.optim``.

The PLY layout is the one of 3DGS's ``save_ply`` (plyfile, binary little-endian): per vertex the float32
properties x, y, z, nx, ny, nz (always 0), f_dc_0..2, f_rest_0..3(K-1)-1, opacity, scale_0..2, rot_0..3,
raw (not activated) values; f_dc / f_rest are channel-major (all coefficients of red, then green, then
blue), as 3DGS flattens its [N,3,K] feature tensors. At degree 3 a vertex is 62 floats = 248 bytes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .anchors import mean_sq_knn_distance

SH_C0 = 0.28209479177387814
PER_GAUSSIAN = ("means", "scales", "quats", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """The degree-0 coefficient whose colour (C0 * c + 0.5) is ``rgb`` (3DGS's RGB2SH)."""
    return (rgb - 0.5) / SH_C0


def logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


class GaussianCloud(nn.Module):
    def __init__(self, num: int, sh_degree: int):
        super().__init__()
        self.sh_degree = int(sh_degree)
        rest = (self.sh_degree + 1) ** 2 - 1
        self.means = nn.Parameter(torch.zeros(num, 3))
        self.scales = nn.Parameter(torch.zeros(num, 3))
        self.quats = nn.Parameter(torch.zeros(num, 4))
        self.opacities = nn.Parameter(torch.zeros(num))
        self.sh0 = nn.Parameter(torch.zeros(num, 1, 3))
        self.shN = nn.Parameter(torch.zeros(num, rest, 3))

    @classmethod
    def from_points(cls, points: np.ndarray, colors: np.ndarray | None, sh_degree: int,
                    init_opacity: float = 0.1) -> "GaussianCloud":
        """3DGS's ``create_from_pcd``: one Gaussian per point, isotropic scale sqrt of the mean squared
        distance to the 3 nearest other points, identity rotation, opacity ``init_opacity``, colour from
        the points (grey without colours), higher SH coefficients zero."""
        points = np.asarray(points, dtype=np.float32)
        cloud = cls(len(points), sh_degree)
        with torch.no_grad():
            cloud.means.copy_(torch.from_numpy(points))
            log_scale = np.log(np.sqrt(mean_sq_knn_distance(points)))
            cloud.scales.copy_(torch.from_numpy(log_scale).float()[:, None].expand(-1, 3))
            cloud.quats[:, 0] = 1.0
            cloud.opacities.fill_(logit(init_opacity))
            if colors is not None:
                rgb = torch.from_numpy(np.asarray(colors, dtype=np.float32)).reshape(-1, 3)
                cloud.sh0.copy_(rgb_to_sh0(rgb)[:, None, :])
        return cloud

    @property
    def num(self) -> int:
        return self.means.shape[0]

    def parameter_rows(self) -> dict[str, nn.Parameter]:
        """The per-Gaussian parameters by name (their first dimension is the Gaussian index)."""
        return {name: getattr(self, name) for name in PER_GAUSSIAN}

    def resize(self, num: int) -> None:
        """Give every per-Gaussian tensor ``num`` zero rows (before loading a checkpoint)."""
        if num == self.num:
            return
        for name, param in self.parameter_rows().items():
            setattr(self, name, nn.Parameter(param.new_zeros((num,) + tuple(param.shape[1:]))))

    # -- activations ---------------------------------------------------------------------------------
    def scales_activated(self) -> Tensor:
        return torch.exp(self.scales)

    def quats_normalised(self) -> Tensor:
        return F.normalize(self.quats, dim=-1)

    def opacities_activated(self) -> Tensor:
        return torch.sigmoid(self.opacities)

    def sh_coefficients(self) -> Tensor:
        """[N,(degree+1)^2,3], what the rasterizer takes with ``sh_degree``."""
        return torch.cat([self.sh0, self.shN], dim=1)


# -- the PLY file of 3DGS ---------------------------------------------------------------------------
def ply_property_names(sh_degree: int) -> list[str]:
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)]
            + [f"f_rest_{i}" for i in range(rest)] + ["opacity"] + [f"scale_{i}" for i in range(3)]
            + [f"rot_{i}" for i in range(4)])


def ply_header(num: int, sh_degree: int) -> bytes:
    """The ASCII header plyfile writes for 3DGS's vertex element (no comments), ending in a newline."""
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {num}"]
    lines += [f"property float {name}" for name in ply_property_names(sh_degree)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def ply_size(num: int, sh_degree: int) -> int:
    """Bytes of the PLY file of ``num`` Gaussians."""
    return len(ply_header(num, sh_degree)) + 4 * num * len(ply_property_names(sh_degree))


@torch.no_grad()
def ply_bytes(cloud: GaussianCloud) -> bytes:
    """The PLY file 3DGS's ``save_ply`` writes for these Gaussians."""
    n = cloud.num
    columns = [
        cloud.means.detach().reshape(n, 3),
        torch.zeros(n, 3, device=cloud.means.device),
        cloud.sh0.detach().transpose(1, 2).reshape(n, -1),
        cloud.shN.detach().transpose(1, 2).reshape(n, -1),
        cloud.opacities.detach().reshape(n, 1),
        cloud.scales.detach().reshape(n, 3),
        cloud.quats.detach().reshape(n, 4),
    ]
    values = torch.cat(columns, dim=1).cpu().to(torch.float32).numpy().astype("<f4")
    return ply_header(n, cloud.sh_degree) + values.tobytes()


def parse_ply(data: bytes) -> tuple[int, dict[str, Tensor]]:
    """(SH degree, raw per-Gaussian tensors named as :class:`GaussianCloud`'s) of a 3DGS PLY file.
    Raises ValueError for a file of another layout."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError("not a PLY file with a complete header")
    lines = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError("not a binary little-endian PLY file")
    vertex = [line for line in lines if line.startswith("element vertex ")]
    if len(vertex) != 1 or sum(line.startswith("element ") for line in lines) != 1:
        raise ValueError("expected one element, vertex")
    num = int(vertex[0].split()[2])
    names = [line.split()[2] for line in lines if line.startswith("property float ")]
    if len(names) != sum(line.startswith("property ") for line in lines):
        raise ValueError("every property must be a float")
    rest = sum(name.startswith("f_rest_") for name in names)
    sh_degree = round(((rest // 3) + 1) ** 0.5) - 1
    if names != ply_property_names(sh_degree):
        raise ValueError("the properties are not those of 3DGS's PLY")
    payload = data[end + len(b"end_header\n"):]
    if len(payload) != 4 * num * len(names):
        raise ValueError(f"the body holds {len(payload)} bytes, {num} vertices need {4 * num * len(names)}")
    table = torch.from_numpy(np.frombuffer(payload, dtype="<f4").astype(np.float32).reshape(num, len(names)))
    column = {name: i for i, name in enumerate(names)}

    def take(prefix: str, count: int) -> Tensor:
        start = column[f"{prefix}0"] if count else 0
        return table[:, start:start + count]

    k = (sh_degree + 1) ** 2
    return sh_degree, {
        "means": table[:, 0:3].clone(),
        "scales": take("scale_", 3).clone(),
        "quats": take("rot_", 4).clone(),
        "opacities": table[:, column["opacity"]].clone(),
        "sh0": take("f_dc_", 3).reshape(num, 3, 1).transpose(1, 2).contiguous(),
        "shN": take("f_rest_", 3 * (k - 1)).reshape(num, 3, k - 1).transpose(1, 2).contiguous(),
    }
