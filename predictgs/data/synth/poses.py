"""Camera rigs: where each family's views are taken from.

The rigs imitate how the real benchmarks were captured: a 360-degree handheld orbit with jittered radius
and elevation around the centre (``outdoor``), a closer orbit around one object (``object``), and a ring
inside a room looking outwards in varied directions, not at one point (``indoor``). Every view has the
same pinhole intrinsics: horizontal field of view :data:`FOV_X_DEG`, principal point at the image centre.
"""

from __future__ import annotations

import math

import numpy as np

from predictgs.data.synth.raycast import look_at

FOV_X_DEG = 65.0


def focal_for(width: int) -> float:
    return width / (2.0 * math.tan(math.radians(FOV_X_DEG) / 2.0))


def make_poses(family: str, rng: np.random.Generator, num_views: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """World-to-camera (R, t) per view. Orbits for outdoor/object (looking at the centre), an inside ring
    looking outwards for indoor."""
    poses = []
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(num_views):
        az = phase + 2 * np.pi * (i + rng.uniform(-0.3, 0.3)) / num_views
        roll = np.radians(rng.normal(0.0, 1.5))
        if family == "indoor":
            ring = np.array([1.35, 1.0])
            eye = np.array([ring[0] * np.cos(az), ring[1] * np.sin(az), rng.uniform(1.35, 1.6)])
            yaw = az + rng.uniform(-np.radians(40), np.radians(40))
            pitch = rng.uniform(-np.radians(24), -np.radians(4))
            fwd = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
            poses.append(look_at(eye, eye + fwd, roll=roll))
            continue
        if family == "outdoor":
            radius = 4.0 * (1 + rng.uniform(-0.06, 0.06))
            # Elevation sweeps up and down twice around the orbit, like a handheld 360 capture.
            elev = np.radians(20 + 8 * np.sin(2 * az + 1.0) + rng.uniform(-3, 3))
            target = np.array([0.0, 0.0, 0.4]) + rng.normal(0, 0.08, 3)
        else:
            radius = 2.9 * (1 + rng.uniform(-0.06, 0.06))
            elev = np.radians(18 + 10 * np.sin(az + 0.5) + rng.uniform(-3, 3))
            target = np.array([0.0, 0.0, 0.55]) + rng.normal(0, 0.06, 3)
        eye = np.array([radius * np.cos(elev) * np.cos(az), radius * np.cos(elev) * np.sin(az),
                        0.4 + radius * np.sin(elev)])
        poses.append(look_at(eye, target, roll=roll))
    return poses
