"""Analytic ray casting against exact primitives, vectorised over all rays of a view (numpy).

Used by :mod:`predictgs.data.synth` to render ground truth for the embedded benchmark. Geometry is exact
(quadrics, slabs, planes), so the images owe nothing to Gaussians and favour no splatting method.

Conventions: world z is up; a primitive stores its centre, its half sizes and a rotation whose columns are
its local axes in world coordinates, so ``p_local = (p_world - center) @ rot``. Ray directions are unit
vectors, so a hit distance ``t`` is a Euclidean distance. Cameras follow :mod:`predictgs.data.cameras`
(COLMAP/OpenCV: ``x_cam = R x_world + t``, x right, y down, z forward, pixel centres at i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Hits closer than this (world units) are ignored, so that a ray leaving a surface does not hit it again.
T_MIN = 1e-5

PRIMITIVE_KINDS = ("ellipsoid", "box", "cylinder", "plane", "disc")


@dataclass
class Primitive:
    """One exact surface.

    ``size`` holds: ellipsoid (and sphere) the three radii; box the three half extents; cylinder
    (radius, radius, half height) along local z, capped; plane nothing (the local z = 0 plane, infinite);
    disc (radius, _, _) in the local z = 0 plane.
    ``background`` marks an unshaded backdrop (sky dome): it casts no shadow and SfM does not triangulate it.
    """

    kind: str
    center: np.ndarray
    size: np.ndarray
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))
    material: int = 0
    background: bool = False
    name: str = ""

    def __post_init__(self):
        if self.kind not in PRIMITIVE_KINDS:
            raise ValueError(f"unknown primitive kind {self.kind!r}; expected one of {PRIMITIVE_KINDS}")
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.size = np.broadcast_to(np.asarray(self.size, dtype=np.float64), (3,)).copy()
        self.rot = np.asarray(self.rot, dtype=np.float64).reshape(3, 3)

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.center) @ self.rot

    def intersect(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Distance to the first hit beyond T_MIN for each ray, inf where the ray misses."""
        o = self.to_local(origins)
        d = dirs @ self.rot
        o = np.broadcast_to(o, d.shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.kind == "ellipsoid":
                return _hit_unit_sphere(o / self.size, d / self.size)
            if self.kind == "box":
                return _hit_box(o, d, self.size)
            if self.kind == "cylinder":
                return _hit_cylinder(o, d, self.size[0], self.size[2])
            t = -o[:, 2] / d[:, 2]
            ok = np.isfinite(t) & (t > T_MIN)
            if self.kind == "disc":
                x = o[:, 0] + t * d[:, 0]
                y = o[:, 1] + t * d[:, 1]
                ok &= x * x + y * y <= self.size[0] ** 2
            return np.where(ok, t, np.inf)

    def local_normal(self, pl: np.ndarray) -> np.ndarray:
        """Outward unit normal in local coordinates at local points ``pl`` lying on the surface."""
        if self.kind == "ellipsoid":
            n = pl / self.size**2
        elif self.kind == "box":
            q = np.abs(pl) / self.size
            axis = np.argmax(q, axis=1)
            n = np.zeros_like(pl)
            rows = np.arange(len(pl))
            n[rows, axis] = np.sign(pl[rows, axis])
        elif self.kind == "cylinder":
            radial = np.hypot(pl[:, 0], pl[:, 1]) / self.size[0]
            cap = np.abs(pl[:, 2]) / self.size[2] > radial
            n = np.where(cap[:, None],
                         np.stack([np.zeros(len(pl)), np.zeros(len(pl)), np.sign(pl[:, 2])], axis=1),
                         np.stack([pl[:, 0], pl[:, 1], np.zeros(len(pl))], axis=1))
        else:
            n = np.tile([0.0, 0.0, 1.0], (len(pl), 1))
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        return n / np.maximum(norm, 1e-12)


def _first_positive(t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Given entry/exit distances (t0 <= t1, NaN/inf for no hit) the first one beyond T_MIN."""
    t = np.where(t0 > T_MIN, t0, np.where(t1 > T_MIN, t1, np.inf))
    return np.where(np.isfinite(t), t, np.inf)


def _hit_unit_sphere(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    a = np.einsum("ij,ij->i", d, d)
    b = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    # Numerically stable pair of roots (no cancellation for the far dome seen from inside).
    q = -(b + np.copysign(root, b))
    r0, r1 = q / a, c / q
    t0, t1 = np.minimum(r0, r1), np.maximum(r0, r1)
    t = _first_positive(t0, t1)
    return np.where(disc >= 0.0, t, np.inf)


def _hit_box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    inv = 1.0 / d
    ta = (-half - o) * inv
    tb = (half - o) * inv
    lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
    # Column-wise max/min: much faster than reductions over a length-3 axis.
    t0 = np.maximum(np.maximum(lo[:, 0], lo[:, 1]), lo[:, 2])
    t1 = np.minimum(np.minimum(hi[:, 0], hi[:, 1]), hi[:, 2])
    return np.where(t1 >= t0, _first_positive(t0, t1), np.inf)


def _hit_cylinder(o: np.ndarray, d: np.ndarray, radius: float, half_h: float) -> np.ndarray:
    best = np.full(len(d), np.inf)
    # Side: (ox + t dx)^2 + (oy + t dy)^2 = r^2 with |z| <= h.
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - radius**2
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    for t in ((-b - root) / a, (-b + root) / a):
        z = o[:, 2] + t * d[:, 2]
        ok = (disc >= 0) & (t > T_MIN) & (np.abs(z) <= half_h)
        best = np.where(ok & (t < best), t, best)
    # Caps z = +-h with x^2 + y^2 <= r^2.
    for zc in (-half_h, half_h):
        t = (zc - o[:, 2]) / d[:, 2]
        x = o[:, 0] + t * d[:, 0]
        y = o[:, 1] + t * d[:, 1]
        ok = (t > T_MIN) & (x * x + y * y <= radius**2)
        best = np.where(ok & (t < best), t, best)
    return best


@dataclass
class RayScene:
    """A list of primitives with nearest-hit queries.

    Each bounded primitive is first tested against its bounding sphere, and only rays that may hit it
    (and could hit it closer than the best hit so far) get the exact test; primitives are visited from the
    largest to the smallest, so walls and ground prune most of the small furniture."""

    primitives: list[Primitive]

    def __post_init__(self):
        self._bounds = np.array([_bound_radius(p) for p in self.primitives])
        self._order = [int(k) for k in np.argsort(-self._bounds, kind="stable")]

    def intersect(self, origins: np.ndarray, dirs: np.ndarray, *, include_background: bool = True,
                  t_max=np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit per ray: distance (inf on a miss) and primitive index (-1 on a miss). Hits at or
        beyond ``t_max`` (scalar or per ray) may be left out."""
        dirs = np.asarray(dirs, dtype=np.float64)
        origins = np.asarray(origins, dtype=np.float64)
        per_ray_origin = origins.ndim == 2
        best_t = np.broadcast_to(np.asarray(t_max, dtype=np.float64), (len(dirs),)).copy()
        best_i = np.full(len(dirs), -1, dtype=np.int64)
        for k in self._order:
            prim = self.primitives[k]
            if prim.background and not include_background:
                continue
            radius = self._bounds[k]
            if np.isfinite(radius):
                oc = prim.center - origins
                if per_ray_origin:
                    tca = np.einsum("ij,ij->i", oc, dirs)
                    dist2 = np.einsum("ij,ij->i", oc, oc)
                else:
                    tca = dirs @ oc
                    dist2 = float(oc @ oc)
                cand = (dist2 - tca * tca <= radius * radius) & (tca + radius > 0.0) & (tca - radius < best_t)
                rows = np.flatnonzero(cand)
                if len(rows) == 0:
                    continue
                t = prim.intersect(origins[rows] if per_ray_origin else origins, dirs[rows])
                closer = t < best_t[rows]
                best_t[rows[closer]] = t[closer]
                best_i[rows[closer]] = k
            else:
                t = prim.intersect(origins, dirs)
                closer = t < best_t
                best_t[closer] = t[closer]
                best_i[closer] = k
        best_t[best_i < 0] = np.inf
        return best_t, best_i

    def occluded(self, origins: np.ndarray, dirs: np.ndarray, t_max) -> np.ndarray:
        """True where a non-background surface lies on the ray before ``t_max`` (shadow rays)."""
        _, idx = self.intersect(origins, dirs, include_background=False, t_max=t_max)
        return idx >= 0

    def normals(self, index: np.ndarray, points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """World unit normals at hit points, turned to face the incoming ray (surfaces are two-sided)."""
        n = np.zeros_like(points)
        for k in np.unique(index):
            if k < 0:
                continue
            sel = index == k
            prim = self.primitives[k]
            n[sel] = prim.local_normal(prim.to_local(points[sel])) @ prim.rot.T
        facing = np.einsum("ij,ij->i", n, dirs) > 0
        n[facing] *= -1.0
        return n


def _bound_radius(prim: Primitive) -> float:
    """Radius of a sphere around ``prim.center`` enclosing the primitive (inf for unbounded planes)."""
    if prim.kind == "ellipsoid":
        return float(np.max(prim.size))
    if prim.kind == "box":
        return float(np.linalg.norm(prim.size))
    if prim.kind == "cylinder":
        return float(np.hypot(prim.size[0], prim.size[2]))
    if prim.kind == "disc":
        return float(prim.size[0])
    return float("inf")


def look_at(eye, target, up=(0.0, 0.0, 1.0), roll: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) for a camera at ``eye`` looking at ``target`` (OpenCV axes), rolled by
    ``roll`` radians about its viewing axis."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    R = np.stack([right, down, forward])
    return R, -R @ eye


def camera_rays(R: np.ndarray, t: np.ndarray, fx: float, fy: float, cx: float, cy: float,
                u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin (3,) and unit world directions (N, 3) of the rays through pixel coordinates (u, v)."""
    d_cam = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=1)
    d = d_cam @ R  # R^T d_cam, row-wise
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return -R.T @ t, d
