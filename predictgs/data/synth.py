"""Embedded, procedurally generated benchmark scenes (no download needed).

Every method of the paper (Scaffold-GS, HAC, Predict-GS) can be trained and evaluated on these scenes on a
laptop CPU. Three families stand in for the paper's three real benchmarks:

``outdoor`` (Mip-NeRF 360-like)
    A group of a few textured primitives (marble sphere, brick block, striped column, ...) on a paved plaza
    inside a meadow, under a sky dome with clouds; cameras on a 360-degree orbit with jittered elevation and
    radius, all looking at the centre.
``indoor`` (Deep-Blending-like)
    A furnished room seen from inside (plank floor, painted/wallpapered/brick walls, sofa, table, shelf,
    lamp, rug, painting) lit by a ceiling point light; cameras on a ring inside the room looking outwards in
    varied directions, not at one point.
``object`` (Tanks-and-Temples-like)
    One large compound object (a small locomotive: boiler, cab, chimney, wheels, all richly textured) on a
    gravel ground, with a distant landscape backdrop; cameras on a closer orbit.

Ground truth comes from an exact analytic ray caster (:mod:`predictgs.data.raycast`), not from Gaussians, so
no splatting method is favoured. Shading is view-independent (Lambertian sun or point light with hard
shadows, plus a hemispheric ambient term); backdrops are unshaded. Textures are solid procedural textures
(gradient-noise octaves, stripes, checkers, bricks, planks, veins) that mix smooth regions with fine detail;
each octave or pattern is faded towards its mean once it is finer than about two pixels (a procedural
mip-map), and every pixel averages ``supersample``^2 jittered rays, so the images are anti-aliased and the
methods have a real rate/distortion trade-off to make.

Output (COLMAP text layout, one shared PINHOLE camera, horizontal FOV 65 degrees, principal point at the
image centre)::

    out_dir/images/view_000.png ...
    out_dir/sparse/0/cameras.txt, images.txt, points3D.txt
    out_dir/synth.json

Sparse points imitate SfM: random pixels of every view are cast into the scene, hits on the backdrop are
dropped (SfM does not triangulate the sky), textured pixels are preferred, and a hit is kept when it is seen
(in the image, unoccluded, not at a grazing angle) from at least two views. Its 2D observations in
``images.txt`` are the exact projections of the true surface point (what a keypoint detector measures); the
3D position written to ``points3D.txt`` carries isotropic Gaussian noise of standard deviation
``noise_sigma`` (recorded in synth.json), truncated at 3 sigma per axis, as triangulation would. The ERROR
column is the mean reprojection error (pixels) of the noisy point over its track, as COLMAP writes it.
Point colours are the rendered pixel colours, as SfM takes them from the images.

Determinism: all randomness comes from numpy Generators seeded with (family, seed, stream), so the same
arguments give byte-identical files on the same platform. The scene itself (geometry, materials, light)
depends only on (family, seed), not on image size or view count.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from predictgs.data.cameras import Camera, rotmat_to_qvec
from predictgs.data.raycast import Primitive, RayScene, camera_rays, look_at
from predictgs.errors import ConfigError

SYNTH_VERSION = "predictgs-synth-1"
FAMILIES = ("outdoor", "indoor", "object")
FOV_X_DEG = 65.0
MAX_IMAGE_SIDE = 4096
MAX_VIEWS = 2000
MAX_SUPERSAMPLE = 8
MAX_POINTS = 1_000_000
DEFAULT_NUM_POINTS = 3000
# Rays per rendering chunk: bounds memory for large images or supersampling.
RAYS_PER_CHUNK = 1 << 17

# Random streams, so that changing e.g. the view count does not change the scene layout.
_STREAM_SCENE, _STREAM_CAMERAS, _STREAM_JITTER, _STREAM_POINTS = 1, 2, 3, 4


def _rng(family: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([FAMILIES.index(family), seed, stream])


# ----------------------------------------------------------------------------------------------------
# Procedural texture toolkit
# ----------------------------------------------------------------------------------------------------

def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def mix(a, b, t):
    """Blend colours a -> b by weights t (N,); a and b are (3,) or (N, 3)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return a + (b - a) * np.asarray(t)[:, None]


def detail_weight(freq, footprint):
    """Weight of a pattern of spatial frequency ``freq`` (cycles per unit) seen with ``footprint`` (units
    per pixel): 1 while a cycle spans >= 4 pixels, 0 once it spans <= 2 (Nyquist), linear in between.
    Fading finer detail towards its mean is the procedural counterpart of a mip-map."""
    return np.clip(2.0 - 4.0 * freq * footprint, 0.0, 1.0)


def filtered_pulse(x, duty, width):
    """Box-filtered pulse train: 1 where frac(x) < duty, averaged over [x - width/2, x + width/2].
    x and width are in periods. Exact box filter via the integral floor(x) duty + min(frac(x), duty)."""
    width = np.maximum(width, 1e-6)

    def integral(y):
        fl = np.floor(y)
        return fl * duty + np.minimum(y - fl, duty)

    return np.clip((integral(x + 0.5 * width) - integral(x - 0.5 * width)) / width, 0.0, 1.0)


def hash01(*ints) -> np.ndarray:
    """Deterministic hash of integer arrays to [0, 1) (per brick / plank / tile variation)."""
    h = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for k, v in enumerate(ints):
            v = np.asarray(v).astype(np.int64).astype(np.uint64)
            h = h ^ (v * np.uint64(0xBF58476D1CE4E5B9 + 2 * k))
            h = (h ^ (h >> np.uint64(31))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(29))
    return (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def planar_uv(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D coordinates on the face a local normal points through (box faces, planes): the two axes not
    along the dominant normal component; the vertical coordinate comes second for side faces."""
    axis = np.argmax(np.abs(n), axis=1)
    u = np.where(axis == 0, p[:, 1], p[:, 0])
    v = np.where(axis == 2, p[:, 1], p[:, 2])
    return u, v


class GradientNoise:
    """3D Perlin gradient noise with a seeded permutation, and fractal sums of it (fBm)."""

    _GRADS = np.array([[1, 1, 0], [-1, 1, 0], [1, -1, 0], [-1, -1, 0], [1, 0, 1], [-1, 0, 1],
                       [1, 0, -1], [-1, 0, -1], [0, 1, 1], [0, -1, 1], [0, 1, -1], [0, -1, -1]],
                      dtype=np.float32)

    def __init__(self, rng: np.random.Generator, octaves: int = 8):
        perm = rng.permutation(256)
        self.perm = np.concatenate([perm, perm]).astype(np.int64)
        g = self._GRADS[np.arange(256) % 12]
        self.gx, self.gy, self.gz = g[:, 0].copy(), g[:, 1].copy(), g[:, 2].copy()
        # A random rotation and offset per octave hides the lattice (no axis-aligned artefacts).
        self.rotations = []
        for _ in range(octaves):
            q, r = np.linalg.qr(rng.normal(size=(3, 3)))
            q *= np.sign(np.diag(r))
            self.rotations.append(q.astype(np.float32))
        self.offsets = rng.uniform(0.0, 256.0, size=(octaves, 3)).astype(np.float32)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Noise in about [-1, 1] at points (N, 3); float32 inside for speed."""
        p = np.asarray(p, dtype=np.float32)
        fl = np.floor(p)
        f = p - fl
        i = fl.astype(np.int64) & 255
        x, y, z = f[:, 0], f[:, 1], f[:, 2]
        u, v, w = (c * c * c * (c * (c * 6.0 - 15.0) + 10.0) for c in (x, y, z))
        P = self.perm
        A = P[i[:, 0]] + i[:, 1]
        B = P[i[:, 0] + 1] + i[:, 1]
        AA, AB, BA, BB = P[A] + i[:, 2], P[A + 1] + i[:, 2], P[B] + i[:, 2], P[B + 1] + i[:, 2]

        def grad(h, dx, dy, dz):
            h = P[h]
            return self.gx[h] * dx + self.gy[h] * dy + self.gz[h] * dz

        x1, y1, z1 = x - 1.0, y - 1.0, z - 1.0
        lo = (grad(AA, x, y, z) * (1 - u) + grad(BA, x1, y, z) * u) * (1 - v) + \
             (grad(AB, x, y1, z) * (1 - u) + grad(BB, x1, y1, z) * u) * v
        hi = (grad(AA + 1, x, y, z1) * (1 - u) + grad(BA + 1, x1, y, z1) * u) * (1 - v) + \
             (grad(AB + 1, x, y1, z1) * (1 - u) + grad(BB + 1, x1, y1, z1) * u) * v
        return (lo * (1 - w) + hi * w).astype(np.float64)

    def fbm(self, p: np.ndarray, footprint: np.ndarray, freq: float, octaves: int,
            gain: float = 0.5, lacunarity: float = 2.03) -> np.ndarray:
        """Fractal sum normalised by its full amplitude; octaves finer than the footprint allows fade to 0
        (the noise mean), and noise is only evaluated where an octave is visible (most of the cost of
        distant surfaces is saved)."""
        total = np.zeros(len(p))
        norm = sum(gain**k for k in range(octaves))
        amp = 1.0
        for k in range(octaves):
            weight = detail_weight(freq, footprint)
            rows = np.flatnonzero(weight > 0)
            if len(rows) == len(p):
                rows = slice(None)
            elif len(rows) == 0:
                break  # finer octaves are invisible too
            q = (p[rows] * freq) @ self.rotations[k % len(self.rotations)] + self.offsets[k % len(self.offsets)]
            total[rows] += amp * weight[rows] * self(q)
            amp *= gain
            freq *= lacunarity
        return total / norm


# ----------------------------------------------------------------------------------------------------
# Materials: albedo (or emitted colour for backdrops) as a function of the local surface point
# ----------------------------------------------------------------------------------------------------

@dataclass
class Surface:
    """What a material sees of a batch of hits."""

    p: np.ndarray        # (N, 3) local position (textures are attached to their primitive)
    n: np.ndarray        # (N, 3) local outward normal
    pw: np.ndarray       # (N, 3) world position
    footprint: np.ndarray  # (N,) world units covered by one pixel at the hit (grown at grazing angles)
    noise: GradientNoise


class Material:
    emissive = False

    def color(self, s: Surface) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Paint(Material):
    """Smooth painted plaster: a large smooth region with faint low-frequency blotches and fine grain."""

    base: tuple
    blotch: float = 0.08
    grain: float = 0.025

    def color(self, s):
        low = s.noise.fbm(s.p, s.footprint, 0.7, 3)
        fine = s.noise.fbm(s.p + 17.0, s.footprint, 28.0, 2)
        return np.asarray(self.base) * (1.0 + self.blotch * 2.0 * low + self.grain * 2.0 * fine)[:, None]


@dataclass
class Marble(Material):
    """Veined stone: turbulent sine veins (mid/high frequency) over a smooth base."""

    base: tuple
    vein: tuple
    freq: float = 5.0

    def color(self, s):
        turb = s.noise.fbm(s.p, s.footprint, 1.2, 5)
        phase = self.freq * (s.p[:, 0] + 0.6 * s.p[:, 2]) + 7.0 * turb
        w = detail_weight(self.freq * 2.0, s.footprint)
        vein = (0.5 + 0.5 * np.sin(phase)) ** 4 * w + 0.27 * (1.0 - w)  # 0.27 ~ mean of sin^4 veins
        speck = s.noise.fbm(s.p + 5.0, s.footprint, 40.0, 2)
        return mix(self.base, self.vein, np.clip(vein, 0, 1)) * (1.0 + 0.08 * speck)[:, None]


@dataclass
class Brick(Material):
    """Running-bond bricks with per-brick tint, grain and filtered mortar lines."""

    brick: tuple
    brick_alt: tuple
    mortar: tuple
    width: float = 0.22
    height: float = 0.075
    joint: float = 0.012

    def color(self, s):
        u, v = planar_uv(s.p, s.n)
        fp = s.footprint
        row_f = v / self.height
        row = np.floor(row_f)
        col_f = u / self.width + 0.5 * (row % 2)
        col = np.floor(col_f)
        tint = hash01(row, col)
        tint = tint * detail_weight(0.5 / self.height, fp) + 0.5 * (1 - detail_weight(0.5 / self.height, fp))
        base = mix(self.brick, self.brick_alt, tint)
        grain = s.noise.fbm(s.p, fp, 30.0, 3)
        base = base * (1.0 + 0.18 * grain)[:, None]
        m_u = filtered_pulse(col_f, self.joint / self.width, fp / self.width)
        m_v = filtered_pulse(row_f, self.joint / self.height, fp / self.height)
        m = 1.0 - (1.0 - m_u) * (1.0 - m_v)
        return mix(base, self.mortar, m)


@dataclass
class Wood(Material):
    """Wood with growth rings around local axis ``axis`` and fine grain along it."""

    light: tuple
    dark: tuple
    axis: int = 0
    ring_freq: float = 9.0

    def color(self, s):
        a = self.axis
        others = [k for k in range(3) if k != a]
        r = np.hypot(s.p[:, others[0]] + 3.1, s.p[:, others[1]] - 1.7)
        r = r + 0.12 * s.noise.fbm(s.p, s.footprint, 1.5, 3)
        ring = 0.5 + 0.5 * np.cos(2 * np.pi * self.ring_freq * r)
        w = detail_weight(self.ring_freq, s.footprint)
        ring = ring**3 * w + 0.3 * (1 - w)
        stretch = np.ones(3)
        stretch[a] = 0.08
        grain = s.noise.fbm(s.p * stretch, s.footprint, 45.0, 2)
        return mix(self.light, self.dark, np.clip(ring + 0.35 * grain, 0, 1))


@dataclass
class Planks(Material):
    """Floor boards along local x: per-board tint and offset, grain streaks, dark gaps."""

    light: tuple
    dark: tuple
    gap: tuple
    board_width: float = 0.16
    board_length: float = 1.3

    def color(self, s):
        x, y, fp = s.p[:, 0], s.p[:, 1], s.footprint
        row_f = y / self.board_width
        row = np.floor(row_f)
        xs = x + hash01(row, 7) * self.board_length
        col_f = xs / self.board_length
        col = np.floor(col_f)
        tint = hash01(row, col)
        base = mix(self.light, self.dark, 0.25 + 0.5 * tint)
        streak_p = np.stack([xs * 0.5, y * 14.0, row * 3.7 + col * 1.3], axis=1)
        streak = s.noise.fbm(streak_p, fp * 14.0, 1.0, 4)
        base = mix(base, self.dark, np.clip(0.5 + 1.2 * streak, 0, 1) * 0.6)
        g_v = filtered_pulse(row_f, 0.05, fp / self.board_width)
        g_u = filtered_pulse(col_f, 0.006, fp / self.board_length)
        return mix(base, self.gap, 1.0 - (1.0 - g_u) * (1.0 - g_v))


@dataclass
class Tiles(Material):
    """Checkerboard tiles with grout; tile colours vary slightly."""

    a: tuple
    b: tuple
    grout: tuple
    size: float = 0.25
    grout_width: float = 0.012

    def color(self, s):
        u, v = planar_uv(s.p, s.n)
        fp = s.footprint / self.size
        cu, cv = u / self.size, v / self.size
        sx = 1.0 - 2.0 * filtered_pulse(cu, 0.5, fp)
        sy = 1.0 - 2.0 * filtered_pulse(cv, 0.5, fp)
        check = 0.5 - 0.5 * sx * sy
        base = mix(self.a, self.b, check)
        var = hash01(np.floor(cu), np.floor(cv)) - 0.5
        var = var * detail_weight(0.5 / self.size, s.footprint)
        base = base * (1.0 + 0.12 * var + 0.1 * s.noise.fbm(s.p, s.footprint, 6.0, 4))[:, None]
        g = 1.0 - (1.0 - filtered_pulse(cu, self.grout_width / self.size, fp)) * \
            (1.0 - filtered_pulse(cv, self.grout_width / self.size, fp))
        return mix(base, self.grout, g)


@dataclass
class Stripes(Material):
    """Fabric / wallpaper: broad stripes, thin pinstripes and a fine weave along local axis ``axis``."""

    a: tuple
    b: tuple
    pin: tuple
    period: float = 0.2
    axis: int = 0

    def color(self, s):
        x = s.p[:, self.axis] / self.period
        fp = s.footprint / self.period
        broad = filtered_pulse(x, 0.5, fp)
        base = mix(self.a, self.b, broad)
        pins = filtered_pulse(x * 4.0 + 0.3, 0.12, fp * 4.0)
        base = mix(base, self.pin, 0.8 * pins)
        weave = s.noise.fbm(s.p, s.footprint, 60.0, 2)
        return base * (1.0 + 0.12 * weave + 0.05 * s.noise.fbm(s.p, s.footprint, 1.0, 2))[:, None]


@dataclass
class Dots(Material):
    """Polka dots on a painted background, laid out per face (planar coordinates)."""

    base: tuple
    dot: tuple
    period: float = 0.12
    radius_frac: float = 0.3

    def color(self, s):
        u, v = planar_uv(s.p, s.n)
        a, b = u / self.period, v / self.period
        d = np.hypot(a - np.floor(a) - 0.5, b - np.floor(b) - 0.5) * self.period
        r = self.radius_frac * self.period
        edge = np.maximum(s.footprint, 1e-5) * 0.6
        inside = smoothstep(r + edge, r - edge, d)
        # Dots finer than the pixel grid fade to their area coverage.
        w = detail_weight(1.0 / self.period, s.footprint)
        cover = inside * w + math.pi * self.radius_frac**2 * (1 - w)
        base = np.asarray(self.base) * (1.0 + 0.1 * s.noise.fbm(s.p, s.footprint, 3.0, 3))[:, None]
        return mix(base, self.dot, cover)


@dataclass
class PaintedMetal(Material):
    """Painted metal with a decorative band pattern, rust/dirt patches and scratches."""

    paint: tuple
    rust: tuple
    band: tuple | None = None
    band_period: float = 0.3
    band_axis: int = 2

    def color(self, s):
        fp = s.footprint
        base = np.broadcast_to(np.asarray(self.paint, dtype=np.float64), (len(fp), 3))
        if self.band is not None:
            x = s.p[:, self.band_axis] / self.band_period
            band = filtered_pulse(x, 0.12, fp / self.band_period)
            base = mix(base, self.band, band)
        dirt = s.noise.fbm(s.p, fp, 2.5, 5)
        rust = smoothstep(0.08, 0.3, dirt)
        base = mix(base, self.rust, 0.85 * rust)
        scratch = s.noise.fbm(s.p * np.array([1.0, 1.0, 0.1]), fp, 35.0, 2)
        return base * (1.0 + 0.15 * scratch + 0.06 * s.noise.fbm(s.p, fp, 0.8, 2))[:, None]


@dataclass
class Wheel(Material):
    """Cylinder wheel along local z: spoked faces, dark tread."""

    spokes: tuple
    hub: tuple
    tread: tuple
    radius: float
    count: int = 8

    def color(self, s):
        r = np.hypot(s.p[:, 0], s.p[:, 1])
        ang = (np.arctan2(s.p[:, 1], s.p[:, 0]) / (2 * np.pi) + 0.5) * self.count
        arc = np.maximum(2 * np.pi * np.maximum(r, 0.2 * self.radius) / self.count, 1e-4)
        spoke = filtered_pulse(ang, 0.28, s.footprint / arc)
        face = mix(self.hub, self.spokes, spoke * smoothstep(0.2, 0.3, r / self.radius))
        rim = smoothstep(0.8, 0.86, r / self.radius)
        face = mix(face, self.tread, rim)
        side = np.abs(s.n[:, 2]) < 0.5
        out = np.where(side[:, None], np.asarray(self.tread, dtype=np.float64), face)
        return out * (1.0 + 0.1 * s.noise.fbm(s.p, s.footprint, 20.0, 2))[:, None]


@dataclass
class Terrain(Material):
    """Ground: grass/earth meadow from large-scale noise, fine grain, and optionally a paved disc of tiles
    (radius ``plaza``) whose ragged border is noise-driven."""

    grass: tuple
    earth: tuple
    tiles: Tiles | None = None
    plaza: float = 0.0

    def color(self, s):
        fp = s.footprint
        patch = s.noise.fbm(s.pw * np.array([1.0, 1.0, 0.0]), fp, 0.15, 4)
        base = mix(self.grass, self.earth, smoothstep(-0.1, 0.25, patch))
        # Clumps and grain from a few cycles per unit down to the pixel limit.
        fine = s.noise.fbm(s.pw + 11.0, fp, 3.0, 6, gain=0.65)
        base = base * (1.0 + 0.45 * fine)[:, None]
        if self.tiles is not None and self.plaza > 0:
            r = np.hypot(s.pw[:, 0], s.pw[:, 1])
            near = np.flatnonzero(r < self.plaza + 0.3)  # the ragged border stays within +-0.25
            r[near] += 0.25 * s.noise.fbm(s.pw[near] + 3.0, fp[near], 1.5, 3)
            inside = smoothstep(self.plaza + 0.05, self.plaza - 0.05, r)
            sel = inside > 0
            if np.any(sel):
                sub = Surface(s.p[sel], s.n[sel], s.pw[sel], fp[sel], s.noise)
                base[sel] = mix(base[sel], self.tiles.color(sub), inside[sel])
        return base


@dataclass
class Gravel(Material):
    """Gravel / asphalt: mid grey with strong high-frequency speckle and large faint stains."""

    base: tuple
    stain: tuple

    def color(self, s):
        fp = s.footprint
        stain = smoothstep(-0.05, 0.3, s.noise.fbm(s.pw, fp, 0.35, 3))
        col = mix(self.base, self.stain, 0.7 * stain)
        # Starts at a few cycles per unit: seen from the orbit a pixel covers ~0.05-0.1 units of ground.
        speck = s.noise.fbm(s.pw + 9.0, fp, 2.5, 6, gain=0.7)
        return col * (1.0 + 0.55 * speck)[:, None]


@dataclass
class Painting(Material):
    """An abstract painting: domain-warped noise mapped onto a palette, within a thin wooden frame."""

    palette: tuple
    frame: tuple
    half_w: float
    half_h: float

    def color(self, s):
        u, v = planar_uv(s.p, s.n)
        fp = s.footprint
        warp = s.noise.fbm(s.p * 1.0 + 40.0, fp, 2.0, 3)
        t = 0.5 + 1.4 * s.noise.fbm(s.p + 2.0 * warp[:, None], fp, 3.0, 5)
        pal = np.asarray(self.palette, dtype=np.float64)
        t = np.clip(t, 0, 1) * (len(pal) - 1)
        k = np.minimum(np.floor(t).astype(int), len(pal) - 2)
        col = pal[k] + (pal[k + 1] - pal[k]) * (t - k)[:, None]
        border = np.minimum(self.half_w - np.abs(u), self.half_h - np.abs(v))
        frame = smoothstep(0.05 + fp, 0.05 - fp, border)
        front = np.abs(s.n[:, 2]) > 0.5
        frame = np.where(front, frame, 1.0)
        return mix(col, self.frame, frame)


@dataclass
class Sky(Material):
    """Unshaded sky dome: horizon-to-zenith gradient, clouds on a virtual flat layer, distant haze below the
    horizon; optionally a landscape band (mountain ridge and tree line) for the object family."""

    horizon: tuple
    zenith: tuple
    ground_haze: tuple
    radius: float
    cloudiness: float = 0.0
    landscape: bool = False
    mountain: tuple = (0.45, 0.5, 0.58)
    trees: tuple = (0.18, 0.26, 0.15)
    emissive = True

    def color(self, s):
        d = s.pw / self.radius
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        elev = d[:, 2]
        fp_dir = s.footprint / self.radius
        col = mix(self.horizon, self.zenith, np.clip(elev, 0, 1) ** 0.6)
        # Clouds on a flat layer: points spread out towards the horizon, like real perspective.
        h = np.maximum(elev, 0.0) + 0.12
        q = np.stack([d[:, 0] / h, d[:, 1] / h, np.zeros_like(h)], axis=1)
        cloud = s.noise.fbm(q, fp_dir / h**2, 0.6, 6, gain=0.55)
        cover = smoothstep(0.28 - 0.3 * self.cloudiness, 0.55 - 0.2 * self.cloudiness, cloud + 0.2)
        cover *= smoothstep(0.0, 0.1, elev)
        shade = 0.88 + 0.12 * np.clip(s.noise.fbm(q + 13.0, fp_dir / h**2, 1.2, 3) * 2 + 0.5, 0, 1)
        col = mix(col, np.array([0.95, 0.95, 0.96]) * shade[:, None], 0.9 * cover)
        if self.landscape:
            az = np.arctan2(d[:, 1], d[:, 0])
            ring = np.stack([np.cos(az), np.sin(az), np.zeros_like(az)], axis=1)
            ridge = 0.05 + 0.09 * (0.5 + s.noise.fbm(ring * 1.0 + 50.0, fp_dir, 1.2, 5, gain=0.55))
            rock = s.noise.fbm(d * 6.0 + 60.0, fp_dir * 6.0, 4.0, 4)
            mountain = np.asarray(self.mountain) * (1.0 + 0.25 * rock)[:, None]
            snow = smoothstep(-0.01, 0.0, elev - ridge + 0.02 + 0.03 * rock)
            mountain = mix(mountain, np.array([0.86, 0.88, 0.9]), 0.7 * snow)
            col = mix(col, mountain, smoothstep(ridge + fp_dir, ridge - fp_dir, elev))
            tree_line = 0.012 + 0.03 * (0.5 + s.noise.fbm(ring * 3.0 + 70.0, fp_dir, 4.0, 5, gain=0.6))
            forest = np.asarray(self.trees) * (1.0 + 0.3 * s.noise.fbm(d * 40.0, fp_dir * 40.0, 1.0, 3))[:, None]
            col = mix(col, forest, smoothstep(tree_line + fp_dir, tree_line - fp_dir, elev))
        below = smoothstep(0.0, -0.03, elev)
        return mix(col, self.ground_haze, below)


# ----------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------

@dataclass
class Lighting:
    sky: tuple                      # hemispheric ambient from above
    ground: tuple                   # hemispheric ambient from below
    sun_dir: np.ndarray | None = None   # unit vector towards the sun
    sun: tuple = (0.0, 0.0, 0.0)
    lamp_pos: np.ndarray | None = None
    lamp: tuple = (0.0, 0.0, 0.0)
    lamp_range: float = 3.0         # distance at which the lamp falls to half
    haze: tuple | None = None       # aerial perspective colour
    haze_start: float = 0.0
    haze_length: float = 1.0


@dataclass
class SynthScene:
    family: str
    raycaster: RayScene
    materials: list
    lighting: Lighting
    noise: GradientNoise
    # Where sparse points may lie (distance from the origin in the ground plane): SfM keeps nearby structure.
    point_radius: float
    noise_sigma: float
    description: list = field(default_factory=list)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Local z of a cylinder along world x / world y.
_ALONG_X = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
_ALONG_Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _jitter_color(rng, c, amount=0.06):
    return tuple(float(x) for x in np.clip(np.asarray(c) * (1 + rng.uniform(-amount, amount, 3)), 0.03, 0.92))


class _Builder:
    def __init__(self):
        self.prims: list[Primitive] = []
        self.materials: list = []

    def add(self, kind, center, size, material, rot=None, background=False, name=""):
        self.materials.append(material)
        self.prims.append(Primitive(kind, center, size, np.eye(3) if rot is None else rot,
                                    material=len(self.materials) - 1, background=background, name=name))


def _place_on_ring(rng, n, r_lo, r_hi, radii, tries=200):
    """Non-overlapping footprints (x, y) of ``n`` objects with bounding radii ``radii`` around the origin."""
    placed: list[tuple[float, float, float]] = []
    base = rng.uniform(0, 2 * np.pi)
    for k in range(n):
        for _ in range(tries):
            ang = base + 2 * np.pi * k / n + rng.uniform(-0.4, 0.4)
            r = rng.uniform(r_lo, r_hi)
            x, y = r * np.cos(ang), r * np.sin(ang)
            if all(np.hypot(x - px, y - py) > radii[k] + pr + 0.08 for px, py, pr in placed):
                break
        placed.append((x, y, radii[k]))
    return [(x, y) for x, y, _ in placed]


def build_outdoor(rng: np.random.Generator) -> SynthScene:
    b = _Builder()
    noise = GradientNoise(rng)
    dome_r = 60.0
    horizon = _jitter_color(rng, (0.78, 0.84, 0.9), 0.03)
    sky = Sky(horizon, _jitter_color(rng, (0.32, 0.5, 0.8), 0.05), (0.55, 0.6, 0.55), dome_r,
              cloudiness=float(rng.uniform(0.2, 0.7)))
    b.add("ellipsoid", (0, 0, 0), dome_r, sky, background=True, name="sky dome")
    tiles = Tiles(_jitter_color(rng, (0.62, 0.58, 0.52)), _jitter_color(rng, (0.42, 0.4, 0.38)),
                  (0.3, 0.29, 0.27), size=float(rng.uniform(0.18, 0.26)))
    b.add("disc", (0, 0, 0), dome_r * 0.95,
          Terrain(_jitter_color(rng, (0.3, 0.45, 0.18)), _jitter_color(rng, (0.45, 0.37, 0.25)),
                  tiles=tiles, plaza=float(rng.uniform(1.5, 1.9))), name="ground")
    # Central group: four objects on a ring, plus a ball resting on the block.
    radii = [0.6, 0.55, 0.35, 0.45]
    spots = _place_on_ring(rng, 4, 0.55, 1.0, radii)
    r_ball = float(rng.uniform(0.42, 0.55))
    b.add("ellipsoid", (*spots[0], r_ball), r_ball,
          Marble(_jitter_color(rng, (0.85, 0.82, 0.78)), _jitter_color(rng, (0.3, 0.3, 0.35)),
                 freq=float(rng.uniform(3.5, 6.0))), name="marble sphere")
    half = np.array([rng.uniform(0.28, 0.38), rng.uniform(0.28, 0.38), rng.uniform(0.3, 0.45)])
    b.add("box", (*spots[1], half[2]), half,
          Brick(_jitter_color(rng, (0.62, 0.3, 0.22)), _jitter_color(rng, (0.5, 0.25, 0.2)), (0.75, 0.72, 0.66)),
          rot=_rot_z(rng.uniform(0, np.pi)), name="brick block")
    r_top = float(rng.uniform(0.14, 0.2))
    b.add("ellipsoid", (*spots[1], 2 * half[2] + r_top), r_top,
          Dots(_jitter_color(rng, (0.2, 0.35, 0.6)), (0.9, 0.85, 0.45), period=0.09),
          rot=_rot_z(rng.uniform(0, np.pi)), name="dotted ball")
    r_col, h_col = float(rng.uniform(0.18, 0.25)), float(rng.uniform(0.45, 0.65))
    b.add("cylinder", (*spots[2], h_col), (r_col, r_col, h_col),
          Stripes(_jitter_color(rng, (0.85, 0.8, 0.7)), _jitter_color(rng, (0.2, 0.45, 0.4)), (0.7, 0.2, 0.15),
                  period=float(rng.uniform(0.15, 0.25)), axis=2), name="striped column")
    ax = np.array([rng.uniform(0.3, 0.45), rng.uniform(0.2, 0.3), rng.uniform(0.18, 0.25)])
    b.add("ellipsoid", (*spots[3], ax[2] * 0.9), ax,
          Wood(_jitter_color(rng, (0.72, 0.55, 0.35)), _jitter_color(rng, (0.4, 0.26, 0.14)), axis=0),
          rot=_rot_z(rng.uniform(0, np.pi)), name="wooden egg")
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(35), np.radians(55))
    light = Lighting(sky=(0.33, 0.37, 0.44), ground=(0.16, 0.16, 0.12),
                     sun_dir=np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)]),
                     sun=(0.78, 0.74, 0.66), haze=horizon, haze_start=8.0, haze_length=45.0)
    return SynthScene("outdoor", RayScene(b.prims), b.materials, light, noise,
                      point_radius=9.0, noise_sigma=0.004, description=[p.name for p in b.prims])


def build_indoor(rng: np.random.Generator) -> SynthScene:
    b = _Builder()
    noise = GradientNoise(rng)
    hx, hy, hz = rng.uniform(3.6, 4.2), rng.uniform(2.8, 3.2), rng.uniform(1.3, 1.45)
    up = np.array([0.0, 0.0, 1.0])
    # Room: six inward-facing infinite planes; from inside, the first plane a ray meets is the box face.
    b.add("plane", (0, 0, 0), 0, Planks(_jitter_color(rng, (0.7, 0.52, 0.33)), _jitter_color(rng, (0.42, 0.28, 0.16)),
                                         (0.15, 0.1, 0.07)), name="floor")
    b.add("plane", (0, 0, 2 * hz), 0, Paint(_jitter_color(rng, (0.86, 0.85, 0.82), 0.02), blotch=0.04),
          rot=np.diag([1.0, -1.0, -1.0]), name="ceiling")
    wall_mats = [
        Paint(_jitter_color(rng, (0.72, 0.66, 0.55))),
        Stripes(_jitter_color(rng, (0.75, 0.72, 0.62)), _jitter_color(rng, (0.6, 0.66, 0.64)), (0.55, 0.35, 0.3),
                period=0.3, axis=0),
        Brick(_jitter_color(rng, (0.6, 0.33, 0.25)), _jitter_color(rng, (0.5, 0.28, 0.22)), (0.78, 0.75, 0.7)),
        Paint(_jitter_color(rng, (0.55, 0.64, 0.7))),
    ]
    order = rng.permutation(4)
    walls = [((-hx, 0, hz), (1.0, 0, 0)), ((hx, 0, hz), (-1.0, 0, 0)),
             ((0, -hy, hz), (0, 1.0, 0)), ((0, hy, hz), (0, -1.0, 0))]
    for k, (c, nrm) in enumerate(walls):
        n = np.array(nrm)
        u = np.cross(up, n)
        b.add("plane", c, 0, wall_mats[order[k]], rot=np.stack([u, up, n], axis=1), name=f"wall {k}")
    wood = Wood(_jitter_color(rng, (0.66, 0.48, 0.3)), _jitter_color(rng, (0.36, 0.22, 0.12)), axis=0, ring_freq=12)
    # Sofa against the -y wall.
    sx = rng.uniform(-1.2, 1.2)
    fabric = Stripes(_jitter_color(rng, (0.35, 0.42, 0.55)), _jitter_color(rng, (0.28, 0.33, 0.45)), (0.8, 0.78, 0.7),
                     period=0.12, axis=0)
    y0 = -hy + 0.42
    b.add("box", (sx, y0, 0.22), (0.95, 0.38, 0.22), fabric, name="sofa seat")
    b.add("box", (sx, -hy + 0.1, 0.5), (0.95, 0.09, 0.5), fabric, name="sofa back")
    for side in (-1, 1):
        b.add("box", (sx + side * 0.97, y0 - 0.02, 0.34), (0.1, 0.4, 0.34), fabric, name="sofa arm")
    b.add("box", (sx, y0 + 0.95, 0.004), (1.0, 0.6, 0.004),
          Tiles(_jitter_color(rng, (0.7, 0.3, 0.25)), _jitter_color(rng, (0.85, 0.75, 0.55)), (0.3, 0.2, 0.15),
                size=0.15, grout_width=0.02), name="rug")
    # Table with a marble vase in the +y, -x corner region.
    tx, ty = -hx + rng.uniform(1.0, 1.4), hy - rng.uniform(0.9, 1.2)
    b.add("box", (tx, ty, 0.74), (0.6, 0.4, 0.03), wood, name="table top")
    for dx in (-0.52, 0.52):
        for dy in (-0.32, 0.32):
            b.add("cylinder", (tx + dx, ty + dy, 0.355), (0.035, 0.035, 0.355), wood, name="table leg")
    b.add("ellipsoid", (tx + 0.15, ty, 0.77 + 0.16), (0.11, 0.11, 0.16),
          Marble(_jitter_color(rng, (0.9, 0.88, 0.85)), (0.25, 0.3, 0.45), freq=8.0), name="vase")
    # Shelf against the +x wall.
    shy = rng.uniform(-1.5, 1.0)
    b.add("box", (hx - 0.22, shy, 0.95), (0.2, 0.45, 0.95),
          Dots(_jitter_color(rng, (0.3, 0.45, 0.38)), (0.85, 0.8, 0.6), period=0.1), name="cabinet")
    # Floor lamp in the (+x, +y) corner.
    lx, ly = hx - 0.55, hy - 0.55
    b.add("cylinder", (lx, ly, 0.8), (0.025, 0.025, 0.8), PaintedMetal((0.2, 0.2, 0.22), (0.35, 0.25, 0.18)),
          name="lamp pole")
    b.add("cylinder", (lx, ly, 1.7), (0.22, 0.22, 0.15),
          Stripes((0.9, 0.85, 0.7), (0.85, 0.75, 0.55), (0.6, 0.4, 0.3), period=0.05, axis=2), name="lamp shade")
    # Painting on the +y wall.
    paint_w, paint_h = 0.6, 0.4
    px = rng.uniform(0.0, 1.5)
    paint_rot = np.stack([np.array([1.0, 0, 0]), np.array([0, 0, 1.0]), np.array([0, -1.0, 0])], axis=1)
    palette = tuple(_jitter_color(rng, c, 0.1) for c in
                    [(0.15, 0.2, 0.4), (0.2, 0.5, 0.6), (0.9, 0.8, 0.5), (0.8, 0.35, 0.2), (0.3, 0.15, 0.2)])
    b.add("box", (px, hy - 0.02, 1.5), (paint_w, paint_h, 0.02), Painting(palette, (0.35, 0.25, 0.12), paint_w, paint_h),
          rot=paint_rot, name="painting")
    lamp = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.4, 0.4), 2 * hz - 0.35])
    light = Lighting(sky=(0.33, 0.32, 0.3), ground=(0.18, 0.15, 0.12), lamp_pos=lamp, lamp=(0.92, 0.85, 0.72),
                     lamp_range=3.2)
    return SynthScene("indoor", RayScene(b.prims), b.materials, light, noise,
                      point_radius=12.0, noise_sigma=0.003, description=[p.name for p in b.prims])


def build_object(rng: np.random.Generator) -> SynthScene:
    b = _Builder()
    noise = GradientNoise(rng)
    dome_r = 40.0
    horizon = _jitter_color(rng, (0.8, 0.84, 0.86), 0.03)
    b.add("ellipsoid", (0, 0, 0), dome_r,
          Sky(horizon, _jitter_color(rng, (0.42, 0.56, 0.76)), (0.5, 0.5, 0.45), dome_r,
              cloudiness=float(rng.uniform(0.0, 0.4)), landscape=True), background=True, name="landscape dome")
    b.add("disc", (0, 0, 0), dome_r * 0.95, Gravel(_jitter_color(rng, (0.5, 0.48, 0.44)),
                                                     _jitter_color(rng, (0.38, 0.36, 0.3))), name="ground")
    # A small locomotive, built along its local x axis then turned by a random yaw.
    yaw = _rot_z(rng.uniform(0, 2 * np.pi))
    s = float(rng.uniform(0.9, 1.05))

    def put(kind, c, size, mat, rot=np.eye(3), name=""):
        b.add(kind, yaw @ (np.asarray(c, dtype=float) * s), np.asarray(size, dtype=float) * s, mat, rot=yaw @ rot,
              name=name)

    body = _jitter_color(rng, (0.2, 0.35, 0.25))
    trim = _jitter_color(rng, (0.75, 0.6, 0.25))
    rust = (0.45, 0.28, 0.17)
    put("box", (0, 0, 0.38), (0.95, 0.36, 0.1), PaintedMetal((0.18, 0.17, 0.17), rust, trim, 0.25, 0), name="chassis")
    r_boiler = 0.29
    put("cylinder", (-0.28, 0, 0.48 + r_boiler), (r_boiler, r_boiler, 0.55),
        PaintedMetal(body, rust, trim, 0.27, 2), rot=_ALONG_X, name="boiler")
    put("cylinder", (-0.83, 0, 0.48 + r_boiler), (r_boiler * 0.9, r_boiler * 0.9, 0.03),
        PaintedMetal((0.25, 0.24, 0.24), rust), rot=_ALONG_X, name="smokebox door")
    put("cylinder", (-0.62, 0, 0.48 + 2 * r_boiler + 0.12), (0.075, 0.075, 0.16),
        PaintedMetal((0.15, 0.15, 0.16), rust, trim, 0.12, 2), name="chimney")
    put("ellipsoid", (-0.2, 0, 0.48 + 2 * r_boiler), (0.13, 0.13, 0.11),
        Marble(trim, (0.4, 0.3, 0.12), freq=9.0), name="steam dome")
    put("box", (0.58, 0, 0.48 + 0.33), (0.3, 0.36, 0.33),
        Tiles(body, _jitter_color(rng, (0.7, 0.2, 0.15)), (0.85, 0.8, 0.6), size=0.11, grout_width=0.01), name="cab")
    put("box", (0.58, 0, 0.48 + 0.69), (0.36, 0.42, 0.03),
        Wood((0.55, 0.42, 0.3), (0.3, 0.2, 0.12), axis=0, ring_freq=10), name="cab roof")
    put("ellipsoid", (-0.95, 0, 0.48 + 0.1), (0.06, 0.06, 0.06), Paint((0.9, 0.88, 0.6), blotch=0.02), name="lamp")
    wheel_r = 0.2
    for wx in (-0.62, -0.12, 0.38):
        for side in (-1, 1):
            put("cylinder", (wx, side * 0.38, wheel_r + 0.005), (wheel_r, wheel_r, 0.045),
                Wheel(trim, (0.25, 0.2, 0.18), (0.12, 0.12, 0.13), wheel_r), rot=_ALONG_Y, name="wheel")
    put("box", (1.02, 0, 0.3), (0.12, 0.34, 0.06), Dots((0.7, 0.15, 0.12), (0.9, 0.88, 0.8), period=0.06),
        name="buffer beam")
    az, el = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(40), np.radians(60))
    light = Lighting(sky=(0.34, 0.37, 0.42), ground=(0.17, 0.16, 0.13),
                     sun_dir=np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)]),
                     sun=(0.8, 0.76, 0.68), haze=horizon, haze_start=6.0, haze_length=35.0)
    return SynthScene("object", RayScene(b.prims), b.materials, light, noise,
                      point_radius=6.0, noise_sigma=0.003, description=[p.name for p in b.prims])


_BUILDERS = {"outdoor": build_outdoor, "indoor": build_indoor, "object": build_object}


# ----------------------------------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------
# Sparse points (SfM stand-in)
# ----------------------------------------------------------------------------------------------------

@dataclass
class SparsePoints:
    xyz: np.ndarray            # (P, 3) noisy positions, as written
    xyz_true: np.ndarray       # (P, 3) exact surface points
    rgb: np.ndarray            # (P, 3) uint8
    visible: np.ndarray        # (P, V) bool: views observing each point
    uv: np.ndarray             # (P, V, 2) exact projections (valid where visible)
    error: np.ndarray          # (P,) mean reprojection error of the noisy point, pixels


def _visibility(scene: SynthScene, cameras: list[Camera], pts: np.ndarray, normals: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(P, V) visibility and (P, V, 2) projections: in the image, in front, not occluded, not grazing."""
    P, V = len(pts), len(cameras)
    vis = np.zeros((P, V), dtype=bool)
    uv_all = np.zeros((P, V, 2))
    for j, cam in enumerate(cameras):
        uv, z = cam.project(pts)
        uv_all[:, j] = uv
        ok = (z > 0.05) & (uv[:, 0] >= 0.5) & (uv[:, 0] <= cam.width - 0.5) & \
             (uv[:, 1] >= 0.5) & (uv[:, 1] <= cam.height - 0.5)
        if not np.any(ok):
            continue
        c = cam.center
        d = pts[ok] - c
        dist = np.linalg.norm(d, axis=1)
        d /= dist[:, None]
        t, _ = scene.raycaster.intersect(c, d, include_background=False)
        seen = np.abs(t - dist) <= 1e-4 * (1.0 + dist)
        seen &= np.abs(np.einsum("ij,ij->i", normals[ok], d)) > 0.15
        vis[np.flatnonzero(ok)[seen], j] = True
    return vis, uv_all


def sample_sparse_points(scene: SynthScene, cameras: list[Camera], images: list[np.ndarray], num_points: int,
                         rng: np.random.Generator, max_rounds: int = 8) -> SparsePoints:
    V = len(cameras)
    rs = scene.raycaster
    # Keypoints concentrate on texture: accept a sample with a probability that grows with image gradient.
    grads = []
    for img in images:
        lum = img @ np.array([0.299, 0.587, 0.114])
        gy, gx = np.gradient(lum)
        g = np.hypot(gx, gy)
        grads.append(g / max(np.percentile(g, 90), 1e-6))
    pts_l, nrm_l, rgb_l, vis_l, uv_l = [], [], [], [], []
    have = 0
    yield_rate = 0.5  # fraction of cast samples that end up as points; re-estimated after each round
    for _ in range(max_rounds):
        if have >= num_points:
            break
        per_view = int(math.ceil(1.3 * (num_points - have) / (V * max(yield_rate, 0.02)))) + 4
        cand_p, cand_n, cand_rgb = [], [], []
        for j, cam in enumerate(cameras):
            u = rng.uniform(0.5, cam.width - 0.5, per_view)
            v = rng.uniform(0.5, cam.height - 0.5, per_view)
            iu = np.minimum(u.astype(int), cam.width - 1)
            iv = np.minimum(v.astype(int), cam.height - 1)
            accept = rng.uniform(size=per_view) < 0.2 + 0.8 * np.clip(grads[j][iv, iu], 0, 1)
            origin, dirs = camera_rays(cam.R, cam.t, cam.fx, cam.fy, cam.cx, cam.cy, u, v)
            t, idx = rs.intersect(origin, dirs)
            keep = accept & (idx >= 0)
            keep[keep] = ~np.array([rs.primitives[k].background for k in idx[keep]], dtype=bool)
            p = origin + t[:, None] * dirs
            keep &= np.hypot(p[:, 0], p[:, 1]) <= scene.point_radius
            if not np.any(keep):
                continue
            p = p[keep]
            cand_p.append(p)
            cand_n.append(rs.normals(idx[keep], p, dirs[keep]))
            cand_rgb.append(to_uint8(images[j][iv[keep], iu[keep]]))
        if not cand_p:
            continue
        p, n, rgb = np.concatenate(cand_p), np.concatenate(cand_n), np.concatenate(cand_rgb)
        vis, uv = _visibility(scene, cameras, p, n)
        good = vis.sum(axis=1) >= 2
        yield_rate = max(float(good.sum()), 1.0) / (per_view * V)
        pts_l.append(p[good])
        nrm_l.append(n[good])
        rgb_l.append(rgb[good])
        vis_l.append(vis[good])
        uv_l.append(uv[good])
        have += int(good.sum())
    if have == 0:
        empty = np.zeros((0, 3))
        return SparsePoints(empty, empty, np.zeros((0, 3), np.uint8), np.zeros((0, V), bool),
                            np.zeros((0, V, 2)), np.zeros(0))
    pts, rgb, vis, uv = (np.concatenate(x) for x in (pts_l, rgb_l, vis_l, uv_l))
    if len(pts) > num_points:
        pick = np.sort(rng.choice(len(pts), num_points, replace=False))
        pts, rgb, vis, uv = pts[pick], rgb[pick], vis[pick], uv[pick]
    sigma = scene.noise_sigma
    noisy = pts + np.clip(rng.normal(0.0, sigma, pts.shape), -3 * sigma, 3 * sigma)
    err = np.zeros(len(pts))
    for j, cam in enumerate(cameras):
        uvn, _ = cam.project(noisy)
        e = np.linalg.norm(uvn - uv[:, j], axis=1)
        err += np.where(vis[:, j], e, 0.0)
    err /= vis.sum(axis=1)
    return SparsePoints(noisy, pts, rgb, vis, uv, err)


# ----------------------------------------------------------------------------------------------------
# Writers (COLMAP text format)
# ----------------------------------------------------------------------------------------------------

def _f(x: float) -> str:
    """Shortest exact decimal of a float (round-trips, deterministic)."""
    return repr(float(x))


def write_colmap_text(sparse_dir: Path, cameras: list[Camera], pts: SparsePoints) -> None:
    sparse_dir.mkdir(parents=True, exist_ok=True)
    cam0 = cameras[0]
    with open(sparse_dir / "cameras.txt", "w", newline="\n") as fh:
        fh.write("# Camera list with one line of data per camera:\n")
        fh.write("#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        fh.write("# Number of cameras: 1\n")
        fh.write(f"1 PINHOLE {cam0.width} {cam0.height} {_f(cam0.fx)} {_f(cam0.fy)} {_f(cam0.cx)} {_f(cam0.cy)}\n")

    P, V = pts.visible.shape
    # Per image: the points it sees, in point-id order; POINT2D_IDX is the position in that list.
    obs_index = np.full((P, V), -1, dtype=np.int64)
    per_image = []
    for j in range(V):
        ids = np.flatnonzero(pts.visible[:, j])
        obs_index[ids, j] = np.arange(len(ids))
        per_image.append(ids)
    n_obs = int(pts.visible.sum())
    with open(sparse_dir / "images.txt", "w", newline="\n") as fh:
        fh.write("# Image list with two lines of data per image:\n")
        fh.write("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n")
        fh.write("#   POINTS2D[] as (X, Y, POINT3D_ID)\n")
        fh.write(f"# Number of images: {V}, mean observations per image: {n_obs / max(V, 1):.6g}\n")
        for j, cam in enumerate(cameras):
            q = rotmat_to_qvec(cam.R)
            fh.write(" ".join([str(j + 1), *(_f(x) for x in q), *(_f(x) for x in cam.t), "1", cam.image_name]) + "\n")
            ids = per_image[j]
            fh.write(" ".join(f"{pts.uv[i, j, 0]:.5f} {pts.uv[i, j, 1]:.5f} {i + 1}" for i in ids) + "\n")
    with open(sparse_dir / "points3D.txt", "w", newline="\n") as fh:
        fh.write("# 3D point list with one line of data per point:\n")
        fh.write("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
        fh.write(f"# Number of points: {P}, mean track length: {n_obs / max(P, 1):.6g}\n")
        for i in range(P):
            x, y, z = pts.xyz[i]
            r, g, b = (int(c) for c in pts.rgb[i])
            track = " ".join(f"{j + 1} {obs_index[i, j]}" for j in np.flatnonzero(pts.visible[i]))
            fh.write(f"{i + 1} {x:.7f} {y:.7f} {z:.7f} {r} {g} {b} {pts.error[i]:.6f} {track}\n")


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------

def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"synthetic scene: {name} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise ConfigError(f"synthetic scene: {name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def image_name(index: int, num_views: int) -> str:
    digits = max(3, len(str(num_views - 1)))
    return f"view_{index:0{digits}d}.png"


def make_cameras(family: str, seed: int, width: int, height: int, num_views: int) -> list[Camera]:
    fx = focal_for(width)
    cams = []
    for i, (R, t) in enumerate(make_poses(family, _rng(family, seed, _STREAM_CAMERAS), num_views)):
        name = image_name(i, num_views)
        cams.append(Camera(uid=i, image_name=name, image_path=None, width=width, height=height,
                           fx=fx, fy=fx, cx=width / 2.0, cy=height / 2.0, R=R, t=t))
    return cams


def generate_scene(family: str, seed: int, out_dir: Path, width: int = 160, height: int = 120,
                   num_views: int = 40, num_points: int = DEFAULT_NUM_POINTS, supersample: int = 2,
                   progress: bool | Callable[[int, int], None] = False) -> dict:
    """Render one synthetic scene to ``out_dir`` (images/, sparse/0/*.txt, synth.json) and return a summary.

    ``progress``: True shows a tqdm bar over views; a callable is called as ``progress(done, total)``.
    Raises :class:`ConfigError` for an unknown family or out-of-range sizes.
    """
    if family not in FAMILIES:
        raise ConfigError(f"synthetic scene: unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    width = _check_int("width", width, 8, MAX_IMAGE_SIDE)
    height = _check_int("height", height, 8, MAX_IMAGE_SIDE)
    num_views = _check_int("num_views", num_views, 2, MAX_VIEWS)
    num_points = _check_int("num_points", num_points, 0, MAX_POINTS)
    supersample = _check_int("supersample", supersample, 1, MAX_SUPERSAMPLE)
    out_dir = Path(out_dir)

    scene = _BUILDERS[family](_rng(family, seed, _STREAM_SCENE))
    cameras = make_cameras(family, seed, width, height, num_views)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    # A rerun with fewer views must not leave stale views of ours behind (loaders may list the folder).
    current = {c.image_name for c in cameras}
    for stale in sorted(image_dir.glob("view_*.png")):
        if stale.name not in current:
            stale.unlink()

    bar = None
    if progress is True:
        from tqdm import tqdm
        bar = tqdm(total=num_views, desc=f"synth {family}", unit="view")
    jitter_rng = _rng(family, seed, _STREAM_JITTER)
    images = []
    for i, cam in enumerate(cameras):
        img = render_view(scene, cam, supersample, jitter_rng)
        images.append(img)
        Image.fromarray(to_uint8(img), mode="RGB").save(image_dir / cam.image_name, format="PNG")
        cam.image_path = image_dir / cam.image_name
        if bar is not None:
            bar.update(1)
        elif callable(progress):
            progress(i + 1, num_views)
    if bar is not None:
        bar.close()

    pts = sample_sparse_points(scene, cameras, [to_uint8(im) / 255.0 for im in images], num_points,
                               _rng(family, seed, _STREAM_POINTS))
    write_colmap_text(out_dir / "sparse" / "0", cameras, pts)

    centers = np.stack([c.center for c in cameras])
    extent = 1.1 * float(np.max(np.linalg.norm(centers - centers.mean(axis=0), axis=1)))
    meta = {
        "generator": "predictgs.data.synth",
        "version": SYNTH_VERSION,
        "family": family,
        "seed": seed,
        "width": width,
        "height": height,
        "num_views": num_views,
        "num_points_requested": num_points,
        "num_points": int(len(pts.xyz)),
        "supersample": supersample,
        "camera_model": "PINHOLE",
        "fov_x_deg": FOV_X_DEG,
        "fx": cameras[0].fx,
        "noise_sigma": scene.noise_sigma,
        "noise_truncation_sigmas": 3.0,
        "observations": "exact projections of the noise-free surface points",
        "mean_track_length": float(pts.visible.sum() / max(len(pts.xyz), 1)),
        "camera_extent": extent,
        "primitives": scene.description,
    }
    (out_dir / "synth.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {**meta, "out_dir": str(out_dir), "image_names": [c.image_name for c in cameras]}
