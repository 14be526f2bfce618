"""A camera as the training loop and the methods use it: rasterizer arguments on the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.cameras import Camera


@dataclass
class View:
    name: str
    viewmat: Tensor  # [4,4]
    K: Tensor  # [3,3]
    width: int
    height: int
    center: Tensor  # [3] camera centre in world coordinates

    @classmethod
    def from_camera(cls, camera: Camera, device: torch.device | str = "cpu") -> "View":
        return cls(
            name=camera.image_name,
            viewmat=torch.as_tensor(camera.viewmat, dtype=torch.float32, device=device),
            K=torch.as_tensor(camera.K, dtype=torch.float32, device=device),
            width=camera.width,
            height=camera.height,
            center=torch.as_tensor(camera.center, dtype=torch.float32, device=device),
        )

    def render_args(self) -> dict:
        return dict(viewmat=self.viewmat, K=self.K, width=self.width, height=self.height)

    def scaled(self, width: int, height: int) -> "View":
        """The same view rendered at another size (intrinsics scaled)."""
        if (width, height) == (self.width, self.height):
            return self
        K = self.K.clone()
        K[0] *= width / self.width
        K[1] *= height / self.height
        return View(self.name, self.viewmat, K, width, height, self.center)
