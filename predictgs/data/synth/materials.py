"""Materials: the albedo of a surface (or the emitted colour of a backdrop) at each hit point.

A material maps a batch of hits (:class:`Surface`: local and world position, local normal, pixel
footprint) to colours, built from the filtered patterns of :mod:`.texture` (gradient-noise octaves,
stripes, checkers, bricks, planks, veins). Textures are solid: defined in 3D (in the primitive's local
frame; the grounds and the sky in world position or direction), so they need no UV unwrapping. Each kind
mixes large smooth regions with fine detail, so that the benchmark exercises both ends of a compression
method's rate/distortion trade-off. Backdrops (:class:`Sky`) are ``emissive``: the shader shows their
colour unlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictgs.data.synth.texture import (GradientNoise, detail_weight, filtered_pulse, hash01, mix, planar_uv,
                                          smoothstep)


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
