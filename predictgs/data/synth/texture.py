"""Procedural texture toolkit: the filtered pattern building blocks the materials are made of.

Every pattern here knows the pixel footprint it is seen with and fades detail finer than about two pixels
towards its mean (:func:`detail_weight`, :func:`filtered_pulse`, :meth:`GradientNoise.fbm`): a procedural
mip-map. That keeps the ground-truth images free of aliasing, so a compression method is judged on the
detail a camera can actually resolve.
"""

from __future__ import annotations

import numpy as np


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
