"""Scene loading: COLMAP, LLFF, Blender (NeRF-synthetic) and instant-ngp layouts, read into pinhole
cameras, a train/test split and an initial point cloud under an evaluation :class:`Protocol`."""

from predictgs.data.cameras import Camera, Distortion
from predictgs.data.scene import Protocol, Scene, load_scene

__all__ = ["Camera", "Distortion", "Protocol", "Scene", "load_scene"]
