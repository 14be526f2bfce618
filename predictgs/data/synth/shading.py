"""Rendering the ground-truth images: shading of ray hits and anti-aliased views.

Shading is view-independent, so no method gains from modelling view-dependent colour better than another:
Lambertian sun or point light with hard shadows (shadow rays through the same exact ray caster), plus a
hemispheric ambient term and optional aerial haze; backdrops are unshaded. Each pixel averages
``supersample``^2 stratified, jittered rays, and the materials filter their detail by the pixel footprint,
so the images are anti-aliased.
"""

from __future__ import annotations

import numpy as np

from predictgs.data.cameras import Camera
from predictgs.data.synth.materials import Surface
from predictgs.data.synth.raycast import camera_rays
from predictgs.data.synth.scenes import SynthScene
from predictgs.data.synth.texture import mix

# Rays per rendering chunk: bounds memory for large images or supersampling.
RAYS_PER_CHUNK = 1 << 17


def shade(scene: SynthScene, origin: np.ndarray, dirs: np.ndarray, pixel_angle: float) -> np.ndarray:
    """Colour (N, 3) seen along unit rays from one origin. ``pixel_angle`` is the angle one pixel subtends
    (1 / fx), which sets the texture footprint."""
    rs = scene.raycaster
    t, idx = rs.intersect(origin, dirs)
    n_rays = len(dirs)
    out = np.zeros((n_rays, 3))
    hit = idx >= 0
    if not np.any(hit):
        return out
    t_h, i_h, d_h = t[hit], idx[hit], dirs[hit]
    p = origin + t_h[:, None] * d_h
    n = rs.normals(i_h, p, d_h)
    cos_view = np.abs(np.einsum("ij,ij->i", n, d_h))
    footprint = t_h * pixel_angle / np.maximum(cos_view, 0.2)
    albedo = np.zeros((len(t_h), 3))
    emissive = np.zeros(len(t_h), dtype=bool)
    for k in np.unique(i_h):
        sel = i_h == k
        prim = rs.primitives[k]
        mat = scene.materials[prim.material]
        pl = prim.to_local(p[sel])
        nl = prim.local_normal(pl)
        albedo[sel] = mat.color(Surface(pl, nl, p[sel], footprint[sel], scene.noise))
        emissive[sel] = mat.emissive
    lit = ~emissive
    L = scene.lighting
    color = albedo.copy()
    if np.any(lit):
        nl_, pl_ = n[lit], p[lit]
        up = nl_[:, 2:3]
        light = np.asarray(L.sky) * (0.5 + 0.5 * up) + np.asarray(L.ground) * (0.5 - 0.5 * up)
        if L.sun_dir is not None:
            lam = np.clip(nl_ @ L.sun_dir, 0.0, None)
            vis = np.zeros(len(lam))
            front = lam > 0
            if np.any(front):
                o = pl_[front] + 1e-4 * nl_[front]
                vis[front] = ~rs.occluded(o, np.broadcast_to(L.sun_dir, o.shape), np.inf)
            light = light + np.asarray(L.sun) * (lam * vis)[:, None]
        if L.lamp_pos is not None:
            to_lamp = L.lamp_pos - pl_
            dist = np.linalg.norm(to_lamp, axis=1)
            to_lamp /= dist[:, None]
            lam = np.clip(np.einsum("ij,ij->i", nl_, to_lamp), 0.0, None)
            vis = np.zeros(len(lam))
            front = lam > 0
            if np.any(front):
                o = pl_[front] + 1e-4 * nl_[front]
                vis[front] = ~rs.occluded(o, to_lamp[front], dist[front] - 1e-3)
            # Soft inverse-square falloff; x2 so that ``lamp`` is the irradiance at ``lamp_range`` (atten = 1/2).
            atten = 1.0 / (1.0 + (dist / L.lamp_range) ** 2)
            light = light + np.asarray(L.lamp) * (lam * vis * atten * 2.0)[:, None]
        c = albedo[lit] * light
        if L.haze is not None:
            fog = 1.0 - np.exp(-np.maximum(t_h[lit] - L.haze_start, 0.0) / L.haze_length)
            c = mix(c, L.haze, fog)
        color[lit] = c
    out[hit] = color
    return out


def render_view(scene: SynthScene, camera: Camera, supersample: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased float image (H, W, 3): each pixel averages supersample^2 stratified, jittered rays."""
    W, H, s = camera.width, camera.height, supersample
    grid = (np.arange(s) + 0.5) / s
    if s > 1:
        jitter = rng.uniform(-0.5, 0.5, size=(H, W, s * s, 2)) / s
    else:
        jitter = np.zeros((H, W, 1, 2))
    sub_x = np.tile(grid, s)
    sub_y = np.repeat(grid, s)
    u = (np.arange(W)[None, :, None] + sub_x[None, None, :] + jitter[..., 0]).reshape(-1)
    v = (np.arange(H)[:, None, None] + sub_y[None, None, :] + jitter[..., 1]).reshape(-1)
    colors = np.empty((len(u), 3))
    for start in range(0, len(u), RAYS_PER_CHUNK):
        sl = slice(start, start + RAYS_PER_CHUNK)
        origin, dirs = camera_rays(camera.R, camera.t, camera.fx, camera.fy, camera.cx, camera.cy, u[sl], v[sl])
        colors[sl] = shade(scene, origin, dirs, 1.0 / camera.fx)
    return colors.reshape(H, W, s * s, 3).mean(axis=2)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
