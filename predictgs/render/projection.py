"""EWA projection of 3D Gaussians to the image plane (pure PyTorch, differentiable).

Conventions follow the Inria rasterizer that Scaffold-GS and HAC use, so that densification thresholds
and visibility carry over:
- view-space near cull at z <= ``near_plane`` (0.2);
- the Jacobian uses x/z, y/z clamped to 1.3 x the half field of view (off-screen Gaussians keep a sane
  footprint);
- the 2D covariance is dilated by ``eps2d`` = 0.3 px^2 ("classic" anti-aliasing, no opacity compensation);
- the splat radius is ceil(3 sqrt(lambda_max)) of the dilated covariance; a Gaussian whose square of that
  radius does not touch the image is culled (radius 0).
Pixel centres are at (i + 0.5, j + 0.5) and means2d = (fx x/z + cx, fy y/z + cy); with cx = W/2 this is
the Inria convention (principal point at the image centre).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Quaternions (w, x, y, z), not necessarily normalised, [N,4] -> rotation matrices [N,3,3]."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities for one camera."""

    means2d: Tensor  # [N,2] pixel coordinates
    depths: Tensor  # [N] view-space z
    conics: Tensor  # [N,3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]
    radii: Tensor  # [N] int32, 0 where culled


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.2,
    eps2d: float = 0.3,
) -> Projection:
    """Project Gaussians (means [N,3], quats [N,4] wxyz, activated scales [N,3]) into one camera."""
    R_view, t_view = viewmat[:3, :3], viewmat[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    p_cam = means @ R_view.T + t_view
    x, y, z = p_cam.unbind(-1)
    in_front = z > near_plane
    # Keep the arithmetic finite for culled Gaussians; they are masked out below.
    z_safe = torch.where(in_front, z, torch.ones_like(z))

    rot = quat_to_rotmat(quats)
    M = rot * scales[:, None, :]  # R S
    cov_world = M @ M.transpose(1, 2)
    cov_cam = R_view @ cov_world @ R_view.T

    lim_x_pos, lim_x_neg = 1.3 * (width - cx) / fx, 1.3 * cx / fx
    lim_y_pos, lim_y_neg = 1.3 * (height - cy) / fy, 1.3 * cy / fy
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)
    zeros = torch.zeros_like(z_safe)
    J = torch.stack(
        [fx / z_safe, zeros, -fx * tx / z_safe**2, zeros, fy / z_safe, -fy * ty / z_safe**2], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a = cov2d[:, 0, 0] + eps2d
    b = cov2d[:, 0, 1]
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    valid = in_front & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)

    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lambda_max = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        radii = torch.ceil(3.0 * torch.sqrt(lambda_max))
        u, v = means2d[:, 0], means2d[:, 1]
        on_screen = (u + radii > 0) & (u - radii < width) & (v + radii > 0) & (v - radii < height)
        valid = valid & on_screen & torch.isfinite(means2d).all(-1)
        radii = torch.where(valid, radii, torch.zeros_like(radii)).to(torch.int32)
    return Projection(means2d=means2d, depths=z, conics=conics, radii=radii)
