"""What a method hands to the rasterizer for one view."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(kw_only=True)
class Gaussians:
    """Activated Gaussians: means [M,3], quaternions [M,4] (w first), scales [M,3], opacities [M] in
    [0,1], colours [M,3] RGB, or spherical-harmonics coefficients [M,(d+1)^2,3] with ``sh_degree=d``."""

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    colors: Tensor
    sh_degree: int | None = None

    @property
    def count(self) -> int:
        return self.means.shape[0]
